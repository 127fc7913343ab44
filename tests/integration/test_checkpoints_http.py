"""Scheduled detection from a checkpoint, against real gunicorn and the real node (docs/scheduling.md).

The sample's hourly watch finds exactly two planted children against their 7-day baseline:
explorer.exe -> TightVNCViewerPortable.exe in 2024-03-06 10:00-11:00 and OUTLOOK.EXE -> powershell.exe
in 14:00-15:00 (test_watch_render.py derives this). Each test gets its own copy of the sample, so its
own checkpoint (the checkpoint id follows use case and index).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, progress_indices
from elasticsearch import Elasticsearch
from es_data import create_sample_index
from test_service_http import assert_valid

from connector.progress.checkpoints import checkpoint_id

USE_CASE = "terms_rare_childname"
PLANTED = {
    "2024-03-06T10:00:00.000Z": [("explorer.exe", "TightVNCViewerPortable.exe")],
    "2024-03-06T14:00:00.000Z": [("OUTLOOK.EXE", "powershell.exe")],
}


@pytest.fixture
def sample_index(es_client: Elasticsearch) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}ckpt-{uuid.uuid4().hex}"
    create_sample_index(es_client, name, shards=1)
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


def since(service: RunningService, index: str, **options: Any) -> Any:
    body = {"since_checkpoint": {"baseline": "7d", **options}, "index": index, "use_case": USE_CASE}
    return service.call("POST", "/api/v1/detect", json_body=body, headers=service.basic)


def ok(result: Any) -> dict[str, Any]:
    assert result.status == 200, result.body
    answer = result.json()
    assert_valid("detect-response", answer)
    return answer


def found_by_span(answers: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Outliers per span start, from the answers' outliers (each has its event's @timestamp)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for answer in answers:
        spans = [span["from"] for span in answer["checkpoint"]["spans"]]
        for outlier in answer["outliers"]:
            hour = outlier["@timestamp"][:13] + ":00:00.000Z"
            assert hour in spans, (hour, spans)
            found.setdefault(hour, []).append((outlier["aggregator"], outlier["term"]))
    return found


def results_of(es_client: Elasticsearch, service: RunningService, index: str) -> list[dict[str, Any]]:
    results = service.environment["CONNECTOR_RESULTS_INDEX"]
    es_client.indices.refresh(index=results)
    response = es_client.search(index=results, size=100, query={"term": {"outliers.source_index": index}})
    return response["hits"]["hits"]


def stored_checkpoint(es_client: Elasticsearch, service: RunningService, index: str) -> dict[str, Any]:
    checkpoints, _ = progress_indices(service.environment["CONNECTOR_RESULTS_INDEX"])
    return es_client.get(index=checkpoints, id=checkpoint_id(USE_CASE, index))["_source"]


def test_three_skipped_calls_are_caught_up_by_the_next_and_each_outlier_is_reported_once(
    gunicorn_service, es_client, sample_index
):
    first = ok(since(gunicorn_service, sample_index, to="2024-03-06T10:05:00Z"))
    assert first["checkpoint"]["previous"] is None  # no checkpoint yet: the previous whole hour
    assert [span["from"] for span in first["checkpoint"]["spans"]] == ["2024-03-06T09:00:00.000Z"]
    assert first["checkpoint"]["analysed_to"] == "2024-03-06T10:00:00.000Z"
    # The calls at 11:05, 12:05 and 13:05 never happen; the one at 14:05 catches up.
    catch_up = ok(since(gunicorn_service, sample_index, to="2024-03-06T14:05:00Z"))
    checkpoint = catch_up["checkpoint"]
    assert checkpoint["previous"] == "2024-03-06T10:00:00.000Z"
    assert [(span["from"], span["to"]) for span in checkpoint["spans"]] == [
        ("2024-03-06T10:00:00.000Z", "2024-03-06T11:00:00.000Z"),
        ("2024-03-06T11:00:00.000Z", "2024-03-06T12:00:00.000Z"),
        ("2024-03-06T12:00:00.000Z", "2024-03-06T13:00:00.000Z"),
        ("2024-03-06T13:00:00.000Z", "2024-03-06T14:00:00.000Z"),
    ]
    # Each span's baseline is the 7 days before it, as the hourly call would have had.
    assert checkpoint["spans"][0]["baseline_from"] == "2024-02-28T10:00:00.000Z"
    assert checkpoint["analysed_to"] == "2024-03-06T14:00:00.000Z" and checkpoint["owed"] is None
    next_hour = ok(since(gunicorn_service, sample_index, to="2024-03-06T15:05:00Z"))
    assert found_by_span([first, catch_up, next_hour]) == PLANTED
    assert catch_up["outliers_total"] == 1 and catch_up["annotation"]["written"] == 1
    # Calling again for the same hour analyses nothing: no hour twice.
    again = ok(since(gunicorn_service, sample_index, to="2024-03-06T15:30:00Z"))
    assert again["checkpoint"]["spans"] == [] and again["checkpoint"]["advanced"] is False
    stored = results_of(es_client, gunicorn_service, sample_index)
    assert sorted(
        (hit["_source"]["outliers"]["aggregator"], hit["_source"]["outliers"]["term"]) for hit in stored
    ) == [
        ("OUTLOOK.EXE", "powershell.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
    ]


def test_the_catch_up_reports_what_the_hourly_calls_would_have(gunicorn_service, sample_index):
    """Each span equals the plain range call for that hour with the same baseline (a dry run)."""
    answer = ok(
        since(gunicorn_service, sample_index, initial_from="2024-03-06T08:00:00Z", to="2024-03-06T16:00Z")
    )
    by_span = {span["from"]: span["outliers_total"] for span in answer["checkpoint"]["spans"]}
    for start, total in by_span.items():
        plain = ok(
            gunicorn_service.call(
                "POST",
                "/api/v1/detect",
                json_body={
                    "range": {"from": start, "to": f"{start}||+1h"},
                    "baseline": {"from": f"{start}||-7d"},
                    "index": sample_index,
                    "use_case": USE_CASE,
                    "dry_run": True,
                },
                headers=gunicorn_service.basic,
            )
        )
        assert plain["outliers_total"] == total, start
    assert sum(by_span.values()) == 2


def test_beyond_max_spans_the_rest_is_owed_and_the_next_call_continues(gunicorn_service, sample_index):
    first = ok(
        since(
            gunicorn_service,
            sample_index,
            initial_from="2024-03-06T09:00Z",
            to="2024-03-06T15:00Z",
            max_spans=2,
        )
    )
    assert first["checkpoint"]["owed"] == {
        "from": "2024-03-06T11:00:00.000Z",
        "to": "2024-03-06T15:00:00.000Z",
        "spans": 4,
    }
    second = ok(since(gunicorn_service, sample_index, to="2024-03-06T15:00Z"))
    assert second["checkpoint"]["previous"] == "2024-03-06T11:00:00.000Z"
    assert second["checkpoint"]["owed"] is None
    assert found_by_span([first, second]) == PLANTED


def test_two_concurrent_catch_ups_leave_one_checkpoint_and_no_duplicates(
    gunicorn_service, es_client, sample_index
):
    """Two workers get the same catch-up at once: one analyses, the other gets 409 checkpoint_busy (or,
    if it comes after the first finished, finds nothing owed). No hour is analysed twice."""
    answers: list[Any] = [None, None]
    start = threading.Barrier(2)

    def call(slot: int) -> None:
        start.wait()
        answers[slot] = since(
            gunicorn_service, sample_index, initial_from="2024-03-06T00:00Z", to="2024-03-07T00:00Z"
        )

    threads = [threading.Thread(target=call, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    analysed: list[str] = []
    successes = []
    for result in answers:
        if result.status == 409:
            error = result.json()["error"]
            assert error["code"] == "checkpoint_busy"
            assert "analysed nothing" in error["message"] and "retry" in error["message"]
            continue
        answer = ok(result)
        successes.append(answer)
        analysed.extend(span["from"] for span in answer["checkpoint"]["spans"])
    assert successes
    assert len(analysed) == len(set(analysed)) == 24
    assert found_by_span(successes) == PLANTED
    assert len(results_of(es_client, gunicorn_service, sample_index)) == 2
    stored = stored_checkpoint(es_client, gunicorn_service, sample_index)
    assert stored["analysed_to"] == "2024-03-07T00:00:00.000Z" and stored["lease"] is None
    assert stored["spans_analysed"] == 24


def test_checkpoints_are_listed_with_their_lag(gunicorn_service, sample_index):
    ok(since(gunicorn_service, sample_index, to="2024-03-06T10:00Z"))
    result = gunicorn_service.call("GET", "/api/v1/checkpoints", headers=gunicorn_service.basic)
    assert result.status == 200, result.body
    listing = result.json()
    assert_valid("checkpoints-response", listing)
    (mine,) = [entry for entry in listing["checkpoints"] if entry["index"] == sample_index]
    assert mine["analysed_to"] == "2024-03-06T10:00:00.000Z" and mine["use_case"] == USE_CASE
    assert mine["behind"] is True and mine["lag_seconds"] > 3600 * 24  # the sample is from 2024
    assert listing["behind"] >= 1
    assert gunicorn_service.call("GET", "/api/v1/checkpoints").status == 401


def test_since_checkpoint_cannot_be_combined_with_a_range(gunicorn_service, sample_index):
    body = {"since_checkpoint": {}, "range": {"from": "now-1h", "to": "now"}, "index": sample_index}
    result = gunicorn_service.call("POST", "/api/v1/detect", json_body=body, headers=gunicorn_service.basic)
    assert result.status == 400
    assert result.json()["error"]["details"] == [
        {"path": "$.range", "message": "cannot be combined with since_checkpoint; give one of the two forms"}
    ]


def test_a_dry_run_neither_takes_nor_moves_the_checkpoint(gunicorn_service, es_client, sample_index):
    body = {
        "since_checkpoint": {"to": "2024-03-06T11:00Z", "baseline": "7d"},
        "index": sample_index,
        "dry_run": True,
    }
    answer = ok(
        gunicorn_service.call("POST", "/api/v1/detect", json_body=body, headers=gunicorn_service.basic)
    )
    assert answer["checkpoint"]["advanced"] is False and answer["checkpoint"]["analysed_to"] is None
    assert [span["from"] for span in answer["checkpoint"]["spans"]] == ["2024-03-06T10:00:00.000Z"]
    assert answer["outliers_total"] == 1
    checkpoints, _ = progress_indices(gunicorn_service.environment["CONNECTOR_RESULTS_INDEX"])
    stored = es_client.options(ignore_status=404).get(
        index=checkpoints, id=checkpoint_id(USE_CASE, sample_index)
    )
    assert not stored.body.get("found")
