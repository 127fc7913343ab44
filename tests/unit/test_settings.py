"""Deployment settings from CONNECTOR_* variables: defaults, parsing, refusals, hidden secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import ES_CONNECTIONS_PER_NODE, PROBE_CONNECTIONS_PER_NODE, Secret, Settings

TOKEN = "tok-0123456789abcdef"
OTHER_TOKEN = "tok-fedcba9876543210"


def _env(**overrides: str) -> dict[str, str]:
    env = {
        "CONNECTOR_ES_URL": "http://127.0.0.1:9200",
        "CONNECTOR_USE_CASES": "/etc/rcp/rare.ini",
        "CONNECTOR_API_TOKENS": TOKEN,
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def test_minimal_environment_gives_the_documented_defaults():
    """Only URL, use cases and a token set: every other setting has its documented default."""
    settings = Settings.from_env(_env())
    assert settings == Settings(
        es_urls=("http://127.0.0.1:9200",),
        use_case_paths=("/etc/rcp/rare.ini",),
        api_tokens=(Secret(TOKEN),),
        es_api_key=None,
        es_username=None,
        es_password=None,
        es_ca_certs=None,
        es_verify_certs=True,
        es_timeout_seconds=30.0,
        global_config_path=None,
        basic_user=None,
        basic_password=None,
        allow_anonymous=False,
        allowed_indices=("osquery-*",),
        results_index="outliers-rare-child",
        max_body_bytes=65536,
        max_range_days=400,
        log_level="INFO",
    )


def test_every_variable_is_read(tmp_path: Path):
    """Each CONNECTOR_* variable lands in its field; lists split on ',' and ignore blanks and spaces."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(
        {
            "CONNECTOR_ES_URL": "https://es.internal:9243",
            "CONNECTOR_ES_USERNAME": "rcp",
            "CONNECTOR_ES_PASSWORD": "es-secret",
            "CONNECTOR_ES_CA_CERTS": str(ca),
            "CONNECTOR_ES_VERIFY_CERTS": "no",
            "CONNECTOR_ES_TIMEOUT_SECONDS": "12.5",
            "CONNECTOR_USE_CASES": "a.ini, b.ini,,",
            "CONNECTOR_GLOBAL_CONFIG": "global.conf",
            "CONNECTOR_API_TOKENS": f"{TOKEN} , {OTHER_TOKEN}",
            "CONNECTOR_BASIC_USER": "watcher",
            "CONNECTOR_BASIC_PASSWORD": "basic-secret",
            "CONNECTOR_ALLOWED_INDICES": "osquery-*, winlogbeat-2024.*",
            "CONNECTOR_RESULTS_INDEX": "rcp-results",
            "CONNECTOR_MAX_BODY_BYTES": "2048",
            "CONNECTOR_MAX_RANGE_DAYS": "31",
            "CONNECTOR_LOG_LEVEL": "debug",
        }
    )
    assert settings.es_urls == ("https://es.internal:9243",)
    assert settings.es_username == "rcp"
    assert settings.es_password == Secret("es-secret")
    assert settings.es_ca_certs == str(ca)
    assert settings.es_verify_certs is False
    assert settings.es_timeout_seconds == 12.5
    assert settings.use_case_paths == ("a.ini", "b.ini")
    assert settings.global_config_path == "global.conf"
    assert [token.reveal() for token in settings.api_tokens] == [TOKEN, OTHER_TOKEN]
    assert settings.basic_user == "watcher"
    assert settings.basic_password is not None and settings.basic_password.reveal() == "basic-secret"
    assert settings.allowed_indices == ("osquery-*", "winlogbeat-2024.*")
    assert settings.results_index == "rcp-results"
    assert settings.max_body_bytes == 2048
    assert settings.max_range_days == 31
    assert settings.log_level == "DEBUG"


def test_empty_variables_count_as_unset():
    """An empty CONNECTOR_ALLOWED_INDICES (as docker-compose often sets) keeps the default, not nothing."""
    settings = Settings.from_env(_env(CONNECTOR_ALLOWED_INDICES="", CONNECTOR_RESULTS_INDEX=" "))
    assert settings.allowed_indices == ("osquery-*",)
    assert settings.results_index == "outliers-rare-child"


