"""Faults injected into REAL processes: an Elasticsearch node stopped, crashed or frozen (SIGSTOP) under a
real gunicorn service, results indices that refuse some writes, and many concurrent overlapping calls.

The module runs its own node (never the session node other tests share), stops or pauses it, and always
resumes and restarts it in a ``finally``. Every wait has a deadline. What is pinned: the HTTP status,
error code, header and message a caller sees; that the service keeps answering; and that after the fault
the results index holds exactly one document per outlier, with the ids a single run produces.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest_service import (
    SERVICE_INDEX_PREFIX,
    HttpResult,
    RunningService,
    ServiceCredentials,
    running_service,
)
from elasticsearch import Elasticsearch, ElasticsearchWarning
from elasticsearch.exceptions import GeneralAvailabilityWarning
from es_data import SAMPLE, create_sample_index
from test_service_http import assert_error, assert_valid

from connector.config import load_use_case
from connector.engine import detect_file_result
from connector.model.outlier import Outlier
from connector.results import results_document_id, results_index_template
from connector.service.readiness import PROBE_TIMEOUT_SECONDS
from connector.settings import ES_CONNECTIONS_PER_NODE
from scripts import es_node

ROOT = Path(__file__).resolve().parents[2]
USE_CASES = ROOT / "examples/rare_child.ini"
SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
# Generous bounds on waits: a deadline for every poll, slack on top of a configured timeout.
POLL_DEADLINE_S = 30.0
TIMEOUT_SLACK_S = 15.0
HEALTHZ_TIMEOUT_S = 5.0
SHORT_MAX = 32767  # the largest value an Elasticsearch "short" field takes


# ------------------------------------------------------------------------------------------ the node


@dataclass
class FaultNode:
    """This module's own Elasticsearch node, which tests stop, crash, pause and restart in place."""

    node: es_node.RunningNode

    @property
    def url(self) -> str:
        return self.node.url

    def stop(self) -> None:
        """Graceful stop (SIGTERM), keeping the data for :meth:`restart`."""
        self.node.stop(keep_data=True)

    def crash(self) -> None:
        """SIGKILL every JVM of the node (a crash: no graceful shutdown), keeping the data."""
        for pid in self.node.live_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.node.stop(keep_data=True)  # waits until they are gone

    def restart(self) -> float:
        """Start the node again on the same port and data; the seconds it took until healthy."""
        began = time.monotonic()
        self.node = self.node.restart()
        return time.monotonic() - began

    def ensure_running(self) -> None:
        if not self.node.live_pids():
            self.restart()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the node (it keeps its sockets but answers nothing), SIGCONT it on the way out."""
        self.node.pause()
        try:
            yield
        finally:
            self.node.resume()


@pytest.fixture(scope="module")
def fault_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultNode]:
    try:
        node = es_node.start_node(tmp_path_factory.mktemp("fault-es-node"))
    except es_node.NodeError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"could not start the fault tests' Elasticsearch node:\n{problem}", pytrace=False)
    handle = FaultNode(node)
    try:
        yield handle
    finally:
        with suppress(es_node.NodeError):
            handle.node.resume()  # in case a test died between pause and resume
        handle.node.stop()


@pytest.fixture(scope="module")
def es(fault_node: FaultNode) -> Iterator[Elasticsearch]:
    client = Elasticsearch(fault_node.url, request_timeout=30)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def running_node(fault_node: FaultNode) -> Iterator[FaultNode]:
    """The node, up before the test and brought back after it whatever the test did to it."""
    fault_node.ensure_running()
    try:
        yield fault_node
    finally:
        fault_node.ensure_running()


@pytest.fixture(scope="module")
def events_index(es: Elasticsearch) -> str:
    """The bundled sample (5,280 events, 5 planted outliers) in an index the services may read."""
    name = f"{SERVICE_INDEX_PREFIX}faults-events"
    create_sample_index(es, name, shards=1)
    return name


@pytest.fixture(scope="module")
def planted(events_index: str) -> dict[str, Outlier]:
    """The outliers a single run over the whole sample finds, by their results document id.

    Computed offline (NDJSON path, same model), with each event's ``_index`` set to where this module
    loaded it: the ids the results index must hold after any fault, no more, no fewer.
    """
    use_case = load_use_case(USE_CASES)
    outliers = detect_file_result(config_path=USE_CASES, events_path=SAMPLE).outliers
    assert len(outliers) == 5
    moved = [replace(outlier, hit={**outlier.hit, "_index": events_index}) for outlier in outliers]
    return {results_document_id(use_case, outlier): outlier for outlier in moved}


@pytest.fixture
def results_index(es: Elasticsearch) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}faults-results-{uuid.uuid4().hex}"
    yield name
    with suppress(Exception):  # the node may be down if the test failed; the index dies with it
        es.options(ignore_status=404).indices.delete(index=name)


# ------------------------------------------------------------------------------------------ the service


@contextmanager
def fault_service(
    workdir: Path,
    node: FaultNode,
    results_index: str,
    credentials: ServiceCredentials,
    *,
    workers: int = 2,
    **settings: str,
) -> Iterator[RunningService]:
    """Real gunicorn against the module's node, writing to ``results_index``; ``settings`` adds variables."""
    environment = {
        "CONNECTOR_ES_URL": node.url,
        "CONNECTOR_USE_CASES": str(USE_CASES),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results_index,
        **settings,
    }
    with running_service(workdir, environment, credentials, workers=workers) as service:
        yield service


