"""The connector against a REAL node with security and TLS on, logged in with a least-privilege API key.

The key is created as docs/service.md says (``POST /_security/api_key``, ``role_descriptors`` = the shipped
role asset ``kibana_saved_objects/elasticsearch-role.json``) and given to real gunicorn as
``CONNECTOR_ES_API_KEY``. Pinned: a full detection works with that key and nothing more, writes outside it
are refused with a 502 naming the missing privilege, TLS verification is on by default (no CA: a clear
error, not ready), no secret reaches the logs or the answers, and a user with the same role (docs/service.md's
username/password alternative) works too.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# conftest_secure is this module's plugin (below), imported before pytest registers it.
pytest.register_assert_rewrite("conftest_secure")

from conftest_secure import (  # noqa: E402
    API_KEY_NAME,
    ROLE_NAME,
    ConnectorUser,
    SecureCluster,
    _secure_environment,
)
from conftest_service import (  # noqa: E402
    HttpResult,
    RunningService,
    ServiceCredentials,
    running_service,
)
from elasticsearch import helpers  # noqa: E402
from es_data import SAMPLE, SAMPLE_MAPPINGS, create_sample_index  # noqa: E402
from test_service_http import assert_error, assert_valid  # noqa: E402

# The secure fixtures (secure_cluster, secure_service, ...) start a second node:
# only this module's tests load them.
pytest_plugins = ("conftest_secure",)

SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
PLANTED = {
    ("WINWORD.EXE", "cmd.exe"),
    ("OUTLOOK.EXE", "powershell.exe"),
    ("chrome.exe", "cmd.exe"),
    ("chrome.exe", "7zFM.exe"),
    ("explorer.exe", "TightVNCViewerPortable.exe"),
}

WIDER_CLUSTER_PRIVILEGES = ("monitor", "manage_index_templates", "manage_own_api_key")


def _detect(service: RunningService, **body: Any) -> HttpResult:
    body = {"range": SAMPLE_RANGE, **body}
    return service.call("POST", "/api/v1/detect", json_body=body, headers=service.bearer)


def _has_privileges(cluster: SecureCluster, request: dict[str, Any]) -> dict[str, Any]:
    response = cluster.connector_client().security.has_privileges(**request)
    return dict(response)


def _refused_by_the_key(cluster: SecureCluster) -> str:
    """How Elasticsearch names the connector's API key in a refusal (its id and owner: no secret)."""
    return f"is unauthorized for API key id [{cluster.api_key.id}] of user [{cluster.security.admin_user}]"