@pytest.mark.parametrize(
    ("overrides", "variable", "fragment"),
    [
        ({"CONNECTOR_ES_URL": None}, "CONNECTOR_ES_URL", "required"),
        ({"CONNECTOR_ES_URL": "es.internal:9200"}, "CONNECTOR_ES_URL", "http:// or https://"),
        ({"CONNECTOR_ES_URL": "ftp://es.internal"}, "CONNECTOR_ES_URL", "http:// or https://"),
        ({"CONNECTOR_ES_URL": "https://u:p@es.internal"}, "CONNECTOR_ES_URL", "must not contain credentials"),
        ({"CONNECTOR_ES_URL": "http://es:99999"}, "CONNECTOR_ES_URL", "is not a URL"),
        ({"CONNECTOR_ES_URL": "http://es:9200/?x=1"}, "CONNECTOR_ES_URL", "query string"),
        ({"CONNECTOR_ES_URL": "http://es1:9200,,http://es2:9200"}, "CONNECTOR_ES_URL", "empty entry"),
        ({"CONNECTOR_ES_URL": "http://es1:9200,es2:9200"}, "CONNECTOR_ES_URL", "'es2:9200' is not an http"),
        ({"CONNECTOR_ES_URL": "http://es1:9200,https://es2:9200"}, "CONNECTOR_ES_URL", "one scheme"),
        ({"CONNECTOR_ES_SNIFF": "often"}, "CONNECTOR_ES_SNIFF", "use true/false"),
        ({"CONNECTOR_ES_COMPOSITE_PAGE_SIZE": "0"}, "CONNECTOR_ES_COMPOSITE_PAGE_SIZE", "use 1..10000"),
        ({"CONNECTOR_ES_COMPOSITE_PAGE_SIZE": "20000"}, "CONNECTOR_ES_COMPOSITE_PAGE_SIZE", "use 1..10000"),
        ({"CONNECTOR_USE_CASES": " , "}, "CONNECTOR_USE_CASES", "required"),
        ({"CONNECTOR_ES_VERIFY_CERTS": "maybe"}, "CONNECTOR_ES_VERIFY_CERTS", "use true/false"),
        ({"CONNECTOR_ES_TIMEOUT_SECONDS": "soon"}, "CONNECTOR_ES_TIMEOUT_SECONDS", "not a number"),
        ({"CONNECTOR_ES_TIMEOUT_SECONDS": "0"}, "CONNECTOR_ES_TIMEOUT_SECONDS", "use 1..3600"),
        ({"CONNECTOR_ES_TIMEOUT_SECONDS": "nan"}, "CONNECTOR_ES_TIMEOUT_SECONDS", "out of range"),
        ({"CONNECTOR_MAX_BODY_BYTES": "64k"}, "CONNECTOR_MAX_BODY_BYTES", "not a whole number"),
        ({"CONNECTOR_MAX_BODY_BYTES": "10"}, "CONNECTOR_MAX_BODY_BYTES", "use 1024..10485760"),
        ({"CONNECTOR_MAX_RANGE_DAYS": "0"}, "CONNECTOR_MAX_RANGE_DAYS", "use 1..36600"),
        ({"CONNECTOR_ES_USERNAME": "rcp"}, "CONNECTOR_ES_PASSWORD", "together"),
        ({"CONNECTOR_ES_PASSWORD": "pw"}, "CONNECTOR_ES_USERNAME", "together"),
        (
            {"CONNECTOR_ES_API_KEY": "key", "CONNECTOR_ES_USERNAME": "rcp", "CONNECTOR_ES_PASSWORD": "pw"},
            "CONNECTOR_ES_API_KEY",
            "not both",
        ),
        ({"CONNECTOR_ES_CA_CERTS": "/nonexistent/ca.pem"}, "CONNECTOR_ES_CA_CERTS", "is not a file"),
        ({"CONNECTOR_API_TOKENS": "short"}, "CONNECTOR_API_TOKENS", "at least 16 characters"),
        ({"CONNECTOR_API_TOKENS": "has space in the token"}, "CONNECTOR_API_TOKENS", "only letters"),
        ({"CONNECTOR_BASIC_USER": "watcher"}, "CONNECTOR_BASIC_PASSWORD", "together"),
        ({"CONNECTOR_BASIC_PASSWORD": "pw"}, "CONNECTOR_BASIC_USER", "together"),
        (
            {"CONNECTOR_BASIC_USER": "a:b", "CONNECTOR_BASIC_PASSWORD": "pw"},
            "CONNECTOR_BASIC_USER",
            "must not contain ':'",
        ),
        ({"CONNECTOR_ALLOW_ANONYMOUS": "true"}, "CONNECTOR_ALLOW_ANONYMOUS", "unset one of them"),
        ({"CONNECTOR_ALLOW_ANONYMOUS": "sure"}, "CONNECTOR_ALLOW_ANONYMOUS", "is not a boolean"),
        ({"CONNECTOR_ALLOWED_INDICES": "osquery-*,remote:logs-*"}, "CONNECTOR_ALLOWED_INDICES", "remote"),
        ({"CONNECTOR_ALLOWED_INDICES": "-secret"}, "CONNECTOR_ALLOWED_INDICES", "not an index pattern"),
        ({"CONNECTOR_ALLOWED_INDICES": "osquery-?"}, "CONNECTOR_ALLOWED_INDICES", "not an index pattern"),
        ({"CONNECTOR_ALLOWED_INDICES": "Osquery-*"}, "CONNECTOR_ALLOWED_INDICES", "lowercase"),
        ({"CONNECTOR_RESULTS_INDEX": "results-*"}, "CONNECTOR_RESULTS_INDEX", "no wildcards"),
        ({"CONNECTOR_RESULTS_INDEX": "_results"}, "CONNECTOR_RESULTS_INDEX", "not an index name"),
        ({"CONNECTOR_LOG_LEVEL": "loud"}, "CONNECTOR_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR"),
    ],
    ids=[
        "url-missing",
        "url-no-scheme",
        "url-ftp",
        "url-with-credentials",
        "url-bad-port",
        "url-query",
        "urls-empty-entry",
        "urls-one-bad",
        "urls-mixed-schemes",
        "sniff-not-bool",
        "page-size-zero",
        "page-size-too-big",
        "use-cases-blank",
        "verify-certs-not-bool",
        "timeout-not-number",
        "timeout-zero",
        "timeout-nan",
        "body-bytes-suffix",
        "body-bytes-too-small",
        "range-days-zero",
        "es-user-without-password",
        "es-password-without-user",
        "api-key-and-user",
        "ca-certs-missing-file",
        "token-too-short",
        "token-with-space",
        "basic-user-without-password",
        "basic-password-without-user",
        "basic-user-with-colon",
        "anonymous-with-credentials",
        "anonymous-not-bool",
        "allowed-remote-cluster",
        "allowed-exclusion",
        "allowed-question-mark",
        "allowed-uppercase",
        "results-wildcard",
        "results-underscore",
        "log-level-unknown",
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(overrides, variable, fragment):
    """Each bad value is a ConfigError whose message starts with the variable and says what to do."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(_env(**overrides))
    assert caught.value.message.startswith(f"{variable}: ")
    assert fragment in caught.value.message


def test_ca_certificate_needs_an_https_url(tmp_path: Path):
    """A CA bundle with an http:// URL is refused (the client would reject TLS options later)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    with pytest.raises(ConfigError, match=r"^CONNECTOR_ES_CA_CERTS: a CA certificate needs an https://"):
        Settings.from_env(_env(CONNECTOR_ES_CA_CERTS=str(ca)))


def test_service_refuses_to_start_without_credentials():
    """No token, no basic user and anonymous not allowed: a ConfigError that says how to fix it."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(_env(CONNECTOR_API_TOKENS=None))
    assert caught.value.message == (
        "the service refuses to start without credentials: set CONNECTOR_API_TOKENS or "
        "CONNECTOR_BASIC_USER/CONNECTOR_BASIC_PASSWORD, or CONNECTOR_ALLOW_ANONYMOUS=true "
        "to accept unauthenticated requests"
    )


@pytest.mark.parametrize("value", ["true", "1", "YES", "on"], ids=["true", "1", "YES", "on"])
def test_anonymous_access_must_be_asked_for_explicitly(value):
    """With CONNECTOR_ALLOW_ANONYMOUS set to a true value and no credentials, the settings load."""
    settings = Settings.from_env(_env(CONNECTOR_API_TOKENS=None, CONNECTOR_ALLOW_ANONYMOUS=value))
    assert settings.allow_anonymous is True
    assert settings.has_service_credentials is False


def test_basic_credentials_alone_are_enough():
    """CONNECTOR_BASIC_USER/PASSWORD without tokens satisfies the credentials requirement."""
    settings = Settings.from_env(
        _env(CONNECTOR_API_TOKENS=None, CONNECTOR_BASIC_USER="watcher", CONNECTOR_BASIC_PASSWORD="pw")
    )
    assert settings.api_tokens == ()
    assert settings.has_service_credentials is True


def test_secret_hides_its_value_in_repr_str_and_format():
    """repr, str and f-strings of a Secret never contain the value; reveal() does."""
    secret = Secret("hunter2-password")
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "**********"
    assert f"{secret}" == "**********"
    assert "hunter2" not in f"{secret!r}"
    assert secret.reveal() == "hunter2-password"
    assert secret == Secret("hunter2-password")
    assert secret != Secret("other")


def test_settings_repr_contains_no_secret():
    """Printing or logging the whole Settings object leaks no password, token or API key."""
    settings = Settings.from_env(
        _env(
            CONNECTOR_ES_URL="https://es:9200",
            CONNECTOR_ES_API_KEY="api-key-value-xyz",
            CONNECTOR_API_TOKENS=f"{TOKEN},{OTHER_TOKEN}",
            CONNECTOR_BASIC_USER="watcher",
            CONNECTOR_BASIC_PASSWORD="basic-pw-value",
        )
    )
    text = repr(settings) + str(settings)
    for secret in ("api-key-value-xyz", TOKEN, OTHER_TOKEN, "basic-pw-value"):
        assert secret not in text
    assert "watcher" in text


def test_es_client_verifies_tls_by_default_and_sends_basic_auth():
    """An https URL gets verify_certs=True unless switched off; user/password become basic auth."""
    settings = Settings.from_env(
        _env(
            CONNECTOR_ES_URL="https://es.internal:9200",
            CONNECTOR_ES_USERNAME="rcp",
            CONNECTOR_ES_PASSWORD="pw",
            CONNECTOR_ES_TIMEOUT_SECONDS="7",
        )
    )
    client = settings.es_client()
    try:
        (node,) = client.transport.node_pool.all()
        assert (node.config.scheme, node.config.host, node.config.port) == ("https", "es.internal", 9200)
        assert node.config.verify_certs is True
        assert client._headers["authorization"].startswith("Basic ")
        assert client._request_timeout == 7.0
    finally:
        client.close()


def test_es_client_with_api_key_and_verification_off(tmp_path: Path):
    """An API key becomes ApiKey auth; CONNECTOR_ES_VERIFY_CERTS=false and a CA bundle reach the node."""
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    settings = Settings.from_env(
        _env(
            CONNECTOR_ES_URL="https://es.internal:9200",
            CONNECTOR_ES_API_KEY="ZXhhbXBsZTprZXk=",
            CONNECTOR_ES_VERIFY_CERTS="false",
            CONNECTOR_ES_CA_CERTS=str(ca),
        )
    )
    with pytest.warns(Warning, match="verify_certs=False is insecure"):
        client = settings.es_client()
    try:
        (node,) = client.transport.node_pool.all()
        assert node.config.verify_certs is False
        assert node.config.ca_certs == str(ca)
        assert client._headers["authorization"] == "ApiKey ZXhhbXBsZTprZXk="
    finally:
        client.close()


def test_several_es_urls_become_the_client_node_pool():
    """A comma list in CONNECTOR_ES_URL (spaces allowed, a repeat kept once) gives the client one node per
    URL, all with the shard-aware node class; sniffing stays off unless CONNECTOR_ES_SNIFF is true."""
    from connector.sources.shards import ShardAwareNode

    settings = Settings.from_env(
        _env(CONNECTOR_ES_URL=" http://es1:9200, http://es2:9201 ,http://es3:9202,http://es1:9200")
    )
    assert settings.es_urls == ("http://es1:9200", "http://es2:9201", "http://es3:9202")
    client = settings.es_client()
    try:
        nodes = client.transport.node_pool.all()
        assert sorted((node.config.host, node.config.port) for node in nodes) == [
            ("es1", 9200), ("es2", 9201), ("es3", 9202)
        ]  # fmt: skip
        assert all(isinstance(node, ShardAwareNode) for node in nodes)
        assert client.transport._sniff_on_node_failure is False
        assert client.transport._sniff_before_requests is False
    finally:
        client.close()


def test_sniffing_and_the_composite_page_size_are_settings():
    """CONNECTOR_ES_SNIFF=true turns on sniffing on node failure and before requests (at most every
    minute), never at start-up (the service must start while Elasticsearch is down);
    CONNECTOR_ES_COMPOSITE_PAGE_SIZE sets the page size (default 10000)."""
    assert Settings.from_env(_env()).composite_page_size == 10_000
    settings = Settings.from_env(_env(CONNECTOR_ES_SNIFF="true", CONNECTOR_ES_COMPOSITE_PAGE_SIZE="7"))
    assert settings.es_sniff is True and settings.composite_page_size == 7
    client = settings.es_client()
    try:
        assert client.transport._sniff_on_node_failure is True
        assert client.transport._sniff_before_requests is True
        assert client.transport._sniff_on_start is False
    finally:
        client.close()


@pytest.mark.parametrize("variable", ["CONNECTOR_CHECKPOINT_INDEX", "CONNECTOR_SUMMARY_INDEX"])
def test_checkpoint_and_summary_indices_stay_outside_the_results_pattern(variable: str):
    """The results template, data view and Security rule cover <results index>*: an index of ours named
    inside it would be taken for results, so it is refused with the default named."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(_env(**{variable: "outliers-rare-child-progress"}))
    assert raised.value.option == variable
    assert "starts with the results index name 'outliers-rare-child'" in raised.value.message
    assert "rare-child-connector-" in raised.value.message
    defaults = Settings.from_env(_env())
    assert not defaults.checkpoint_index.startswith(defaults.results_index)
    assert not defaults.summary_index.startswith(defaults.results_index)


def test_the_readiness_probe_has_its_own_small_pool_without_retries_or_sniffing():
    """The probe's client reaches the same nodes with the same credentials and TLS, but over a pool of its
    own (the detection client's pool blocks while its connections are busy), with no retries and no
    sniffing even when CONNECTOR_ES_SNIFF is on: it must answer within its own short timeout."""
    settings = Settings.from_env(
        _env(
            CONNECTOR_ES_URL="https://es1:9200,https://es2:9200",
            CONNECTOR_ES_API_KEY="ZXhhbXBsZTprZXk=",
            CONNECTOR_ES_SNIFF="true",
        )
    )
    detections, probe = settings.es_client(), settings.es_probe_client()
    try:
        detection_nodes = detections.transport.node_pool.all()
        probe_nodes = probe.transport.node_pool.all()
        assert sorted(node.config.host for node in probe_nodes) == ["es1", "es2"]
        assert {node.config.connections_per_node for node in detection_nodes} == {ES_CONNECTIONS_PER_NODE}
        assert {node.config.connections_per_node for node in probe_nodes} == {PROBE_CONNECTIONS_PER_NODE}
        assert not {id(node.pool) for node in probe_nodes} & {id(node.pool) for node in detection_nodes}
        assert all(node.config.verify_certs is True for node in probe_nodes)
        assert probe._headers["authorization"] == "ApiKey ZXhhbXBsZTprZXk="
        assert (probe._max_retries, probe._retry_on_timeout) == (0, False)
        assert probe.transport._sniff_on_node_failure is False
        assert probe.transport._sniff_before_requests is False
        assert detections.transport._sniff_on_node_failure is True
    finally:
        detections.close()
        probe.close()
