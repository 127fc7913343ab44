"""Scheduled detection from a checkpoint, against real gunicorn and the real node (docs/scheduling.md).

The sample's hourly watch finds exactly two planted children against their 7-day baseline:
explorer.exe -> TightVNCViewerPortable.exe in 2024-03-06 10:00-11:00 and OUTLOOK.EXE -> powershell.exe
in 14:00-15:00 (test_watch_render.py derives this). Each test gets its own copy of the sample, so its
own checkpoint (the checkpoint id follows use case and index). ``GET /api/v1/metrics`` is checked against
these checkpoints; the rarechild catch-up has a service and events of its own (planted below).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, progress_indices, running_service
from elasticsearch import Elasticsearch, helpers
from es_data import SAMPLE_MAPPINGS, create_sample_index
from test_service_http import assert_valid

from connector.progress.checkpoints import checkpoint_id
from connector.timerange import isoformat_z

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


def metric_samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample of an exposition text by metric name and labels (our label values have no quote)."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = tuple(tuple(pair.split("=", 1)) for pair in labels.rstrip("}").split(",") if pair)
        key = tuple((label, quoted.strip('"')) for label, quoted in pairs)
        samples.setdefault(name, {})[key] = float(value)
    return samples


@pytest.fixture
def recent_index(es_client: Elasticsearch) -> Iterator[str]:
    """An index mapped like the sample, without events: a catch-up up to now analyses empty hours."""
    name = f"{SERVICE_INDEX_PREFIX}recent-{uuid.uuid4().hex}"
    es_client.indices.create(
        index=name, settings={"number_of_shards": 1, "number_of_replicas": 0}, mappings=SAMPLE_MAPPINGS
    )
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


def test_metrics_say_which_checkpoint_is_behind_and_readiness_stays_up(
    gunicorn_service, sample_index, recent_index
):
    """A catch-up up to now leaves lag under the limit (behind 0); a checkpoint left in 2024 is behind 1.
    The lag is a metric for alerting: /readyz stays 200, the service must take the call that catches up."""
    ok(since(gunicorn_service, sample_index, to="2024-03-06T10:00Z"))
    caught_up = ok(since(gunicorn_service, recent_index, initial_from="now-2h", to="now"))
    assert len(caught_up["checkpoint"]["spans"]) == 2 and caught_up["checkpoint"]["owed"] is None
    listing = gunicorn_service.call("GET", "/api/v1/checkpoints", headers=gunicorn_service.basic).json()
    max_lag = listing["max_lag_hours"] * 3600
    listed = {entry["index"]: entry for entry in listing["checkpoints"]}

    result = gunicorn_service.call("GET", "/api/v1/metrics", headers=gunicorn_service.bearer)
    assert result.status == 200, result.body
    assert result.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = result.body.decode()
    for name in (
        "checkpoint_lag_seconds",
        "checkpoint_behind",
        "checkpoints_behind",
        "checkpoint_max_lag_seconds",
    ):
        assert f"# HELP rare_child_connector_{name} " in text
        assert f"# TYPE rare_child_connector_{name} gauge\n" in text
    samples = metric_samples(text)
    assert samples["rare_child_connector_checkpoint_max_lag_seconds"] == {(): max_lag}
    lag = samples["rare_child_connector_checkpoint_lag_seconds"]
    behind = samples["rare_child_connector_checkpoint_behind"]
    recent = (("use_case", USE_CASE), ("index", recent_index))
    old = (("use_case", USE_CASE), ("index", sample_index))
    assert 0 <= lag[recent] < max_lag and behind[recent] == 0
    assert lag[old] > 3600 * 24 and behind[old] == 1  # the sample is from 2024
    assert (behind[recent], behind[old]) == (listed[recent_index]["behind"], listed[sample_index]["behind"])
    assert samples["rare_child_connector_checkpoints_behind"] == {(): sum(behind.values())}

    assert gunicorn_service.call("GET", "/readyz", headers=gunicorn_service.bearer).status == 200
    assert gunicorn_service.call("GET", "/api/v1/metrics").status == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert gunicorn_service.call("GET", "/api/v1/metrics", headers=wrong).status == 401


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


# -- late events and restarts: a service of our own -----------------------------------------------

INGESTED_USE_CASE = "terms_rare_childname_ingested"
LATE_EVENT = {
    "@timestamp": "2024-03-06T09:30:00.000Z",
    "event": {"ingested": "2024-03-06T11:20:00.000Z"},
    "tags": ["endpoint"],
    "meta": {"command": {"name": "get_all_processes_enriched"}},
    "host": {"name": "WS-002"},
    "OsqueryFilter": {
        "name": "late-arrival.exe",
        "parentname": "OUTLOOK.EXE",
        "path": "C:\\Temp\\late-arrival.exe",
    },
}


@pytest.fixture(scope="module")
def own_service_setup(tmp_path_factory, es_url, service_credentials) -> Iterator[tuple[Any, dict[str, str]]]:
    """The example use case twice: as shipped, and selecting spans on event.ingested."""
    workdir = tmp_path_factory.mktemp("checkpoint-service")
    example = (Path(__file__).resolve().parents[2] / "examples/rare_child.ini").read_text()
    section = example.split("[terms_rare_childname]", 1)[1].split("[whitelist_regexps]", 1)[0]
    ingested = f"[{INGESTED_USE_CASE}]{section.rstrip()}\ningest_time_field=event.ingested\n\n"
    (workdir / "rare_child.ini").write_text(
        example.replace("[whitelist_regexps]", ingested + "[whitelist_regexps]")
    )
    results = f"{SERVICE_INDEX_PREFIX}results-{uuid.uuid4().hex}"
    checkpoints, summary = progress_indices(results)
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results,
        "CONNECTOR_CHECKPOINT_INDEX": checkpoints,
        "CONNECTOR_SUMMARY_INDEX": summary,
        "CONNECTOR_CATCH_UP_MAX_SPANS": "72",
    }
    yield workdir, environment
    client = Elasticsearch(es_url)
    client.options(ignore_status=404).indices.delete(index=f"{results}*", ignore_unavailable=True)
    client.close()


@pytest.fixture(scope="module")
def own_service(own_service_setup, service_credentials) -> Iterator[RunningService]:
    workdir, environment = own_service_setup
    with running_service(workdir, environment, service_credentials) as service:
        yield service


@pytest.fixture
def ingested_index(es_client: Elasticsearch) -> Iterator[str]:
    """The sample, with event.ingested mapped as a date (the sample's own events do not carry it)."""
    name = f"{SERVICE_INDEX_PREFIX}ingested-{uuid.uuid4().hex}"
    create_sample_index(es_client, name, shards=1)
    es_client.indices.put_mapping(
        index=name, properties={"event": {"properties": {"ingested": {"type": "date"}}}}
    )
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


def since_as(service: RunningService, index: str, use_case: str, **options: Any) -> Any:
    body = {"since_checkpoint": {"baseline": "7d", **options}, "index": index, "use_case": use_case}
    return service.call("POST", "/api/v1/detect", json_body=body, headers=service.basic)


@pytest.mark.parametrize(
    ("use_case", "reported"),
    [(INGESTED_USE_CASE, [("OUTLOOK.EXE", "late-arrival.exe")]), (USE_CASE, [])],
    ids=["ingest-time-field", "event-time-only"],
)
def test_an_event_indexed_late_into_an_analysed_hour_is_reported_by_the_next_call(
    own_service, es_client, ingested_index, use_case, reported
):
    """With ingest_time_field the next span judges it; without, it is lost (the gap the option closes).

    OUTLOOK.EXE has three children averaging 149 events before noon, so a fourth seen once is below 1 %
    of the average (pct_of_avg_value, sensitivity 1) whether it is counted at 09:30 or later."""
    first = ok(
        since_as(
            own_service, ingested_index, use_case, initial_from="2024-03-06T09:00Z", to="2024-03-06T11:00Z"
        )
    )
    assert [(o["aggregator"], o["term"]) for o in first["outliers"]] == PLANTED["2024-03-06T10:00:00.000Z"]
    es_client.index(index=ingested_index, id="late-1", document=LATE_EVENT, refresh="wait_for")
    following = ok(since_as(own_service, ingested_index, use_case, to="2024-03-06T12:00Z"))
    assert [span["from"] for span in following["checkpoint"]["spans"]] == ["2024-03-06T11:00:00.000Z"]
    assert [(o["aggregator"], o["term"]) for o in following["outliers"]] == reported
    if reported:
        (outlier,) = following["outliers"]
        assert outlier["_id"] == "late-1" and outlier["@timestamp"] == "2024-03-06T09:30:00.000Z"
    # Counting used the event time: the late event counts in its own hour for every later span too.
    later = ok(since_as(own_service, ingested_index, use_case, to="2024-03-06T13:00Z"))
    assert later["outliers"] == []


def test_a_worker_killed_in_the_middle_of_a_catch_up_loses_nothing(
    own_service_setup, service_credentials, es_client, sample_index
):
    """SIGKILL to the worker serving a 72-hour catch-up after two hours are stored; the lease keeps
    others out until it expires; then the next call resumes where the checkpoint stands, and every
    planted outlier is stored exactly once."""
    workdir, environment = own_service_setup
    environment = {**environment, "CONNECTOR_DETECT_TIMEOUT_SECONDS": "5"}  # lease: 5 s + 30 s margin
    with running_service(workdir, environment, service_credentials) as service:
        killed: list[Any] = []

        def call() -> None:
            try:
                # summary off: every hour recounts its baseline, so the 72 hours take long enough to kill
                killed.append(
                    since(
                        service,
                        sample_index,
                        initial_from="2024-03-04T00:00Z",
                        to="2024-03-07T00:00Z",
                        summary=False,
                    )
                )
            except OSError as error:  # the connection dies with the worker
                killed.append(error)

        thread = threading.Thread(target=call)
        thread.start()
        checkpoints = service.environment["CONNECTOR_CHECKPOINT_INDEX"]
        stored: dict[str, Any] = {}
        for _ in range(600):
            found = es_client.options(ignore_status=(404, 503)).get(  # 503: the index is being created
                index=checkpoints, id=checkpoint_id(USE_CASE, sample_index)
            )
            stored = found.body.get("_source") or {}
            if stored.get("spans_analysed", 0) >= 2:
                break
            time.sleep(0.01)
        assert stored.get("spans_analysed", 0) >= 2, stored
        worker = next(
            line["process"]["pid"]
            for line in service.log_lines()
            if "span 2024-03-04T00:00:00.000Z" in line.get("message", "")
        )
        os.kill(worker, signal.SIGKILL)
        thread.join()
        assert not (killed and getattr(killed[0], "status", None) == 200), "the call ended before the kill"
        stored = es_client.get(index=checkpoints, id=checkpoint_id(USE_CASE, sample_index))["_source"]
        resumed_from = stored["analysed_to"]
        assert stored["lease"] is not None and resumed_from < "2024-03-07"
        answers = []
        for _ in range(120):  # until the dead worker's lease has expired
            result = since(service, sample_index, to="2024-03-07T00:00Z")
            if result.status != 409:
                answers.append(ok(result))
                if answers[-1]["checkpoint"]["owed"] is None:
                    break
            else:
                assert result.json()["error"]["code"] == "checkpoint_busy"
                time.sleep(1)
        # A checkpoint write the worker had already sent may land after the read above: never earlier.
        assert answers and resumed_from <= answers[0]["checkpoint"]["previous"] < "2024-03-07"
        final = es_client.get(index=checkpoints, id=checkpoint_id(USE_CASE, sample_index))["_source"]
        assert final["analysed_to"] == "2024-03-07T00:00:00.000Z" and final["lease"] is None
        assert sorted(
            (hit["_source"]["outliers"]["aggregator"], hit["_source"]["outliers"]["term"])
            for hit in results_of(es_client, service, sample_index)
        ) == [("OUTLOOK.EXE", "powershell.exe"), ("explorer.exe", "TightVNCViewerPortable.exe")]


# -- the rarechild model: the same catch-up, scored alerts ----------------------------------------

RARECHILD_EXAMPLE = Path(__file__).resolve().parents[2] / "examples/rarechild.ini"
RARECHILD_USE_CASE = "rarechild_suspicious_child"
RARECHILD_HOSTS = [f"WS-{number:02d}" for number in range(1, 7)]
#: Launched on every host every hour from 2024-03-05T12:00: common, known before each span, on all hosts.
RARECHILD_BACKGROUND = [
    ("wininit.exe", "services.exe", r"C:\Windows\System32\services.exe"),
    ("services.exe", "svchost.exe", r"C:\Windows\System32\svchost.exe"),
    ("svchost.exe", "taskhostw.exe", r"C:\Windows\System32\taskhostw.exe"),
    ("explorer.exe", "chrome.exe", r"C:\Program Files\Google\Chrome\Application\chrome.exe"),
    ("explorer.exe", "notepad.exe", r"C:\Windows\System32\notepad.exe"),
]
#: One suspicious launch in each hour of the three skipped calls (span start -> id, parent, child, host,
#: path): a known technique, never seen before, on one host.
RARECHILD_PLANTED = {
    "2024-03-06T10:00:00.000Z": (
        "planted-10",
        "winword.exe",
        "powershell.exe",
        "WS-03",
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
    ),
    "2024-03-06T11:00:00.000Z": (
        "planted-11",
        "mshta.exe",
        "cmd.exe",
        "WS-05",
        r"C:\Windows\System32\cmd.exe",
    ),
    "2024-03-06T12:00:00.000Z": (
        "planted-12",
        "outlook.exe",
        "rundll32.exe",
        "WS-02",
        r"C:\Windows\System32\rundll32.exe",
    ),
}


def _process_event(when: str, parent: str, child: str, host: str, path: str) -> dict[str, Any]:
    return {
        "@timestamp": when,
        "tags": ["endpoint"],
        "meta": {"command": {"name": "get_all_processes_enriched"}},
        "host": {"name": host},
        "OsqueryFilter": {"parentname": parent, "name": child, "path": path},
    }


def rarechild_events() -> list[tuple[str, dict[str, Any]]]:
    """The background from 2024-03-05T12:00 to 2024-03-06T14:00, and :data:`RARECHILD_PLANTED` at :17."""
    start = datetime(2024, 3, 5, 12, tzinfo=UTC)
    events = []
    for hour in range(26):
        launches = itertools.product(RARECHILD_HOSTS, RARECHILD_BACKGROUND)
        for minute, (host, (parent, child, path)) in enumerate(launches):
            when = isoformat_z(start + timedelta(hours=hour, minutes=minute))
            events.append((f"bg-{hour}-{minute}", _process_event(when, parent, child, host, path)))
    for span, (event_id, parent, child, host, path) in RARECHILD_PLANTED.items():
        when = span.replace(":00:00.000Z", ":17:00.000Z")
        events.append((event_id, _process_event(when, parent, child, host, path)))
    return events


@pytest.fixture
def rarechild_index(es_client: Elasticsearch) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}rarechild-ckpt-{uuid.uuid4().hex}"
    es_client.indices.create(
        index=name, settings={"number_of_shards": 1, "number_of_replicas": 0}, mappings=SAMPLE_MAPPINGS
    )
    actions = [
        {"_index": name, "_id": event_id, "_source": source} for event_id, source in rarechild_events()
    ]
    _, errors = helpers.bulk(es_client, actions, refresh="wait_for")
    assert errors == []
    yield name
    es_client.options(ignore_status=404).indices.delete(index=name)


