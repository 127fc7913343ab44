"""POST /api/v1/detect over real HTTP: every documented status produced for real, write modes, baseline."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService
from elasticsearch import Elasticsearch, helpers
from es_data import SAMPLE_MAPPINGS, create_sample_index
from test_service_http import assert_error, assert_valid

SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
PLANTED = {
    ("WINWORD.EXE", "cmd.exe"),
    ("OUTLOOK.EXE", "powershell.exe"),
    ("chrome.exe", "cmd.exe"),
    ("chrome.exe", "7zFM.exe"),
    ("explorer.exe", "TightVNCViewerPortable.exe"),
}


@pytest.fixture
def events_index(es_client: Elasticsearch) -> Iterator[str]:
    """A fresh copy of the sample in an index the service may read (in-place runs modify it)."""
    name = f"{SERVICE_INDEX_PREFIX}detect-{uuid.uuid4().hex}"
    create_sample_index(es_client, name, shards=1)
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


def _detect(service: RunningService, body: dict, *, basic: bool = False):
    return service.call(
        "POST", "/api/v1/detect", json_body=body, headers=service.basic if basic else service.bearer
    )


@pytest.mark.parametrize(
    "index",
    [
        "*",
        "osquery-*",
        f"{SERVICE_INDEX_PREFIX}a,secret",
        f"-{SERVICE_INDEX_PREFIX}a",
        f"remote:{SERVICE_INDEX_PREFIX}*",
    ],
    ids=["everything", "not-allowed-pattern", "comma-widening", "exclusion", "remote-cluster"],
)
def test_index_outside_the_allowed_patterns_is_403(gunicorn_service, gunicorn_service_es_down, index):
    """Index names that would widen access are refused before any query is sent: a service whose
    Elasticsearch is a closed port gives the same 403 (any request it sent would end the call in 503)."""
    for service in (gunicorn_service, gunicorn_service_es_down):
        error = assert_error(
            _detect(service, {"range": SAMPLE_RANGE, "index": index}), 403, "index_not_allowed"
        )
        assert [detail["path"] for detail in error["details"]] == ["$.index"]


def test_an_allowed_index_reaches_elasticsearch(gunicorn_service_es_down):
    """The control of the test above: an allowed index on the closed-port service does send a query, and
    gets 503 elasticsearch_unavailable."""
    body = {"range": SAMPLE_RANGE, "index": f"{SERVICE_INDEX_PREFIX}allowed", "dry_run": True}
    assert_error(_detect(gunicorn_service_es_down, body), 503, "elasticsearch_unavailable")


def test_unknown_use_case_is_404_listing_the_known_ones(gunicorn_service, events_index):
    """The message names the use cases the service has."""
    result = _detect(gunicorn_service, {"range": SAMPLE_RANGE, "index": events_index, "use_case": "nope"})
    error = assert_error(result, 404, "unknown_use_case")
    assert "terms_rare_childname" in error["message"]


def test_bad_es_query_filter_is_422_with_elasticsearch_reason(gunicorn_service, events_index):
    """Elasticsearch's parse error reaches the caller as 422 query_rejected, with its reason."""
    body = {"range": SAMPLE_RANGE, "index": events_index, "use_case": "terms_broken_query"}
    error = assert_error(_detect(gunicorn_service, body), 422, "query_rejected")
    assert "Cannot parse 'OsqueryFilter.name:(cmd.exe'" in error["message"]


def test_field_missing_from_the_index_is_422_naming_field_and_index(gunicorn_service, events_index):
    """A configured field that no target index maps: 422 invalid_field naming both."""
    body = {"range": SAMPLE_RANGE, "index": events_index, "use_case": "terms_unknown_field"}
    error = assert_error(_detect(gunicorn_service, body), 422, "invalid_field")
    assert "OsqueryFilter.grandparentname" in error["message"]
    assert events_index in error["message"]