def test_node_serves_only_verified_https_and_refuses_anonymous_requests(
    secure_cluster: SecureCluster,
) -> None:
    """The harness really runs security + TLS: plain http gets no answer, an unknown CA fails the
    handshake, and a verified request without credentials is 401."""
    url = secure_cluster.node.url
    assert url.startswith("https://127.0.0.1:")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url.replace("https://", "http://") + "/_cluster/health", timeout=10)
    with pytest.raises(urllib.error.URLError) as unverified:
        urllib.request.urlopen(url + "/_cluster/health", timeout=10, context=ssl.create_default_context())
    assert isinstance(unverified.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        verified = secure_cluster.security.ssl_context()
        urllib.request.urlopen(url + "/_cluster/health", timeout=10, context=verified)
    assert anonymous.value.code == 401


def test_the_api_key_authenticates_as_itself(secure_cluster: SecureCluster) -> None:
    """``GET /_security/_authenticate`` (the readiness probe's call) with the key: an API key login,
    the key's own id and name, owned by the admin who created it; a wrong secret is 401.

    The ``api_key`` object is compared whole: 8.x gives exactly id and name; 9.x adds only
    ``managed_by: elasticsearch`` (a key Elasticsearch itself manages, not a Cloud one)."""
    me = dict(secure_cluster.connector_client().security.authenticate())
    key = secure_cluster.api_key
    assert me["authentication_type"] == "api_key"
    expected: dict[str, str] = {"id": key.id, "name": API_KEY_NAME}
    versions = {node["version"] for node in secure_cluster.admin.nodes.info()["nodes"].values()}
    if any(int(version.split(".")[0]) >= 9 for version in versions):
        expected["managed_by"] = "elasticsearch"
    assert me["api_key"] == expected
    assert me["username"] == secure_cluster.security.admin_user
    wrong = base64.b64encode(f"{key.id}:not-{key.secret}".encode()).decode()
    request = urllib.request.Request(secure_cluster.node.url + "/_security/_authenticate")
    request.add_header("Authorization", f"ApiKey {wrong}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10, context=secure_cluster.security.ssl_context())
    assert refused.value.code == 401


def test_role_asset_grants_exactly_read_on_sources_and_read_create_index_index_on_results(
    secure_cluster: SecureCluster,
) -> None:
    """The connector's API key holds the documented privileges and none of the wider ones (a key made by a
    superuser gets exactly its role descriptors)."""
    indices = secure_cluster.indices
    granted = _has_privileges(
        secure_cluster,
        {
            "cluster": list(WIDER_CLUSTER_PRIVILEGES),
            "index": [
                {"names": [indices.source], "privileges": ["read", "view_index_metadata", "index", "write"]},
                {
                    "names": [indices.results],
                    "privileges": ["read", "create_index", "index", "write", "delete", "manage"],
                },
                {"names": [indices.outside], "privileges": ["read"]},
                {
                    "names": [indices.checkpoints, indices.summary],
                    "privileges": ["read", "create_index", "index", "write", "delete", "manage"],
                },
            ],
        },
    )
    assert granted["username"] == secure_cluster.security.admin_user  # a key answers as its owner
    assert granted["cluster"] == dict.fromkeys(WIDER_CLUSTER_PRIVILEGES, False)
    results_granted = {"read": True, "create_index": True, "index": True}
    assert granted["index"] == {
        indices.source: {"read": True, "view_index_metadata": False, "index": False, "write": False},
        indices.results: {**results_granted, "write": False, "delete": False, "manage": False},
        indices.outside: {"read": False},
        indices.checkpoints: {**results_granted, "write": False, "delete": False, "manage": False},
        indices.summary: {**results_granted, "write": False, "delete": False, "manage": False},
    }


def test_least_privilege_catch_up_creates_and_moves_its_checkpoint_and_summary(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """since_checkpoint with only the key: six hourly spans, the two children planted in them, the
    checkpoint and summary indices created with their strict mappings; the next call finds nothing owed."""
    indices = secure_cluster.indices
    body = {
        "since_checkpoint": {
            "initial_from": "2024-03-06T09:00Z",
            "to": "2024-03-06T15:00Z",
            "baseline": "7d",
        },
        "index": indices.source,
    }
    first = secure_service.call("POST", "/api/v1/detect", json_body=body, headers=secure_service.bearer)
    assert first.status == 200, first.body
    answer = first.json()
    assert_valid("detect-response", answer)
    assert len(answer["checkpoint"]["spans"]) == 6 and answer["checkpoint"]["owed"] is None
    assert {(o["aggregator"], o["term"]) for o in answer["outliers"]} == {
        ("explorer.exe", "TightVNCViewerPortable.exe"),
        ("OUTLOOK.EXE", "powershell.exe"),
    }
    again = secure_service.call("POST", "/api/v1/detect", json_body=body, headers=secure_service.bearer)
    assert again.status == 200, again.body
    assert again.json()["checkpoint"]["spans"] == []
    admin = secure_cluster.admin
    for index in (indices.checkpoints, indices.summary):
        assert admin.indices.get_mapping(index=index)[index]["mappings"]["dynamic"] == "strict"
    admin.indices.refresh(index=indices.summary)
    assert admin.count(index=indices.summary)["count"] > 6  # the baseline hours and the six spans
    listing = secure_service.call("GET", "/api/v1/checkpoints", headers=secure_service.bearer)
    assert listing.status == 200, listing.body
    assert [entry["analysed_to"] for entry in listing.json()["checkpoints"]] == ["2024-03-06T15:00:00.000Z"]


def test_least_privilege_detection_writes_results_and_reruns_report_unchanged(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """Over verified https with only the key: the five planted outliers, five results written into a
    results index the service created with typed mappings, and a rerun reports all five unchanged (read
    on the results index is what makes that work)."""
    first = _detect(secure_service, index=secure_cluster.indices.source)
    assert first.status == 200, first.body
    response = first.json()
    assert_valid("detect-response", response)
    assert {(o["aggregator"], o["term"]) for o in response["outliers"]} == PLANTED
    annotation = response["annotation"]
    assert (annotation["index"], annotation["written"], annotation["failed"]) == (
        secure_cluster.indices.results, 5, 0,
    )  # fmt: skip
    again = _detect(secure_service, index=secure_cluster.indices.source).json()
    assert (again["annotation"]["written"], again["annotation"]["unchanged"]) == (0, 5)
    admin = secure_cluster.admin
    admin.indices.refresh(index=secure_cluster.indices.results)
    assert admin.count(index=secure_cluster.indices.results)["count"] == 5
    mappings = admin.indices.get_mapping(index=secure_cluster.indices.results)[secure_cluster.indices.results]
    # The template's mappings (a dynamically created index would detect dates and map tags as text).
    assert mappings["mappings"]["date_detection"] is False
    assert mappings["mappings"]["properties"]["tags"]["type"] == "keyword"


def test_readiness_needs_no_cluster_privilege(secure_service: RunningService) -> None:
    """/readyz is ready with an API key that has no cluster privilege at all (no ``monitor``)."""
    result = secure_service.call("GET", "/readyz", headers=secure_service.bearer)
    assert result.status == 200, result.body
    assert result.json() == {"status": "ready", "checks": {"elasticsearch": "ok", "use_cases": 3}}


def test_in_place_annotation_without_write_on_sources_is_502_naming_the_privilege(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """annotate=in_place needs ``index`` on the source indices, which the key does not grant: the answer
    is the project's 502 envelope quoting Elasticsearch's refusal, and no source event was changed."""
    result = _detect(secure_service, index=secure_cluster.indices.source, annotate="in_place")
    error = assert_error(result, 502, "elasticsearch_auth_failed")
    message = error["message"]
    assert "lack a privilege while annotating source events" in message
    assert _refused_by_the_key(secure_cluster) in message
    assert f"on indices [{secure_cluster.indices.source}]" in message
    assert "granted by the index privileges [create_doc,create,delete,index,write,all]" in message
    assert "index on the source indices for annotate=in_place" in message
    admin = secure_cluster.admin
    admin.indices.refresh(index=secure_cluster.indices.source)
    annotated = admin.count(index=secure_cluster.indices.source, query={"exists": {"field": "outliers"}})
    assert annotated["count"] == 0


def test_reading_a_concrete_index_outside_the_role_is_502_naming_the_privilege(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """The service's allow-list admits the index, Elasticsearch does not: 502 quoting the refused action."""
    result = _detect(secure_service, index=secure_cluster.indices.outside)
    error = assert_error(result, 502, "elasticsearch_auth_failed")
    assert error["message"] == (
        "the connector's Elasticsearch credentials lack a privilege: action [indices:data/read/field_caps] "
        f"{_refused_by_the_key(secure_cluster)} on indices [{secure_cluster.indices.outside}], this action "
        "is granted by the index privileges [view_index_metadata,manage,read,all]"
    )


@pytest.fixture
def alias_into_the_role(secure_cluster: SecureCluster) -> Iterator[tuple[str, str]]:
    """An alias whose name the role (and the allowed patterns) cover, pointing at an index neither does.

    Yields ``(alias, index)``. The role grants read on the alias name, which Elasticsearch takes as read
    on the index behind it: only the service's own resolution stops the read.
    """
    admin = secure_cluster.admin
    secret = f"rcp-secret-{uuid.uuid4().hex[:12]}"
    alias = secure_cluster.indices.source_pattern.replace("*", f"alias-{uuid.uuid4().hex[:8]}")
    create_sample_index(admin, secret, shards=1)
    try:
        admin.indices.put_alias(index=secret, name=alias)
        yield alias, secret
    finally:
        admin.options(ignore_status=404).indices.delete(index=secret)


def test_an_alias_the_role_covers_to_an_index_outside_is_403_with_the_least_privilege_key(
    secure_service: RunningService, secure_cluster: SecureCluster, alias_into_the_role: tuple[str, str]
) -> None:
    """Over verified https with only the key: the alias is resolved (the read privilege allows it) and
    the index behind it refused by name, before any event is read."""
    alias, secret = alias_into_the_role
    error = assert_error(_detect(secure_service, index=alias, dry_run=True), 403, "index_not_allowed")
    assert error["message"].startswith(
        f"index {alias!r} reaches the concrete index {secret!r} through alias {alias!r}, which the allowed "
        f"patterns ({secure_cluster.indices.prefix}*) do not cover"
    )


def test_a_data_stream_the_role_covers_is_read_through_its_backing_indices(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """A data stream's backing indices (.ds-...) are judged by the stream's name: read as an index is."""
    admin = secure_cluster.admin
    stream = secure_cluster.indices.source_pattern.replace("*", "stream")
    template = f"{stream}-template"
    admin.indices.put_index_template(
        name=template,
        index_patterns=[stream],
        data_stream={},
        template={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": SAMPLE_MAPPINGS},
        priority=500,
    )
    try:
        actions = (
            {"_op_type": "create", "_index": stream, "_source": json.loads(line)["_source"]}
            for line in SAMPLE.read_text().splitlines()
        )
        _, errors = helpers.bulk(admin, actions, refresh="wait_for", chunk_size=2000)
        assert errors == []
        result = _detect(secure_service, index=stream, dry_run=True)
        assert result.status == 200, result.body
        outliers = result.json()["outliers"]
        assert {(o["aggregator"], o["term"]) for o in outliers} == PLANTED
        assert all(o["_index"].startswith(f".ds-{stream}-") for o in outliers), outliers
    finally:
        # The test distribution has no "delete data stream" handler (8.x: 405, 9.x: 400 "no handler found");
        # the stream goes with the session's node.
        admin.options(ignore_status=(400, 404, 405)).indices.delete_data_stream(name=stream)
        admin.options(ignore_status=(400, 404)).indices.delete_index_template(name=template)


def test_a_pattern_matching_only_unreadable_indices_is_422_saying_so(
    secure_service: RunningService, secure_cluster: SecureCluster
) -> None:
    """Security hides unreadable indices from a wildcard: the 422 says the credentials may be why."""
    pattern = secure_cluster.indices.outside[:-2] + "*"
    error = assert_error(_detect(secure_service, index=pattern), 422, "invalid_field")
    assert error["message"] == (
        f"the index pattern {pattern!r} matches no index that the connector's Elasticsearch credentials "
        "may read; check the index name and the role's index patterns, or wait for data"
    )


def test_without_ca_certs_tls_verification_fails_with_the_fix_and_not_ready(
    secure_service_without_ca: RunningService, secure_cluster: SecureCluster
) -> None:
    """Verification is on by default: no CONNECTOR_ES_CA_CERTS means the node's certificate is refused,
    the detection says so and how to fix it (502, no Retry-After), and /readyz is not ready."""
    result = _detect(secure_service_without_ca, index=secure_cluster.indices.source)
    error = assert_error(result, 502, "elasticsearch_tls_failed")
    assert "Retry-After" not in result.headers  # a setting to fix: retrying would not help
    assert error["message"] == (
        "TLS verification of Elasticsearch's certificate failed (certificate verify failed: unable to get "
        "local issuer certificate); set CONNECTOR_ES_CA_CERTS to the PEM file of the CA that signed "
        "Elasticsearch's certificate"
    )
    ready = secure_service_without_ca.call("GET", "/readyz", headers=secure_service_without_ca.bearer)
    assert ready.status == 503
    assert ready.json() == {"status": "not_ready", "checks": {"elasticsearch": "unreachable", "use_cases": 3}}
    assert "set CONNECTOR_ES_CA_CERTS" in secure_service_without_ca.log_text()


def test_https_to_a_plain_http_node_says_it_does_not_speak_tls(
    es_url: str, service_workdir: Path, service_credentials: ServiceCredentials
) -> None:
    """https:// pointed at the session's plain-HTTP node is not a CA problem: the detection and the
    readiness log say the node does not speak TLS and to use http://."""
    environment = {
        "CONNECTOR_ES_URL": es_url.replace("http://", "https://", 1),
        "CONNECTOR_USE_CASES": str(service_workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": "rcp-plain-*",
        "CONNECTOR_RESULTS_INDEX": "rcp-plain-results",
    }
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        result = _detect(service, index="rcp-plain-events")
        error = assert_error(result, 502, "elasticsearch_tls_failed")
        assert error["message"] == (
            "Elasticsearch does not speak TLS on that port (the TLS handshake got a plain-HTTP answer); "
            "use an http:// CONNECTOR_ES_URL, or enable TLS on Elasticsearch's HTTP layer"
        )
        assert service.call("GET", "/readyz", headers=service.bearer).status == 503
        log_text = service.log_text()
        assert "does not speak TLS on that port" in log_text
        assert "CONNECTOR_ES_CA_CERTS" not in log_text


def test_no_secret_reaches_the_logs_or_the_answers(
    secure_service: RunningService, secure_service_without_ca: RunningService, secure_cluster: SecureCluster
) -> None:
    """Successful, refused and TLS-failed calls at DEBUG: neither gunicorn log nor any body holds the API
    key's secret, its ``id:secret`` pair or ``encoded`` value, nor the admin password or its encoding."""
    source, outside = secure_cluster.indices.source, secure_cluster.indices.outside
    bodies = [
        _detect(secure_service, index=source).body,
        _detect(secure_service, index=source, annotate="in_place").body,
        _detect(secure_service, index=outside).body,
        secure_service.call("GET", "/readyz", headers=secure_service.bearer).body,
        _detect(secure_service_without_ca, index=source).body,
        secure_service_without_ca.call("GET", "/readyz", headers=secure_service_without_ca.bearer).body,
    ]
    texts = [body.decode() for body in bodies]
    texts += [secure_service.log_text(), secure_service_without_ca.log_text()]
    assert "elasticsearch" in texts[-2].lower()  # the log really has the client's activity in it
    assert secure_cluster.api_key.id in texts[2]  # the refusal names the key by its (public) id only
    for text in texts:
        for secret in secure_cluster.secrets():
            assert secret not in text


def test_a_user_with_the_role_works_too_and_its_password_stays_out_of_the_logs(
    secure_user_service: RunningService, secure_cluster: SecureCluster, connector_user: ConnectorUser
) -> None:
    """The documented alternative to a key, CONNECTOR_ES_USERNAME/PASSWORD of a user holding the role
    (here a file-realm user): ready, the same detection (its results are written by whichever login ran
    first), a refusal naming the user, and neither password nor basic encoding in log or answers."""
    ready = secure_user_service.call("GET", "/readyz", headers=secure_user_service.bearer)
    assert ready.status == 200, ready.body
    result = _detect(secure_user_service, index=secure_cluster.indices.source)
    assert result.status == 200, result.body
    response = result.json()
    assert {(o["aggregator"], o["term"]) for o in response["outliers"]} == PLANTED
    annotation = response["annotation"]
    assert (annotation["written"] + annotation["unchanged"], annotation["failed"]) == (5, 0)
    refused = _detect(secure_user_service, index=secure_cluster.indices.outside)
    message = assert_error(refused, 502, "elasticsearch_auth_failed")["message"]
    refused_user = f"is unauthorized for user [{connector_user.name}] with effective roles [{ROLE_NAME}]"
    assert refused_user in message
    texts = [ready.body.decode(), result.body.decode(), refused.body.decode(), secure_user_service.log_text()]
    for text in texts:
        for secret in connector_user.secrets():
            assert secret not in text


def test_a_refused_api_key_is_not_ready_and_a_502_naming_the_settings(
    secure_cluster: SecureCluster, service_workdir: Path, service_credentials: ServiceCredentials
) -> None:
    """A revoked or mistyped key (the real id, a wrong secret): /readyz says unauthorized, a detection
    is 502 elasticsearch_auth_failed naming the variables to fix, and the wrong key is not logged."""
    wrong_key = base64.b64encode(f"{secure_cluster.api_key.id}:{'x' * 22}".encode()).decode()
    environment = {
        **_secure_environment(secure_cluster, service_workdir, service_credentials, with_ca=True),
        "CONNECTOR_ES_API_KEY": wrong_key,
    }
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        ready = service.call("GET", "/readyz", headers=service.bearer)
        assert ready.status == 503
        assert ready.json()["checks"]["elasticsearch"] == "unauthorized"
        result = _detect(service, index=secure_cluster.indices.source)
        error = assert_error(result, 502, "elasticsearch_auth_failed")
        assert "CONNECTOR_ES_API_KEY (or CONNECTOR_ES_USERNAME/CONNECTOR_ES_PASSWORD)" in error["message"]
        assert wrong_key not in service.log_text()
