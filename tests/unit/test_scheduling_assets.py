"""The scheduling assets and their filling: service URLs, placeholders, and what Watcher errors mean.

The asset checks pin the formats Watcher and Kibana parse (watch keys, webhook fields, Kibana connector
config and secrets, rule params); the connector and rule go through the same checks of tests/kibana_api.py
that the Kibana stand-in of the installer tests applies to what it receives. The Watcher error cases the
real test node cannot produce (it has no Watcher module, so no licence check) are fed to
:func:`watcher_error` as the exception the client raises for the documented answers.
"""

from __future__ import annotations

import json

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from connector.errors import ConfigError, ElasticsearchAuthError, WatcherUnavailableError, WatchRejectedError
from connector.kibana.alerting import DEFAULT_CONNECTOR_ID, render_connector, render_rule
from connector.scheduling import (
    KIBANA_CONNECTOR_ASSET,
    KIBANA_RULE_ASSET,
    WATCH_ASSET,
    ServiceCredentials,
    ServiceEndpoint,
    fill_placeholders,
    load_asset,
    placeholders_left,
    redacted,
)
from connector.settings import Secret
from connector.watcher import WEBHOOK_ACTION, watcher_error
from tests.kibana_api import es_query_rule_problems, webhook_connector_problems


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("https://rcp.internal", ("https", "rcp.internal", 443, "")),
        ("http://10.0.0.5:8080/", ("http", "10.0.0.5", 8080, "")),
        ("https://rcp.internal:8443/rcp/", ("https", "rcp.internal", 8443, "/rcp")),
        ("https://rcp.internal/rcp/api/v1/detect", ("https", "rcp.internal", 443, "/rcp")),
    ],
    ids=["default-port", "explicit-port", "path-prefix", "full-detect-url"],
)
def test_service_urls_split_into_watcher_parts(url, parts):
    """Scheme, host, port (the scheme's default if missing) and a path prefix without the detect path."""
    endpoint = ServiceEndpoint.parse(url)
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path_prefix) == parts
    assert endpoint.detect_url == f"{parts[0]}://{parts[1]}:{parts[2]}{parts[3]}/api/v1/detect"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("rcp.internal:8443", "is not an http:// or https:// URL with a host"),
        ("ftp://rcp.internal", "is not an http:// or https:// URL with a host"),
        ("https://watcher:secret@rcp.internal", "must not contain credentials"),
        ("https://rcp.internal/?token=x", "must not have a query string or fragment"),
        ("https://rcp.internal/{{ctx.watch_id}}", "may only hold letters, digits"),
    ],
    ids=["no-scheme", "ftp", "credentials", "query", "template-braces"],
)
def test_bad_service_urls_are_refused_naming_the_option(url, reason):
    """Each refusal names --service-url and says what is wrong; a URL's password is never echoed."""
    with pytest.raises(ConfigError) as raised:
        ServiceEndpoint.parse(url)
    assert raised.value.option == "--service-url"
    assert reason in raised.value.message
    assert "secret" not in raised.value.message


def test_credentials_are_required_together():
    """The service has auth on by default: no password is a configuration error naming the option."""
    with pytest.raises(ConfigError) as raised:
        ServiceCredentials.of("watcher", None)
    assert raised.value.option == "--service-password"
    with pytest.raises(ConfigError, match="must not contain ':'"):
        ServiceCredentials.of("wat:cher", "pw")


def test_placeholders_are_filled_in_the_structure_not_the_text():
    """A value with quotes stays one string; an exact placeholder takes the value's type."""
    template = {"host": "${SERVICE_HOST}", "port": "${SERVICE_PORT}", "path": "${SERVICE_PATH_PREFIX}/x"}
    filled = fill_placeholders(
        template,
        {"SERVICE_HOST": 'a", "evil": "b', "SERVICE_PORT": 8443, "SERVICE_PATH_PREFIX": "/p"},
        source=WATCH_ASSET,
    )
    assert filled == {"host": 'a", "evil": "b', "port": 8443, "path": "/p/x"}
    assert placeholders_left(filled) == []


def test_an_unknown_placeholder_is_an_error_naming_the_file():
    with pytest.raises(ConfigError) as raised:
        fill_placeholders({"x": "${NOPE}"}, {"SERVICE_HOST": "h"}, source=WATCH_ASSET)
    assert raised.value.path == str(WATCH_ASSET)
    assert "unknown placeholder ${NOPE}" in raised.value.message


def test_redaction_masks_every_string_holding_a_secret():
    document = {"auth": {"basic": {"password": "pw-123"}}, "url": "https://x?k=pw-123", "n": 1}
    assert redacted(document, (Secret("pw-123"),)) == {
        "auth": {"basic": {"password": "**********"}},
        "url": "**********",
        "n": 1,
    }


# -- the assets as shipped ------------------------------------------------------------------------