@pytest.mark.parametrize(
    ("range_", "path"),
    [
        ({"from": "now-7x", "to": "now"}, "$.range.from"),
        ({"from": "2024-03-07T00:00:00Z", "to": "2024-03-04T00:00:00Z"}, "$.range.to"),
        ({"from": "now-30y", "to": "now"}, "$.range"),
    ],
    ids=["bad-date-math", "to-before-from", "too-long"],
)
def test_bad_ranges_are_400_naming_the_path(gunicorn_service, range_, path):
    """Ranges are resolved by the service; a bad one is a 400 whose details point at it."""
    error = assert_error(_detect(gunicorn_service, {"range": range_}), 400, "invalid_range")
    assert [detail["path"] for detail in error["details"]] == [path]


def test_basic_auth_detection_writes_results_and_reruns_change_nothing(
    gunicorn_service, events_index, es_client, service_results_index
):
    """A Watcher-style call (HTTP basic) writes the five outliers; the same call again writes none."""
    body = {"range": SAMPLE_RANGE, "index": events_index}
    first = _detect(gunicorn_service, body, basic=True)
    assert first.status == 200, first.body
    response = first.json()
    assert_valid("detect-response", response)
    assert {(o["aggregator"], o["term"]) for o in response["outliers"]} == PLANTED
    assert response["annotation"]["mode"] == "results_index"
    assert response["annotation"]["index"] == service_results_index
    assert response["annotation"]["written"] + response["annotation"]["unchanged"] == 5
    again = _detect(gunicorn_service, body, basic=True).json()
    assert (again["annotation"]["written"], again["annotation"]["unchanged"]) == (0, 5)
    es_client.indices.refresh(index=service_results_index)
    query = {"terms": {"outliers.source_index": [events_index]}}
    assert es_client.count(index=service_results_index, query=query)["count"] == 5


def test_in_place_mode_annotates_the_source_events(gunicorn_service, events_index, es_client):
    """annotate=in_place: the five source events carry tags and outliers.*, nothing else does."""
    body = {"range": SAMPLE_RANGE, "index": events_index, "annotate": "in_place"}
    result = _detect(gunicorn_service, body)
    assert result.status == 200, result.body
    assert result.json()["annotation"]["written"] == 5
    es_client.indices.refresh(index=events_index)
    annotated = es_client.search(index=events_index, query={"exists": {"field": "outliers"}}, size=10)["hits"]
    assert annotated["total"]["value"] == 5
    assert {
        (hit["_source"]["outliers"]["aggregator"][0], hit["_source"]["outliers"]["term"][0])
        for hit in annotated["hits"]
    } == PLANTED


