"""Installing the watch on the real test node, which has no Watcher (the integ-test zip lacks the module).

What the node answers, observed and pinned here: ``PUT _watcher/watch/<id>`` gets ``400`` with the body
``{"error": "no handler found for uri [/_watcher/watch/<id>] and method [PUT]"}`` (a string, not the
usual error object). The installer must turn that into a message that says Watcher needs a licence and
the module, and points to the Kibana connector, without ever printing or logging the service password.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from elasticsearch import BadRequestError, Elasticsearch

from connector.cli.setup_watch import watch_command
from connector.errors import ElasticsearchUnavailableError, WatcherUnavailableError
from connector.scheduling import ServiceCredentials, ServiceEndpoint, placeholders_left
from connector.settings import Secret
from connector.watcher import WEBHOOK_ACTION, install_watch, render_watch

SERVICE_PASSWORD = "watch-pa$$word-never-printed"
# What Watcher's PUT watch API parses: the keys of a watch and of a webhook action.
WATCH_KEYS = {"trigger", "input", "condition", "transform", "actions", "metadata", "throttle_period"}
WEBHOOK_KEYS = {
    "scheme",
    "host",
    "port",
    "method",
    "path",
    "params",
    "headers",
    "auth",
    "body",
    "connection_timeout",
    "read_timeout",
    "proxy",
}


@pytest.fixture(scope="module")
def watcher_absent(es_client: Elasticsearch) -> Iterator[None]:
    """These tests pin the answer of a node without Watcher; a cluster from ES_URL may have it."""
    nodes = es_client.nodes.info(metric="plugins")["nodes"]
    modules = {module["name"] for node in nodes.values() for module in node.get("modules", [])}
    if "x-pack-watcher" in modules:
        pytest.skip("this cluster has the Watcher module; these tests pin a node without it")
    yield


def rendered(service_url: str = "https://rcp.internal:8443/rcp") -> dict:
    return render_watch(
        endpoint=ServiceEndpoint.parse(service_url),
        credentials=ServiceCredentials("watcher", Secret(SERVICE_PASSWORD)),
        index="osquery-*",
    )


def test_the_node_answers_400_no_handler_for_the_watcher_route(es_client, watcher_absent):
    """The raw answer the installer relies on: 400 and a plain-string error."""
    with pytest.raises(BadRequestError) as raised:
        es_client.watcher.put_watch(id="rcp-probe", **rendered())
    assert raised.value.meta.status == 400
    assert raised.value.body == {
        "error": "no handler found for uri [/_watcher/watch/rcp-probe] and method [PUT]"
    }


def test_install_on_a_node_without_watcher_says_licence_module_and_kibana_alternative(
    es_client, watcher_absent
):
    """WatcherUnavailableError: names the missing API, the licence, and `connector setup kibana-connector`."""
    with pytest.raises(WatcherUnavailableError) as raised:
        install_watch(es_client, rendered(), watch_id="rare-child-detect")
    message = raised.value.message
    assert message.startswith(
        "this Elasticsearch cluster has no Watcher API (no handler found for uri "
        "[/_watcher/watch/rare-child-detect?active=true] and method [PUT]). "
        "Watcher needs a Gold (or higher) subscription or a trial licence, and the x-pack-watcher module"
    )
    assert "`connector setup kibana-connector`" in message
    assert raised.value.exit_code == 1
    assert raised.value.details[0]["status"] == 400
    assert SERVICE_PASSWORD not in message


def test_the_watch_command_exits_1_and_neither_prints_nor_logs_the_password(es_url, watcher_absent, caplog):
    """`connector setup watch` against the node: exit code 1, the clear message, no secret anywhere."""
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        watch_command,
        ["--service-url", "https://rcp.internal:8443", "--es-url", es_url, "--index", "osquery-*"],
        env={"CONNECTOR_BASIC_USER": "watcher", "CONNECTOR_BASIC_PASSWORD": SERVICE_PASSWORD},
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: this Elasticsearch cluster has no Watcher API")
    assert "connector setup kibana-connector" in result.output
    assert SERVICE_PASSWORD not in result.output
    leaked = [record.getMessage() for record in caplog.records if SERVICE_PASSWORD in record.getMessage()]
    assert leaked == []
    # The client did log the request body at DEBUG, with the password masked.
    bodies = [record.getMessage() for record in caplog.records if record.name == "elastic_transport.node"]
    assert any('"password":"**********"' in body for body in bodies), bodies


def test_an_unreachable_cluster_is_not_mistaken_for_a_missing_watcher():
    """A closed port gives the usual 'Elasticsearch is unreachable', not the licence message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    client = Elasticsearch(f"http://127.0.0.1:{closed}", request_timeout=5, max_retries=0)
    try:
        with pytest.raises(ElasticsearchUnavailableError, match="Elasticsearch is unreachable"):
            install_watch(client, rendered())
    finally:
        client.close()


def test_the_rendered_watch_is_valid_json_with_every_placeholder_filled():
    """Host, port (a number), path prefix, user and body are filled; no ${...} remains; keys are Watcher's;
    the schedule is every hour at minute 5."""
    watch = rendered()
    text = json.dumps(watch)
    assert json.loads(text) == watch
    assert placeholders_left(watch) == [] and "${" not in text
    assert set(watch) <= WATCH_KEYS
    webhook = watch["actions"][WEBHOOK_ACTION]["webhook"]
    assert set(webhook) <= WEBHOOK_KEYS
    assert (webhook["scheme"], webhook["host"], webhook["port"]) == ("https", "rcp.internal", 8443)
    assert (webhook["method"], webhook["path"]) == ("post", "/rcp/api/v1/detect")
    assert webhook["headers"] == {"Content-Type": "application/json"}
    assert webhook["auth"] == {"basic": {"username": "watcher", "password": SERVICE_PASSWORD}}
    assert (webhook["connection_timeout"], webhook["read_timeout"]) == ("10s", "120s")
    assert json.loads(webhook["body"]) == {
        "since_checkpoint": {
            "to": "{{ctx.trigger.scheduled_time}}",
            "initial_from": "{{ctx.trigger.scheduled_time}}||-1h/h",
            "baseline": "7d",
        },
        "max_outliers": 10,
        "index": "osquery-*",
    }
    # Quartz cron, seconds first: second 0 of minute 5 of every hour, every day of every month, any weekday,
    # no year field. A daily ("0 5 3 * * ?") or weekly schedule fails here.
    assert watch["trigger"] == {"schedule": {"cron": "0 5 * * * ?"}}


def test_a_plain_http_service_url_keeps_its_port_and_scheme():
    """http://127.0.0.1:8080 becomes scheme http, port 8080 and the bare /api/v1/detect path."""
    webhook = rendered("http://127.0.0.1:8080")["actions"][WEBHOOK_ACTION]["webhook"]
    assert (webhook["scheme"], webhook["host"], webhook["port"], webhook["path"]) == (
        "http",
        "127.0.0.1",
        8080,
        "/api/v1/detect",
    )
