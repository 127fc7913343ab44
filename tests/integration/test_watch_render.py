"""The scheduled calls, rendered as Watcher and Kibana render them, answered by the real service.

The watch's webhook body and the Kibana rule's action body are Mustache templates. Here a real Mustache
implementation (pystache) renders them against the variables each engine provides (docs/formats.md
§6 and §7): Watcher's ``{ctx: ...}`` with dates as Java prints them, rendered as text/plain
(no escaping); Kibana's ``{{date}}`` and ``context``, rendered with JSON escaping. The request is then
sent as the engine would send it (method, path, headers, basic auth) to real gunicorn over the sample
loaded into the real Elasticsearch node.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pystache
import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, http_request
from elasticsearch import Elasticsearch
from es_data import create_sample_index
from test_service_http import assert_valid

from connector.kibana.alerting import DEFAULT_CONNECTOR_ID, render_connector, render_rule
from connector.scheduling import ServiceCredentials, ServiceEndpoint
from connector.settings import Secret
from connector.watcher import WEBHOOK_ACTION, render_watch

# Watcher renders templates as text/plain: values are inserted as they are (docs/formats.md §6).
WATCHER_MUSTACHE = pystache.Renderer(escape=lambda text: text, missing_tags="ignore")
# Kibana renders action params with JSON escaping (docs/formats.md §7).
KIBANA_MUSTACHE = pystache.Renderer(escape=lambda text: json.dumps(text)[1:-1], missing_tags="ignore")


@pytest.fixture
def hourly_index(es_client: Elasticsearch) -> Iterator[str]:
    """The sample in an index the service may read; results of these calls go to the service's index.

    One per test: the scheduled calls ask for everything since the checkpoint of (use case, index), so
    each test starts without one."""
    name = f"{SERVICE_INDEX_PREFIX}hourly-{uuid.uuid4().hex}"
    create_sample_index(es_client, name, shards=1)
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


def java_instant(moment: datetime) -> str:
    """``ZonedDateTime.toString()`` in UTC: seconds and fraction are left out when they are zero."""
    text = moment.strftime("%Y-%m-%dT%H:%M")
    if moment.second or moment.microsecond:
        text += moment.strftime(":%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def watcher_ctx(watch: Mapping[str, Any], scheduled: datetime, watch_id: str = "rare-child-detect") -> dict:
    """The model Watcher renders with (Variables.createCtx): everything under ``ctx``."""
    triggered = scheduled + timedelta(milliseconds=37)
    return {
        "ctx": {
            "id": f"{watch_id}_{uuid.uuid4()}-{java_instant(triggered)}",
            "watch_id": watch_id,
            "execution_time": java_instant(triggered + timedelta(milliseconds=4)),
            "trigger": {"triggered_time": java_instant(triggered), "scheduled_time": java_instant(scheduled)},
            "metadata": watch["metadata"],
            "payload": {},
            "vars": {},
        }
    }


def send_as_watcher(watch: Mapping[str, Any], scheduled: datetime) -> Any:
    """Render the webhook action for one scheduled time and send it as Watcher's HttpClient would."""
    webhook = watch["actions"][WEBHOOK_ACTION]["webhook"]
    model = watcher_ctx(watch, scheduled)
    path = WATCHER_MUSTACHE.render(webhook["path"], model)
    headers = {name: WATCHER_MUSTACHE.render(value, model) for name, value in webhook["headers"].items()}
    basic = webhook["auth"]["basic"]
    pair = f"{basic['username']}:{basic['password']}".encode()
    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    body = WATCHER_MUSTACHE.render(webhook["body"], model)
    url = f"{webhook['scheme']}://{webhook['host']}:{webhook['port']}{path}"
    return http_request(webhook["method"].upper(), url, data=body.encode(), headers=headers), body


def rendered_watch(service: RunningService, index: str) -> dict[str, Any]:
    return render_watch(
        endpoint=ServiceEndpoint.parse(service.url),
        credentials=ServiceCredentials(service.basic_user, Secret(service.basic_password)),
        index=index,
    )


def rendered_rule_call(service: RunningService, index: str) -> tuple[dict[str, Any], dict[str, Any]]:
    credentials = ServiceCredentials(service.basic_user, Secret(service.basic_password))
    connector = render_connector(endpoint=ServiceEndpoint.parse(service.url), credentials=credentials)
    rule = render_rule(connector_id=DEFAULT_CONNECTOR_ID, index=index)
    return connector, rule


def kibana_variables(rule: Mapping[str, Any], date: str) -> dict[str, Any]:
    """What Kibana gives an .es-query action of group "query matched" (docs/formats.md §7)."""
    return {
        "date": date,
        "rule": {"id": "8a1e4b7c-6d2f-4e9a-b3c5-7f0d1e2a3b4c", "name": rule["name"], "tags": rule["tags"]},
        "alert": {"id": "query matched", "actionGroup": "query matched"},
        "context": {
            "date": date,
            "value": 5280,
            "hits": [],
            "title": f"rule '{rule['name']}' matched query",
            "message": "Document count is 5280 in the last 1h. Alert when greater than or equal to 0.",
            "link": "https://kibana.internal:5601/app/management/insightsAndAlerting/triggersActions/rule/x",
        },
    }


def send_as_kibana(connector: Mapping[str, Any], rule: Mapping[str, Any], date: str) -> tuple[Any, str]:
    """Render the rule's action body and send it as the Webhook connector would (config + secrets)."""
    config, secrets = connector["config"], connector["secrets"]
    body = KIBANA_MUSTACHE.render(rule["actions"][0]["params"]["body"], kibana_variables(rule, date))
    headers = dict(config["headers"])
    assert config["hasAuth"] is True and config["authType"] == "webhook-authentication-basic"
    pair = f"{secrets['user']}:{secrets['password']}".encode()
    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    result = http_request(config["method"].upper(), config["url"], data=body.encode(), headers=headers)
    return result, body