def test_baseline_over_http_reports_the_last_day_only(gunicorn_service, events_index):
    """baseline: counted over three days, reported for the last one, first seen in range."""
    body = {
        "range": {"from": "2024-03-06T00:00:00Z", "to": "2024-03-07T00:00:00Z"},
        "baseline": {"from": "2024-03-04T00:00:00Z"},
        "index": events_index,
        "dry_run": True,
    }
    result = _detect(gunicorn_service, body)
    assert result.status == 200, result.body
    response = result.json()
    assert_valid("detect-response", response)
    assert {(o["aggregator"], o["term"]) for o in response["outliers"]} == {
        ("OUTLOOK.EXE", "powershell.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
    }
    assert all(o["first_seen_in_range"] is True for o in response["outliers"])
    assert response["baseline"] == {"from": "2024-03-04T00:00:00.000Z"}


# -- range edges and first_seen_in_range, on events built for them ---------------------------------

DAY_1, DAY_2, DAY_3 = "2024-03-04T00:00:00.000Z", "2024-03-05T00:00:00.000Z", "2024-03-06T00:00:00.000Z"
EDGE_RANGE = {"from": DAY_2, "to": DAY_3}
COMMON_CHILD_COUNT = 700


def _process(event_id: str, timestamp: str, child: str) -> dict:
    return {
        "_id": event_id,
        "_source": {
            "@timestamp": timestamp,
            "tags": ["endpoint"],
            "meta": {"command": {"name": "get_all_processes_enriched"}},
            "host": {"name": "WS-001"},
            "OsqueryFilter": {"name": child, "parentname": "explorer.exe"},
        },
    }


@pytest.fixture(scope="module")
def edge_index(es_client: Elasticsearch) -> Iterator[str]:
    """explorer.exe's children, placed around a range from day 2 to day 3 (the seed use case judges them).

    * ``chrome.exe`` 700 times on day 2: the common child;
    * ``seen-before.exe`` once on day 1 (before the range, inside a baseline from day 1) and once on day 2;
    * ``new.exe`` once, exactly at day 2 00:00 (the range's ``from``, inclusive);
    * ``at-to.exe`` once, exactly at day 3 00:00 (the range's ``to``, exclusive).

    Counted over day 2 alone: 700, 1, 1 (mean 234, frontier 1 % of it = 2.34), so both single children are
    outliers. With the baseline from day 1: 700, 2, 1 (frontier 2.34), so seen-before.exe, counted twice,
    still is. Were ``to`` inclusive, at-to.exe would be counted and flagged.
    """
    events = [
        _process(f"chrome-{number}", f"2024-03-05T01:{number // 60:02d}:{number % 60:02d}.000Z", "chrome.exe")
        for number in range(COMMON_CHILD_COUNT)
    ]
    events += [
        _process("seen-before-day-1", "2024-03-04T12:00:00.000Z", "seen-before.exe"),
        _process("seen-before-day-2", "2024-03-05T12:00:00.000Z", "seen-before.exe"),
        _process("new-at-from", DAY_2, "new.exe"),
        _process("at-to", DAY_3, "at-to.exe"),
    ]
    name = f"{SERVICE_INDEX_PREFIX}edges-{uuid.uuid4().hex}"
    es_client.indices.create(
        index=name, settings={"number_of_shards": 1, "number_of_replicas": 0}, mappings=SAMPLE_MAPPINGS
    )
    try:
        actions = ({"_index": name, "_id": event["_id"], "_source": event["_source"]} for event in events)
        indexed, errors = helpers.bulk(es_client, actions, refresh="wait_for")
        assert (indexed, errors) == (len(events), [])
        yield name
    finally:
        es_client.indices.delete(index=name, ignore_unavailable=True)


def _edge_detection(service: RunningService, body: dict) -> dict:
    result = _detect(service, {**body, "dry_run": True})
    assert result.status == 200, result.body
    response = result.json()
    assert_valid("detect-response", response)
    return response


def test_to_is_exclusive_and_from_inclusive(gunicorn_service, edge_index):
    """An event exactly at ``to`` is neither counted nor reported; one exactly at ``from`` is both."""
    response = _edge_detection(gunicorn_service, {"range": EDGE_RANGE, "index": edge_index})
    assert response["range"] == EDGE_RANGE
    assert response["events_analyzed"] == COMMON_CHILD_COUNT + 2  # not at-to.exe, not day 1's event
    assert {(o["_id"], o["term"], o["term_count"]) for o in response["outliers"]} == {
        ("seen-before-day-2", "seen-before.exe", 1),
        ("new-at-from", "new.exe", 1),
    }
    assert all(o["first_seen_in_range"] is None for o in response["outliers"])  # no baseline, no answer


def test_a_child_seen_in_the_baseline_is_not_first_seen_in_range(gunicorn_service, edge_index):
    """With a baseline, an outlier whose pair also occurred before the range says first_seen_in_range: false;
    one whose pair occurs only inside the range says true. Only events inside the range are reported."""
    body = {"range": EDGE_RANGE, "baseline": {"from": DAY_1}, "index": edge_index}
    response = _edge_detection(gunicorn_service, body)
    assert response["baseline"] == {"from": DAY_1}
    assert response["events_analyzed"] == COMMON_CHILD_COUNT + 3  # day 1's event is counted
    assert {
        (o["_id"], o["term"], o["term_count"], o["first_seen_in_range"]) for o in response["outliers"]
    } == {
        ("seen-before-day-2", "seen-before.exe", 2, False),
        ("new-at-from", "new.exe", 1, True),
    }