@pytest.fixture(scope="module")
def rarechild_service(tmp_path_factory, es_url, es_client, service_credentials) -> Iterator[RunningService]:
    """Real gunicorn serving examples/rarechild.ini, with its own results, checkpoint and summary indices."""
    workdir = tmp_path_factory.mktemp("rarechild-checkpoint-service")
    shutil.copyfile(RARECHILD_EXAMPLE, workdir / RARECHILD_EXAMPLE.name)
    results = f"{SERVICE_INDEX_PREFIX}results-{uuid.uuid4().hex}"
    checkpoints, summary = progress_indices(results)
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(workdir / RARECHILD_EXAMPLE.name),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results,
        "CONNECTOR_CHECKPOINT_INDEX": checkpoints,
        "CONNECTOR_SUMMARY_INDEX": summary,
    }
    try:
        with running_service(workdir, environment, service_credentials, workers=1) as service:
            yield service
    finally:
        indices = ",".join((results, checkpoints, summary))
        es_client.options(ignore_status=404).indices.delete(index=indices, ignore_unavailable=True)


def alerts_by_span(answers: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, str, list[str]]]]:
    """Alerts per span start (each alert's first event time falls in its span): id, parent, child, events."""
    found: dict[str, list[tuple[str, str, str, list[str]]]] = {}
    for answer in answers:
        spans = [span["from"] for span in answer["checkpoint"]["spans"]]
        for alert in answer["outliers"]:
            hour = alert["first_time"][:13] + ":00:00.000Z"
            assert hour in spans, (hour, spans)
            entry = (alert["_id"], alert["aggregator"], alert["term"], alert["event_ids"])
            found.setdefault(hour, []).append(entry)
    return found