def test_the_watch_asset_uses_only_what_watcher_parses():
    """Top-level keys, webhook fields and method Watcher parses; placeholders only where filled."""
    watch = load_asset(WATCH_ASSET)
    assert set(watch) <= {
        "trigger",
        "input",
        "condition",
        "transform",
        "actions",
        "metadata",
        "throttle_period",
    }
    webhook = watch["actions"][WEBHOOK_ACTION]["webhook"]
    assert "url" not in webhook and "ssl" not in webhook
    assert webhook["method"] in {"head", "get", "post", "put", "delete"}
    assert webhook["path"].startswith("${SERVICE_PATH_PREFIX}/")
    assert placeholders_left(watch) == [
        "SERVICE_HOST",
        "SERVICE_PASSWORD",
        "SERVICE_PATH_PREFIX",
        "SERVICE_PORT",
        "SERVICE_SCHEME",
        "SERVICE_USER",
    ]
    assert isinstance(json.loads(webhook["body"]), dict)  # the template is JSON with Mustache in strings


def test_the_kibana_connector_asset_is_a_basic_auth_webhook_with_secrets_apart():
    """config keys of the .webhook type; hasAuth with the basic authType; secrets are user and password."""
    connector = load_asset(KIBANA_CONNECTOR_ASSET)
    assert connector["connector_type_id"] == ".webhook"
    assert set(connector["config"]) <= {"url", "method", "headers", "hasAuth", "authType", "certType", "ca"}
    assert connector["config"]["hasAuth"] is True
    assert connector["config"]["authType"] == "webhook-authentication-basic"
    assert set(connector["secrets"]) == {"user", "password"}
    filled = render_connector(
        endpoint=ServiceEndpoint.parse("https://rcp.internal:8443"),
        credentials=ServiceCredentials("kibana", Secret("pw")),
    )
    assert filled["config"]["url"] == "https://rcp.internal:8443/api/v1/detect"
    assert webhook_connector_problems(filled, create=True) == []


def test_the_kibana_rule_fires_every_hour_and_calls_the_connector():
    """threshold >= 0 with size 0 matches on every run, so the action runs hourly; the alerting API
    accepts the body."""
    assert load_asset(KIBANA_RULE_ASSET)["rule_type_id"] == ".es-query"
    rule = render_rule(connector_id=DEFAULT_CONNECTOR_ID, use_case="terms_rare_childname")
    assert es_query_rule_problems(rule, create=True) == []
    assert rule["schedule"] == {"interval": "1h"}
    params = rule["params"]
    assert (params["threshold"], params["thresholdComparator"], params["size"]) == ([0], ">=", 0)
    (action,) = rule["actions"]
    assert (action["id"], action["group"]) == (DEFAULT_CONNECTOR_ID, "query matched")
    assert action["frequency"]["notify_when"] == "onActiveAlert"
    assert json.loads(action["params"]["body"]) == {
        "since_checkpoint": {"to": "{{date}}", "initial_from": "{{date}}||-2h/h", "baseline": "7d"},
        "max_outliers": 10,
        "use_case": "terms_rare_childname",
    }


# -- what Watcher's answers mean --------------------------------------------------------------------


def api_error(status: int, body: object) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "127.0.0.1", 9200),
    )
    return ApiError(message="error", meta=meta, body=body)


def test_a_basic_licence_refusal_points_to_the_kibana_alternative():
    """403 "current license is non-compliant for [watcher]" (Watcher module present, Basic licence)."""
    reason = "current license is non-compliant for [watcher]"
    cause = {"type": "security_exception", "reason": reason, "license.expired.feature": "watcher"}
    body = {"error": {"root_cause": [cause], **cause}, "status": 403}
    error = watcher_error(api_error(403, body))
    assert isinstance(error, WatcherUnavailableError)
    assert error.message.startswith(
        f"the cluster's licence does not include Watcher ({reason}). Watcher needs a Gold"
    )
    assert "connector setup kibana-connector" in error.message


def test_a_missing_privilege_is_not_mistaken_for_a_licence_problem():
    """403 without a licence reason: the user needs manage_watcher."""
    reason = "action [cluster:admin/xpack/watcher/watch/put] is unauthorized for user [installer]"
    cause = {"type": "security_exception", "reason": reason}
    error = watcher_error(api_error(403, {"error": {"root_cause": [cause], **cause}, "status": 403}))
    assert isinstance(error, ElasticsearchAuthError)
    assert "manage_watcher" in error.message


def test_a_watch_elasticsearch_cannot_parse_is_reported_as_rejected():
    """400 with a parse error (a hand-edited asset): the reason and the asset are named."""
    reason = "could not parse watch [rare-child-detect]. unexpected field [ssl]"
    cause = {"type": "parse_exception", "reason": reason}
    error = watcher_error(api_error(400, {"error": {"root_cause": [cause], **cause}, "status": 400}))
    assert isinstance(error, WatchRejectedError)
    assert error.message.startswith(f"Elasticsearch refused the watch: {reason}; check the watch asset")