def detect(service: RunningService, body: dict[str, Any]) -> HttpResult:
    return service.call("POST", "/api/v1/detect", json_body=body, headers=service.bearer)


def healthz(service: RunningService) -> int:
    """/healthz's status, with a short client timeout: a service stuck behind Elasticsearch fails this."""
    with urllib.request.urlopen(service.url + "/healthz", timeout=HEALTHZ_TIMEOUT_S) as response:
        return response.status


def stored_results(es: Elasticsearch, index: str) -> list[dict[str, Any]]:
    """Every document of the results index (refreshed first), as ``{"_id", "_source"}``."""
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return [{"_id": hit["_id"], "_source": hit["_source"]} for hit in hits]


def assert_exactly_one_document_per_outlier(
    es: Elasticsearch, index: str, planted: dict[str, Outlier]
) -> None:
    """The results index holds the planted outliers' ids, each once, and no other document."""
    documents = stored_results(es, index)
    assert sorted(document["_id"] for document in documents) == sorted(planted)
    outliers = [document["_source"]["outliers"] for document in documents]
    keys = [(o["source_id"], o["aggregator"], o["term"]) for o in outliers]
    assert len(set(keys)) == len(keys) == len(planted)


def assert_complete_write(response: dict[str, Any]) -> None:
    """A consistent write outcome: every outlier in the range is written or already there, none failed."""
    annotation = response["annotation"]
    assert annotation["outcome"] == "complete", annotation
    assert annotation["failed"] == 0 and annotation["errors"] == []
    assert annotation["written"] + annotation["unchanged"] == response["outliers_total"]