def test_a_rarechild_catch_up_reports_each_planted_alert_once(rarechild_service, es_client, rarechild_index):
    """As for the terms model: the calls at 11:05, 12:05 and 13:05 never happen, the one at 14:05 analyses
    their hours one detection each (with each hour's 7-day baseline), every planted alert is reported and
    stored exactly once, and a repeat call adds nothing."""
    expected = {
        span: [(event_id, parent, child, [event_id])]
        for span, (event_id, parent, child, _, _) in RARECHILD_PLANTED.items()
    }
    first = ok(since_as(rarechild_service, rarechild_index, RARECHILD_USE_CASE, to="2024-03-06T10:05:00Z"))
    assert first["model"] == "rarechild"
    assert [span["from"] for span in first["checkpoint"]["spans"]] == ["2024-03-06T09:00:00.000Z"]
    # The background alone alerts nothing; the counts cover the span and its baseline.
    counted = [
        source
        for _, source in rarechild_events()
        if "2024-02-28T09:00" <= source["@timestamp"] < "2024-03-06T10:00"
    ]
    assert first["outliers"] == [] and first["events_analyzed"] == len(counted)
    catch_up = ok(since_as(rarechild_service, rarechild_index, RARECHILD_USE_CASE, to="2024-03-06T14:05:00Z"))
    checkpoint = catch_up["checkpoint"]
    assert checkpoint["previous"] == "2024-03-06T10:00:00.000Z"
    assert [span["from"] for span in checkpoint["spans"]] == [
        "2024-03-06T10:00:00.000Z",
        "2024-03-06T11:00:00.000Z",
        "2024-03-06T12:00:00.000Z",
        "2024-03-06T13:00:00.000Z",
    ]
    assert checkpoint["spans"][0]["baseline_from"] == "2024-02-28T10:00:00.000Z"
    assert checkpoint["analysed_to"] == "2024-03-06T14:00:00.000Z" and checkpoint["owed"] is None
    spans = checkpoint["spans"]
    assert [span["outliers_total"] for span in spans] == [
        len(expected.get(span["from"], [])) for span in spans
    ]
    assert alerts_by_span([first, catch_up]) == expected
    # No background pair reaches the threshold, even beyond the alert budget: only the planted ones.
    assert catch_up["pairs_above_threshold"] == len(RARECHILD_PLANTED)
    assert all(alert["score"] >= alert["threshold"] for alert in catch_up["outliers"])
    # The planted launches are new: each alert's novelty factor says so against its hour's baseline.
    for alert in catch_up["outliers"]:
        novelty = next(factor for factor in alert["factors"] if factor["factor"] == "novelty")
        assert novelty["says"] == "first seen in this range (baseline 7 d)"
    assert catch_up["annotation"]["written"] == len(RARECHILD_PLANTED)

    planted = sorted(
        (event_id, parent, child) for event_id, parent, child, _, _ in RARECHILD_PLANTED.values()
    )
    stored = [hit["_source"]["outliers"] for hit in results_of(es_client, rarechild_service, rarechild_index)]
    assert sorted((found["source_id"], found["aggregator"], found["term"]) for found in stored) == planted
    # Calling again for the same hour analyses nothing and writes nothing.
    again = ok(since_as(rarechild_service, rarechild_index, RARECHILD_USE_CASE, to="2024-03-06T14:30:00Z"))
    assert again["checkpoint"]["spans"] == [] and again["checkpoint"]["advanced"] is False
    assert again["outliers"] == [] and again["annotation"]["written"] == 0
    assert len(results_of(es_client, rarechild_service, rarechild_index)) == len(RARECHILD_PLANTED)
    # Each span was counted from the summary plus its own hour, which it stored for the next span.
    summary = rarechild_service.environment["CONNECTOR_SUMMARY_INDEX"]
    es_client.indices.refresh(index=summary)
    analysed = ["2024-03-06T09:00:00.000Z", *(span["from"] for span in spans)]
    stored_hours = es_client.search(
        index=summary,
        query={
            "bool": {
                "filter": [
                    {"term": {"use_case": RARECHILD_USE_CASE}},
                    {"term": {"hours": 1}},
                    {"terms": {"hour": analysed}},
                ]
            }
        },
        size=len(analysed) + 1,
        source=["hour"],
    )["hits"]["hits"]
    assert sorted(hit["_source"]["hour"] for hit in stored_hours) == analysed