def pairs(answer: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(outlier["aggregator"], outlier["term"]) for outlier in answer["outliers"]]


@pytest.mark.parametrize(
    ("scheduled", "expected_range", "expected_pairs"),
    [
        (
            datetime(2024, 3, 6, 11, 5, tzinfo=UTC),
            {"from": "2024-03-06T10:00:00.000Z", "to": "2024-03-06T11:00:00.000Z"},
            [("explorer.exe", "TightVNCViewerPortable.exe")],
        ),
        (
            datetime(2024, 3, 6, 15, 5, 0, 123000, tzinfo=UTC),
            {"from": "2024-03-06T14:00:00.000Z", "to": "2024-03-06T15:00:00.000Z"},
            [("OUTLOOK.EXE", "powershell.exe")],
        ),
    ],
    ids=["java-minute-precision", "millisecond-precision"],
)
def test_the_rendered_watch_call_returns_the_planted_outlier_of_its_hour(
    gunicorn_service, hourly_index, scheduled, expected_range, expected_pairs
):
    """The first run at HH:05 analyses the previous whole hour with a 7-day baseline and gets its planted
    child."""
    watch = rendered_watch(gunicorn_service, hourly_index)
    result, body = send_as_watcher(watch, scheduled)
    assert result.status == 200, result.body
    answer = result.json()
    assert_valid("detect-response", answer)
    stamp = java_instant(scheduled)
    assert json.loads(body) == {
        "since_checkpoint": {"to": stamp, "initial_from": f"{stamp}||-1h/h", "baseline": "7d"},
        "max_outliers": 10,
        "index": hourly_index,
    }
    assert answer["checkpoint"]["previous"] is None  # the first run: the previous whole hour
    assert answer["range"] == expected_range
    week_before = (scheduled - timedelta(days=7, hours=1)).strftime("%Y-%m-%dT%H:00:00.000Z")
    assert answer["baseline"] == {"from": week_before}  # 7 days before the start of the range
    assert answer["index"] == hourly_index
    assert pairs(answer) == expected_pairs
    assert answer["outliers_total"] == 1
    assert [outlier["first_seen_in_range"] for outlier in answer["outliers"]] == [True]


def test_hourly_runs_tile_the_sample_and_find_the_children_rare_against_their_baseline(
    gunicorn_service, hourly_index
):
    """72 hourly runs over the sample: contiguous hours without gap or overlap, outliers only where planted.

    WINWORD.EXE -> cmd.exe, chrome.exe -> cmd.exe and chrome.exe -> 7zFM.exe are outliers over the whole
    sample but not against the shorter history available when they happened (fewer events before them:
    the 1 % frontier of their parent is below 1 then), so the hourly watch reports the two planted on the
    last day.
    """
    watch = rendered_watch(gunicorn_service, hourly_index)
    first = datetime(2024, 3, 4, 1, 5, tzinfo=UTC)
    ranges, found = [], {}
    for hour in range(72):
        scheduled = first + timedelta(hours=hour)
        result, _ = send_as_watcher(watch, scheduled)
        assert result.status == 200, (scheduled, result.body)
        answer = result.json()
        ranges.append((answer["range"]["from"], answer["range"]["to"]))
        if answer["outliers_total"]:
            found[answer["range"]["from"]] = pairs(answer)
    assert ranges[0] == ("2024-03-04T00:00:00.000Z", "2024-03-04T01:00:00.000Z")
    assert ranges[-1] == ("2024-03-06T23:00:00.000Z", "2024-03-07T00:00:00.000Z")
    assert all(previous[1] == following[0] for previous, following in pairwise(ranges))
    assert found == {
        "2024-03-06T10:00:00.000Z": [("explorer.exe", "TightVNCViewerPortable.exe")],
        "2024-03-06T14:00:00.000Z": [("OUTLOOK.EXE", "powershell.exe")],
    }


@pytest.mark.parametrize(
    ("date", "expected_range", "expected_pairs"),
    [
        (
            "2024-03-06T12:05:00.123Z",
            {"from": "2024-03-06T10:00:00.000Z", "to": "2024-03-06T12:00:00.000Z"},
            [("explorer.exe", "TightVNCViewerPortable.exe")],
        ),
        (
            "2024-03-06T15:59:59.998Z",
            {"from": "2024-03-06T13:00:00.000Z", "to": "2024-03-06T15:00:00.000Z"},
            [("OUTLOOK.EXE", "powershell.exe")],
        ),
    ],
    ids=["early-in-the-hour", "late-in-the-hour"],
)
def test_the_kibana_rule_action_body_returns_the_planted_outlier(
    gunicorn_service, hourly_index, date, expected_range, expected_pairs
):
    """The rule's body, rendered with {{date}} and JSON escaping: its first run analyses the last two whole
    hours (initial_from), one span each."""
    connector, rule = rendered_rule_call(gunicorn_service, hourly_index)
    result, body = send_as_kibana(connector, rule, date)
    assert result.status == 200, result.body
    answer = result.json()
    assert_valid("detect-response", answer)
    assert json.loads(body)["since_checkpoint"] == {
        "to": date,
        "initial_from": f"{date}||-2h/h",
        "baseline": "7d",
    }
    assert answer["range"] == expected_range
    assert len(answer["checkpoint"]["spans"]) == 2
    assert pairs(answer) == expected_pairs