def wait_until(condition: Callable[[], Any], what: str, deadline_s: float = POLL_DEADLINE_S) -> Any:
    """Poll ``condition`` until it returns something truthy, at most ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {deadline_s:.0f} s", pytrace=False)


# ------------------------------------------------------------------------------------------ 1. stopped


def test_stopped_elasticsearch_is_503_with_retry_after_and_the_same_call_succeeds_after_restart(
    running_node: FaultNode,
    es: Elasticsearch,
    events_index: str,
    planted: dict[str, Outlier],
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """Node stopped before the call: 503 elasticsearch_unavailable with Retry-After: 30, /readyz 503, /healthz
    200; after the restart the very same call writes the five outliers, one document each."""
    body = {"range": SAMPLE_RANGE, "index": events_index}
    with fault_service(tmp_path, running_node, results_index, service_credentials) as service:
        running_node.stop()
        refused = detect(service, body)
        error = assert_error(refused, 503, "elasticsearch_unavailable")
        assert refused.headers["Retry-After"] == "30"
        assert "retry" in error["message"].lower()
        assert service.call("GET", "/readyz", headers=service.bearer).status == 503
        assert healthz(service) == 200

        restart_s = running_node.restart()
        result = detect(service, body)
        assert result.status == 200, result.body
        response = result.json()
        assert_valid("detect-response", response)
        assert_complete_write(response)
        assert response["annotation"]["written"] == 5
    assert_exactly_one_document_per_outlier(es, results_index, planted)
    print(f"restart took {restart_s:.1f} s")


def _results_index_with_an_unassigned_shard(es: Elasticsearch, index: str) -> None:
    """The results index with two primaries of which only shard 0 can start: a bulk then stores what is
    routed to shard 0 and waits (Elasticsearch's 1 min bulk timeout) for shard 1."""
    es.indices.create(
        index=index,
        mappings=results_index_template(index)["template"]["mappings"],
        settings={
            "number_of_shards": 2,
            "number_of_replicas": 0,
            "index.routing.allocation.total_shards_per_node": 1,
        },
        wait_for_active_shards=0,  # shard 1 does not start
    )


def _bulk_waits_for_a_shard_of(es: Elasticsearch, index: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneralAvailabilityWarning)  # the tasks API is "technical preview"
        tasks = es.tasks.list(actions="indices:data/write/bulk[s]", detailed=True)["nodes"]
    descriptions = [task["description"] for node in tasks.values() for task in node["tasks"].values()]
    return any(f"index[{index}]" in description for description in descriptions)


def _keep_shard_unassigned_until_a_restart(es: Elasticsearch, index: str) -> None:
    """Swap the index's persistent allocation limit for a transient, cluster-wide "allocate nothing".

    Shard 1 stays unassigned (the bulk keeps waiting), but a full restart forgets transient settings: the
    restarted node allocates shard 1 and reaches green, as the test node's start requires.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ElasticsearchWarning)  # transient settings are deprecated
        es.cluster.put_settings(transient={"cluster.routing.allocation.enable": "none"})
    es.indices.put_settings(index=index, settings={"index.routing.allocation.total_shards_per_node": None})
    health = es.cluster.health(index=index)
    assert (health["active_primary_shards"], health["unassigned_shards"]) == (1, 1), health


def _clear_transient_allocation_setting(es: Elasticsearch) -> None:
    with warnings.catch_warnings(), suppress(Exception):  # gone anyway after the crash and restart
        warnings.simplefilter("ignore", ElasticsearchWarning)
        es.cluster.put_settings(transient={"cluster.routing.allocation.enable": None})


def test_crash_during_the_bulk_write_is_503_and_a_rerun_converges_on_the_half_written_index(
    running_node: FaultNode,
    es: Elasticsearch,
    events_index: str,
    planted: dict[str, Outlier],
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """The node is SIGKILLed while the results bulk is in flight, after part of it was stored.

    One shard of the results index cannot start, so the bulk stores the outliers routed to the other and
    waits: the test sees that wait in the tasks API, then kills the node. The caller gets 503 with
    Retry-After; after the restart the index holds some (not all) outliers, and the same call stores the
    rest, one document each.
    """
    _results_index_with_an_unassigned_shard(es, results_index)
    body = {"range": SAMPLE_RANGE, "index": events_index}
    try:
        with (
            fault_service(tmp_path, running_node, results_index, service_credentials) as service,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):
            in_flight = pool.submit(detect, service, body)
            wait_until(lambda: _bulk_waits_for_a_shard_of(es, results_index), "the bulk waiting for shard 1")
            _keep_shard_unassigned_until_a_restart(es, results_index)
            assert not in_flight.done()
            running_node.crash()
            refused = in_flight.result(timeout=POLL_DEADLINE_S)
            assert_error(refused, 503, "elasticsearch_unavailable")
            assert refused.headers["Retry-After"] == "30"
            assert "annotate aborted" in service.log_text()

            restart_s = running_node.restart()
            es.cluster.health(index=results_index, wait_for_status="green", timeout="30s")
            half_written = {document["_id"] for document in stored_results(es, results_index)}
            assert 0 < len(half_written) < len(planted), "the crash must leave a partial write behind"
            assert half_written <= set(planted)

            result = detect(service, body)
            assert result.status == 200, result.body
            response = result.json()
            assert_complete_write(response)
            annotation = response["annotation"]
            assert (annotation["written"], annotation["unchanged"]) == (
                len(planted) - len(half_written),
                len(half_written),
            )
    finally:
        _clear_transient_allocation_setting(es)
    assert_exactly_one_document_per_outlier(es, results_index, planted)
    print(f"crash left {len(half_written)} of {len(planted)} stored; restart took {restart_s:.1f} s")


# ------------------------------------------------------------------------------------------ 2. hung


def _detect_while_paused(
    node: FaultNode, service: RunningService, body: dict[str, Any], *, limit_s: float
) -> tuple[HttpResult, list[int]]:
    """One detection against the frozen node, and the statuses of /healthz polled while it is in flight, then
    of /readyz.

    The service must answer within ``limit_s`` plus :data:`TIMEOUT_SLACK_S`: a bounded wait (a service that
    ignores its limit fails it), not a measurement. Which limit ended the call is pinned through the answer,
    whose message names the setting and its value.
    """
    with node.paused(), ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(detect, service, body)
        health = []
        while not in_flight.done() and len(health) < 3:
            health.append(healthz(service))
            time.sleep(0.3)
        try:
            result = in_flight.result(timeout=limit_s + TIMEOUT_SLACK_S)
        except TimeoutError:
            pytest.fail(
                f"no answer within {limit_s:g} s (the service's limit) + {TIMEOUT_SLACK_S:g} s of slack",
                pytrace=False,
            )
        health.append(service.call("GET", "/readyz", headers=service.bearer).status)
    return result, health


def test_hung_elasticsearch_is_504_within_the_request_timeout_and_the_service_recovers(
    running_node: FaultNode,
    events_index: str,
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """Node frozen (SIGSTOP): 504 elasticsearch_timeout naming CONNECTOR_ES_TIMEOUT_SECONDS and its value, in
    a bounded wait; /healthz answers meanwhile, /readyz says not ready; after SIGCONT every worker detects
    again."""
    timeout_s = 2.0
    body = {"range": SAMPLE_RANGE, "index": events_index}
    workers = 2
    with fault_service(
        tmp_path,
        running_node,
        results_index,
        service_credentials,
        workers=workers,
        CONNECTOR_ES_TIMEOUT_SECONDS=f"{timeout_s:g}",
    ) as service:
        result, health = _detect_while_paused(running_node, service, body, limit_s=timeout_s)

        error = assert_error(result, 504, "elasticsearch_timeout")
        assert error["message"].startswith(
            "Elasticsearch did not answer within CONNECTOR_ES_TIMEOUT_SECONDS=2 s while running a "
        ), error["message"]
        assert health[:-1] and all(status == 200 for status in health[:-1]), health
        assert health[-1] == 503  # /readyz while frozen: Elasticsearch unreachable

        with ThreadPoolExecutor(max_workers=2 * workers) as pool:
            after = list(pool.map(lambda _: detect(service, body), range(2 * workers)))
        assert [answer.status for answer in after] == [200] * (2 * workers), [a.body for a in after]
        for answer in after:
            assert_complete_write(answer.json())
        assert healthz(service) == 200
        assert "WORKER TIMEOUT" not in service.log_text()


def test_detection_deadline_bounds_a_call_to_a_hung_node_and_names_its_setting(
    running_node: FaultNode,
    events_index: str,
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """Per-request timeout long, CONNECTOR_DETECT_TIMEOUT_SECONDS short: the deadline ends the call (in a
    bounded wait far below the per-request timeout), 504 naming the deadline's setting and value."""
    deadline_s = 3.0
    body = {"range": SAMPLE_RANGE, "index": events_index}
    with fault_service(
        tmp_path,
        running_node,
        results_index,
        service_credentials,
        CONNECTOR_ES_TIMEOUT_SECONDS="60",
        CONNECTOR_DETECT_TIMEOUT_SECONDS=f"{deadline_s:g}",
    ) as service:
        result, health = _detect_while_paused(running_node, service, body, limit_s=deadline_s)

        error = assert_error(result, 504, "elasticsearch_timeout")
        assert error["message"].startswith(
            "the detection did not finish within CONNECTOR_DETECT_TIMEOUT_SECONDS=3 s (stopped while "
        ), error["message"]
        assert "CONNECTOR_ES_TIMEOUT_SECONDS" not in error["message"]
        assert health[:-1] and all(status == 200 for status in health[:-1]), health
        assert "elasticsearch_timeout" in service.log_text()

        recovered = detect(service, body)
        assert recovered.status == 200, recovered.body
        assert_complete_write(recovered.json())


# ------------------------------------------------------------------------------------------ 3. partial


def _assert_failures_reported(
    result: HttpResult, service: RunningService, failing: set[str], *, status: int, error_type: str
) -> dict[str, Any]:
    """207, and each failed document listed in the response (id, status, type) and named in the log."""
    assert result.status == 207, result.body
    response = result.json()
    assert_valid("detect-response", response)
    annotation = response["annotation"]
    assert annotation["failed"] == len(failing)
    assert (
        sum(annotation[count] for count in ("written", "unchanged", "failed")) == response["outliers_total"]
    )
    assert {error["_id"] for error in annotation["errors"]} == failing
    assert {(error["status"], error["type"]) for error in annotation["errors"]} == {(status, error_type)}
    log_text = service.log_text()
    for document_id in failing:
        assert document_id in log_text, f"failed write of {document_id} is not in the service log"
    assert error_type in log_text
    return annotation


@pytest.mark.parametrize(
    ("mappings_of", "fails", "error_type", "outcome"),
    [
        (
            lambda template: {**template, "dynamic": "strict"},
            lambda outlier: True,
            "strict_dynamic_mapping_exception",
            "failed",
        ),
        (
            lambda template: {
                **template,
                "properties": {
                    **template["properties"],
                    "OsqueryFilter": {"properties": {"pid": {"type": "short"}}},
                },
            },
            lambda outlier: outlier.hit["_source"]["OsqueryFilter"]["pid"] > SHORT_MAX,
            "document_parsing_exception",
            "partial",
        ),
    ],
    ids=["dynamic-strict", "pid-mapped-short"],
)
def test_results_index_with_a_conflicting_mapping_reports_every_refused_document(
    running_node: FaultNode,
    es: Elasticsearch,
    events_index: str,
    planted: dict[str, Outlier],
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
    mappings_of: Callable[[dict[str, Any]], dict[str, Any]],
    fails: Callable[[Outlier], bool],
    error_type: str,
    outcome: str,
) -> None:
    """A results index pre-created with a mapping that refuses some (or all) documents: 207, outcome
    partial/failed, each refused id with Elasticsearch's 400 reason in the response and in the log; the
    accepted ones are stored."""
    template = results_index_template(results_index)["template"]["mappings"]
    es.indices.create(index=results_index, mappings=mappings_of(template), settings={"number_of_replicas": 0})
    failing = {document_id for document_id, outlier in planted.items() if fails(outlier)}
    assert failing, "the mapping must refuse at least one planted outlier"
    with fault_service(tmp_path, running_node, results_index, service_credentials) as service:
        result = detect(service, {"range": SAMPLE_RANGE, "index": events_index})
        annotation = _assert_failures_reported(result, service, failing, status=400, error_type=error_type)
    assert annotation["outcome"] == outcome
    assert annotation["written"] == len(planted) - len(failing)
    assert {document["_id"] for document in stored_results(es, results_index)} == set(planted) - failing


@pytest.mark.parametrize(
    ("block", "block_reason"),
    [
        ("index.blocks.write", "FORBIDDEN/8/index write"),
        ("index.blocks.read_only", "FORBIDDEN/5/index read-only"),
    ],
    ids=["write-block", "read-only"],
)
def test_blocked_results_index_reports_every_refused_document_and_a_rerun_converges(
    running_node: FaultNode,
    es: Elasticsearch,
    events_index: str,
    planted: dict[str, Outlier],
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
    block: str,
    block_reason: str,
) -> None:
    """Two outliers already stored, then the index blocked: 207 partial, two unchanged, three refused (403,
    listed and logged); once the block is lifted the same call stores the three, one document each."""
    body = {"range": SAMPLE_RANGE, "index": events_index}
    with fault_service(tmp_path, running_node, results_index, service_credentials) as service:
        first = detect(service, body)
        assert first.status == 200, first.body
        missing = set(sorted(planted)[:3])
        for document_id in missing:
            es.delete(index=results_index, id=document_id, refresh=True)
        es.indices.put_settings(index=results_index, settings={block: True})
        try:
            blocked = detect(service, body)
            annotation = _assert_failures_reported(
                blocked, service, missing, status=403, error_type="cluster_block_exception"
            )
            assert all(block_reason in error["reason"] for error in annotation["errors"])
            assert (annotation["outcome"], annotation["unchanged"], annotation["written"]) == (
                "partial",
                2,
                0,
            )
        finally:
            es.indices.put_settings(index=results_index, settings={block: None})
        rerun = detect(service, body)
        assert rerun.status == 200, rerun.body
        assert_complete_write(rerun.json())
        assert (rerun.json()["annotation"]["written"], rerun.json()["annotation"]["unchanged"]) == (3, 2)
    assert_exactly_one_document_per_outlier(es, results_index, planted)


# ------------------------------------------------------------------------------------------ 4. concurrent

# Overlapping requests over the same events. With a baseline, the counts always cover the whole sample,
# so every request finds the outliers of the single full run that fall in its range.
WHOLE_SAMPLE = {"from": SAMPLE_RANGE["from"]}
OVERLAPPING_REQUESTS = [
    {"range": SAMPLE_RANGE},
    {"range": {"from": "2024-03-04T12:00:00Z", "to": SAMPLE_RANGE["to"]}, "baseline": WHOLE_SAMPLE},
    {"range": {"from": "2024-03-05T00:00:00Z", "to": SAMPLE_RANGE["to"]}, "baseline": WHOLE_SAMPLE},
    {"range": {"from": "2024-03-06T00:00:00Z", "to": SAMPLE_RANGE["to"]}, "baseline": WHOLE_SAMPLE},
]
THREADS = 8
CALLS_PER_THREAD = 3
CONCURRENT_WORKERS = 3


def test_concurrent_overlapping_detections_leave_exactly_one_document_per_outlier(
    running_node: FaultNode,
    es: Elasticsearch,
    events_index: str,
    planted: dict[str, Outlier],
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """8 threads x 3 calls over 4 overlapping ranges, 3 gunicorn workers, one empty results index: every
    answer is 200 with a complete, consistent write; afterwards exactly the single run's ids, once each."""
    calls = [
        {**OVERLAPPING_REQUESTS[(thread + call) % len(OVERLAPPING_REQUESTS)], "index": events_index}
        for thread in range(THREADS)
        for call in range(CALLS_PER_THREAD)
    ]
    with (
        fault_service(
            tmp_path, running_node, results_index, service_credentials, workers=CONCURRENT_WORKERS
        ) as service,
        ThreadPoolExecutor(max_workers=THREADS) as pool,
    ):
        results = list(pool.map(lambda body: detect(service, body), calls))
    assert [result.status for result in results] == [200] * len(calls), [r.body[:300] for r in results]
    written = 0
    for body, result in zip(calls, results, strict=True):
        response = result.json()
        assert_complete_write(response)
        in_range = {
            document_id
            for document_id, outlier in planted.items()
            if body["range"]["from"] <= outlier.hit["_source"]["@timestamp"] < body["range"]["to"]
        }
        assert response["outliers_total"] == len(in_range)
        written += response["annotation"]["written"]
    assert written >= len(planted)  # each outlier was written by some call
    assert_exactly_one_document_per_outlier(es, results_index, planted)
    print(f"{len(calls)} calls from {THREADS} threads on {CONCURRENT_WORKERS} workers: {written} writes")


# ------------------------------------------------------------------------------------------ 6. probes

PROBE_WAIT_S = 1.0  # what the issue asks of /healthz, as a client timeout
# /readyz itself waits up to PROBE_TIMEOUT_SECONDS on Elasticsearch: it gets that, plus the same second.
READINESS_WAIT_S = PROBE_TIMEOUT_SECONDS + PROBE_WAIT_S
SLOW_CONNECTIONS = 50
TRICKLE_EVERY_S = 0.5
DETECT_WAIT_S = 60.0


def probe(
    service: RunningService, path: str, headers: dict[str, str] | None = None, *, wait_s: float = PROBE_WAIT_S
) -> int:
    """The status of ``path`` with a client timeout of ``wait_s``: no answer within it fails the test."""
    request = urllib.request.Request(service.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=wait_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


class SlowClients:
    """``count`` loopback connections that never finish a request, kept at ``count`` all along: half idle,
    half sending a header one byte each ``TRICKLE_EVERY_S``, as a slow client or an attacker without
    credentials does. One the service closes is opened again (counted in ``reopened``)."""

    def __init__(self, service: RunningService, count: int) -> None:
        host, port = service.url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"x" * 4000
        self.sockets = [self._open() for _ in range(count)]
        self.sent = [0] * count
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=5)

    def _trickle(self) -> None:
        while not self.stop.wait(TRICKLE_EVERY_S):
            readable, _, _ = select.select(self.sockets, [], [], 0)
            for position, sock in enumerate(self.sockets):
                if sock in readable:  # closed by the service (or answered): open another one
                    sock.close()
                    self.sockets[position], self.sent[position] = self._open(), 0
                    self.reopened += 1
                elif position % 2 == 0 and self.sent[position] < len(self.head):
                    with suppress(OSError):
                        sock.send(self.head[self.sent[position] : self.sent[position] + 1])
                    self.sent[position] += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


IN_FLIGHT_BATCH = 4  # detections sent at a time while the node is frozen; a worker takes any number of them
MAX_IN_FLIGHT = 40  # bound: gevent workers race for each connection, so batches go on until both have one


def _detecting_workers(service: RunningService) -> list[int]:
    """The worker pid of every detection started after the warm-up call, in log order."""
    starts = [
        line["process"]["pid"]
        for line in service.log_lines()
        if line.get("message", "").startswith("detect terms_rare_childname over")
    ]
    return starts[1:]


def test_probes_answer_within_a_second_with_the_node_frozen_every_worker_busy_and_50_slow_clients(
    running_node: FaultNode,
    events_index: str,
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """Default workers; the node frozen while detections wait on it in every worker, and 50
    connections idle or trickling a header: /healthz is 200 within a second and /readyz 503 within its
    own Elasticsearch timeout and a second, every time; once the node is back, a normal client's
    detection is answered while the slow ones stay open."""
    body = {"range": SAMPLE_RANGE, "index": events_index, "dry_run": True}
    with fault_service(
        tmp_path, running_node, results_index, service_credentials, CONNECTOR_ES_TIMEOUT_SECONDS="20"
    ) as service:
        assert detect(service, body).status == 200  # warm: field caps and connections made
        slow = SlowClients(service, SLOW_CONNECTIONS)
        try:
            with running_node.paused(), ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
                in_flight: list[Any] = []
                # Which worker accepts a connection is a race: send batches until both default workers
                # have detections waiting on the frozen node (bounded by MAX_IN_FLIGHT).
                while len(in_flight) < MAX_IN_FLIGHT and len(set(_detecting_workers(service))) < 2:
                    in_flight += [pool.submit(detect, service, body) for _ in range(IN_FLIGHT_BATCH)]
                    sent = len(in_flight)
                    wait_until(
                        lambda sent=sent: len(_detecting_workers(service)) >= sent, "the detections starting"
                    )
                busy = len(set(_detecting_workers(service)))
                assert busy >= 2, busy  # both default workers have detections waiting on the node
                assert not any(call.done() for call in in_flight)
                statuses = [
                    (
                        probe(service, "/healthz"),
                        probe(service, "/readyz", service.bearer, wait_s=READINESS_WAIT_S),
                    )
                    for _ in range(5)
                ]
                assert statuses == [(200, 503)] * 5
                running_node.node.resume()
                results = [call.result(timeout=DETECT_WAIT_S) for call in in_flight]
            # Answered (200), or the documented 504 if a request had already timed out on the frozen node.
            assert all(result.status in (200, 504) for result in results), [r.body[:200] for r in results]
            after = detect(service, body)
            assert after.status == 200, after.body
            assert probe(service, "/readyz", service.bearer, wait_s=READINESS_WAIT_S) == 200
            assert slow.thread.is_alive()  # the slow connections were kept open throughout
        finally:
            slow.close()
    print(f"{busy} workers busy; slow connections closed by the service and reopened: {slow.reopened}")


def test_readyz_answers_while_every_pooled_connection_waits_on_the_frozen_node(
    running_node: FaultNode,
    events_index: str,
    results_index: str,
    service_credentials: ServiceCredentials,
    tmp_path: Path,
) -> None:
    """One worker with more detections waiting on the frozen node than its client keeps connections
    (ES_CONNECTIONS_PER_NODE): /readyz still asks Elasticsearch, over a connection of its own, and answers
    503 within its timeout and a second instead of queueing behind the detections for a free connection."""
    body = {"range": SAMPLE_RANGE, "index": events_index, "dry_run": True}
    waiting = ES_CONNECTIONS_PER_NODE + 2
    with fault_service(
        tmp_path,
        running_node,
        results_index,
        service_credentials,
        workers=1,
        CONNECTOR_ES_TIMEOUT_SECONDS="20",
    ) as service:
        assert detect(service, body).status == 200  # warm: field caps and connections made
        with running_node.paused(), ThreadPoolExecutor(max_workers=waiting) as pool:
            in_flight = [pool.submit(detect, service, body) for _ in range(waiting)]
            wait_until(lambda: len(_detecting_workers(service)) >= waiting, "the detections starting")
            assert not any(call.done() for call in in_flight)
            statuses = [probe(service, "/readyz", service.bearer, wait_s=READINESS_WAIT_S) for _ in range(3)]
            assert statuses == [503] * 3
            running_node.node.resume()
            results = [call.result(timeout=DETECT_WAIT_S) for call in in_flight]
        assert all(result.status in (200, 504) for result in results), [r.body[:200] for r in results]
        assert probe(service, "/readyz", service.bearer, wait_s=READINESS_WAIT_S) == 200
