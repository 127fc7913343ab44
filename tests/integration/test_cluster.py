"""The connector on a real three-node cluster (``scripts/es_node.py`` multi-node mode), as users run it.

One cluster for the module: three nodes on loopback, 512 MB heap each, every node master-eligible and
holding data. The tests run in file order and move the cluster through its states: all nodes up (parity
with the offline path, paging forced), a data node stopped and back, a node killed during a results
write and back, then the first configured node stopped for good (failover, and a red index refused).

The connector's client is configured exactly as in production: every node's URL in one
``CONNECTOR_ES_URL`` (:class:`~connector.settings.ElasticsearchConnection`), and the real gunicorn
service for the HTTP answers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, ServiceCredentials, running_service
from elasticsearch import ApiError, Elasticsearch, helpers
from es_data import SAMPLE, SAMPLE_MAPPINGS, index_ndjson, without_detection_time
from test_parity import COMMON, PARITY, PARITY_USE_CASES, WHITELIST, _assert_same

from connector.config import load_use_cases
from connector.engine import detect_file, run
from connector.errors import IndexUnavailableError
from connector.results import BULK_CHUNK_SIZE, AnnotateMode, WriteReport, write_result_documents
from connector.settings import ElasticsearchConnection
from connector.sources.elasticsearch import ElasticsearchSource
from scripts import es_node

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples/rare_child.ini"
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
NODES = 3
SHARDS, REPLICAS = 6, 1
SAMPLE_INDEX = f"{SERVICE_INDEX_PREFIX}cluster-sample"
PARITY_INDEX = f"{SERVICE_INDEX_PREFIX}cluster-shapes"
#: A pattern over two indices: one replicated (healthy), one whose shards live on node 0 only (red later).
RED_PATTERN = f"{SERVICE_INDEX_PREFIX}cluster-red-*"
RED_HEALTHY = f"{SERVICE_INDEX_PREFIX}cluster-red-ok"
RED_INDEX = f"{SERVICE_INDEX_PREFIX}cluster-red-lost"
#: The composite page size the cluster's service is configured with (CONNECTOR_ES_COMPOSITE_PAGE_SIZE).
SERVICE_PAGE_SIZE = 7
#: Documents of the interrupted results write: many bulk chunks, each waiting for a refresh.
WRITE_DOCUMENTS = 12 * BULK_CHUNK_SIZE
WAIT_S = 180.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[es_node.RunningCluster]:
    try:
        started = es_node.start_cluster(tmp_path_factory.mktemp("es-cluster"), nodes=NODES)
    except es_node.NodeError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"could not start the {NODES}-node test cluster:\n{problem}", pytrace=False)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def admin(cluster: es_node.RunningCluster) -> Iterator[Elasticsearch]:
    """The harness's own client (set-up and checks), over every node."""
    client = Elasticsearch(cluster.urls, request_timeout=60, max_retries=5, retry_on_timeout=True)
    try:
        yield client
    finally:
        client.close()


def _connector_client(urls: list[str]) -> Elasticsearch:
    """The connector's client as its settings build it (node failover, shard-aware nodes)."""
    return ElasticsearchConnection(urls=tuple(urls)).client()


def _wait_green(admin: Elasticsearch) -> None:
    health = admin.cluster.health(wait_for_status="green", wait_for_nodes=str(NODES), timeout="120s")
    assert health["status"] == "green" and not health["timed_out"], health


@pytest.fixture(scope="module")
def indices(admin: Elasticsearch) -> Iterator[None]:
    """The sample and the parity shapes, each over 6 primaries with one replica, spread over the nodes."""
    settings = {"number_of_shards": SHARDS, "number_of_replicas": REPLICAS}
    admin.indices.create(index=SAMPLE_INDEX, settings=settings, mappings=SAMPLE_MAPPINGS)
    index_ndjson(admin, SAMPLE_INDEX, SAMPLE)
    admin.indices.create(index=PARITY_INDEX, settings=settings)
    index_ndjson(admin, PARITY_INDEX, PARITY)
    _wait_green(admin)
    for index in (SAMPLE_INDEX, PARITY_INDEX):
        nodes = {row["node"] for row in admin.cat.shards(index=index, format="json")}
        assert len(nodes) == NODES, f"{index} is not spread over every node: {nodes}"
    yield
    admin.options(ignore_status=404).indices.delete(index=f"{SAMPLE_INDEX},{PARITY_INDEX}")


@pytest.fixture(scope="module")
def service(
    cluster: es_node.RunningCluster,
    indices: None,
    tmp_path_factory: pytest.TempPathFactory,
    service_credentials: ServiceCredentials,
) -> Iterator[RunningService]:
    """Real gunicorn with all three nodes in CONNECTOR_ES_URL and composite pages of 7 buckets."""
    workdir = tmp_path_factory.mktemp("cluster-service")
    (workdir / "rare_child.ini").write_text(SEED.read_text())
    environment = {
        "CONNECTOR_ES_URL": ",".join(cluster.urls),
        "CONNECTOR_USE_CASES": str(workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": f"{SERVICE_INDEX_PREFIX}cluster-results",
        "CONNECTOR_ES_COMPOSITE_PAGE_SIZE": str(SERVICE_PAGE_SIZE),
    }
    with running_service(workdir, environment, service_credentials) as running:
        yield running


def _detect(service: RunningService, index: str) -> tuple[int, dict[str, Any], float]:
    """One detection over HTTP (nothing written); status, body and how long it took (for the report)."""
    began = time.monotonic()
    result = service.call(
        "POST",
        "/api/v1/detect",
        json_body={"range": SAMPLE_RANGE, "index": index, "annotate": "none"},
        headers=service.bearer,
    )
    return result.status, result.json(), time.monotonic() - began


def _answer(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a detection found, in a comparable form: each outlier's event, pair, counts and frontier."""
    return [
        (o["_id"], o["aggregator"], o["term"], o["term_count"], round(o["decision_frontier"], 9))
        for o in body["outliers"]
    ]


@pytest.fixture(scope="module")
def healthy_answer(service: RunningService) -> list[tuple[Any, ...]]:
    """The service's answer over the sample with every node up (5 planted outliers)."""
    status, body, _ = _detect(service, SAMPLE_INDEX)
    assert status == 200, body
    assert len(body["outliers"]) == 5 and body["events_analyzed"] == 5280
    return _answer(body)


def _holds_primaries(admin: Elasticsearch, index: str, node: str) -> bool:
    rows = admin.cat.shards(index=index, format="json")
    return any(row["prirep"] == "p" and row["node"] == node for row in rows)


def _node_name(cluster: es_node.RunningCluster, number: int) -> str:
    return str(cluster.nodes[number].cluster["node.name"])  # type: ignore[index]


def _bring_back(cluster: es_node.RunningCluster, number: int, admin: Elasticsearch) -> None:
    cluster.nodes[number] = cluster.nodes[number].restart()
    _wait_green(admin)


# ------------------------------------------------------------------------------------------ all nodes up


@pytest.mark.parametrize("page_size", [SERVICE_PAGE_SIZE, 1], ids=["pages-of-7", "pages-of-1"])
def test_seed_use_case_is_identical_to_the_offline_run_with_paging_forced(
    cluster: es_node.RunningCluster, indices: None, page_size: int
) -> None:
    """The sample over 6 primaries + replicas, composite pages of 7 and 1 buckets: the same outliers,
    counts and frontiers as the NDJSON path; many pages were really requested."""
    offline = detect_file(config_path=SEED, events_path=SAMPLE)
    client = _connector_client(cluster.urls)
    try:
        source = ElasticsearchSource(
            client, index=SAMPLE_INDEX, start=EVERYTHING[0], end=EVERYTHING[1], composite_page_size=page_size
        )
        elastic = run(source, load_use_cases(SEED).select()).to_contract()
    finally:
        client.close()
    _assert_same(offline, elastic)
    # One page would be field_caps + 1 composite page + 1 fetch (test_parity); paging adds a page per 7.
    assert source.requests > 3 + 10


@pytest.mark.parametrize("section", sorted(PARITY_USE_CASES), ids=sorted(PARITY_USE_CASES))
def test_use_case_shapes_are_identical_to_the_offline_run_with_paging_forced(
    cluster: es_node.RunningCluster, indices: None, tmp_path: Path, section: str
) -> None:
    """Multi-field and list-valued fields, across, CV, numeric terms: same answer on the cluster in pages
    of 7 buckets as offline."""
    config = tmp_path / "parity.ini"
    config.write_text(f"[{section}]\n{COMMON}{PARITY_USE_CASES[section]}\n{WHITELIST}")
    offline = detect_file(config_path=config, events_path=PARITY)
    client = _connector_client(cluster.urls)
    try:
        source = ElasticsearchSource(
            client, index=PARITY_INDEX, start=EVERYTHING[0], end=EVERYTHING[1], composite_page_size=7
        )
        elastic = run(source, load_use_cases(config).select(section)).to_contract()
    finally:
        client.close()
    _assert_same(offline, elastic)


# ------------------------------------------------------------------------------- a data node stopped


def test_the_same_answer_while_a_data_node_holding_primaries_is_stopped(
    cluster: es_node.RunningCluster,
    admin: Elasticsearch,
    service: RunningService,
    healthy_answer: list[tuple[Any, ...]],
) -> None:
    """Node 2 (holding primaries of the sample) stopped: the service answers 200 with the very same
    outliers; then it comes back and the cluster is green again."""
    assert _holds_primaries(admin, SAMPLE_INDEX, _node_name(cluster, 2))
    cluster.nodes[2].stop(keep_data=True)
    try:
        status, body, _ = _detect(service, SAMPLE_INDEX)
        assert status == 200, body
        assert _answer(body) == healthy_answer
        assert body["events_analyzed"] == 5280
    finally:
        _bring_back(cluster, 2, admin)


# ----------------------------------------------------------------------- a node lost during a write


def _results_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"cluster-write-{number:05d}",
            {
                "@timestamp": f"2024-03-05T{number % 24:02d}:00:00Z",
                "tags": ["outlier"],
                "outliers": {"use_case": "cluster_write", "aggregator": "p.exe", "term": f"c{number}.exe"},
            },
        )
        for number in range(WRITE_DOCUMENTS)
    ]


def _stored(admin: Elasticsearch, index: str) -> int:
    """Documents searchable in ``index``; 0 while it does not exist or its shards are still starting."""
    try:
        return int(admin.count(index=index)["count"])
    except ApiError as error:
        if error.status_code in (404, 503):
            return 0
        raise


def test_a_node_lost_during_a_results_write_loses_and_doubles_nothing(
    cluster: es_node.RunningCluster, admin: Elasticsearch
) -> None:
    """The results index exists, replicated (as after the first detections). During a write of 12 bulk
    chunks, once a new chunk is in and before the last, the node holding the index's primary is killed
    (SIGKILL): the write still reports every document written or unchanged, none failed, and the index
    holds exactly one document per id, each as sent."""
    results = f"{SERVICE_INDEX_PREFIX}cluster-results-{uuid.uuid4().hex}"
    documents = _results_documents()
    client = _connector_client(cluster.urls)
    mode = AnnotateMode.RESULTS_INDEX
    head = documents[:BULK_CHUNK_SIZE]
    first = write_result_documents(client, head, mode=mode, results_index=results, refresh=True)
    assert (first.written, first.failed) == (BULK_CHUNK_SIZE, 0), first
    health = admin.cluster.health(index=results, wait_for_status="green", timeout="60s")
    assert health["status"] == "green", health
    outcome: dict[str, WriteReport | BaseException] = {}

    def write() -> None:
        try:
            outcome["report"] = write_result_documents(
                client, documents, mode=mode, results_index=results, refresh="wait_for"
            )
        except BaseException as exc:  # reported by the test's thread
            outcome["error"] = exc

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            stored = _stored(admin, results)
            if stored >= 2 * BULK_CHUNK_SIZE:
                break
            assert writer.is_alive(), f"the write ended before a node was lost: {outcome}"
            assert time.monotonic() < deadline, "no new bulk chunk arrived"
            time.sleep(0.1)
        shards = admin.cat.shards(index=results, format="json")
        primary = next(row["node"] for row in shards if row["prirep"] == "p")
        victim = next(i for i in range(NODES) if _node_name(cluster, i) == primary)
        cluster.nodes[victim].kill()
        assert stored < WRITE_DOCUMENTS and writer.is_alive(), "the node was lost after the write, not during"
        writer.join(WAIT_S)
        assert not writer.is_alive(), f"the write did not finish within {WAIT_S:.0f} s"
        assert "error" not in outcome, f"the write failed: {outcome.get('error')!r}"
        report = outcome["report"]
        assert isinstance(report, WriteReport)
        assert (report.written + report.unchanged, report.failed) == (WRITE_DOCUMENTS, 0), report
        admin.indices.refresh(index=results)
        assert admin.count(index=results)["count"] == WRITE_DOCUMENTS
        stored_docs = {
            hit["_id"]: without_detection_time(hit["_source"])[0]
            for hit in helpers.scan(admin, index=results, size=2000)
        }
        assert stored_docs == dict(documents)
    finally:
        writer.join(WAIT_S)  # never close the client under a running write
        client.close()
        for number, node in enumerate(cluster.nodes):
            if not node.live_pids():
                _bring_back(cluster, number, admin)
        admin.options(ignore_status=404).indices.delete(index=results)


# --------------------------------------------------------------- the first configured node stopped


@pytest.fixture(scope="module")
def red_index(cluster: es_node.RunningCluster, admin: Elasticsearch) -> str:
    """An index whose two shards (no replica) may live on node 0 only: red once node 0 is gone; and a
    healthy, replicated index beside it under :data:`RED_PATTERN`."""
    admin.indices.create(
        index=RED_HEALTHY, settings={"number_of_shards": 2, "number_of_replicas": 1}, mappings=SAMPLE_MAPPINGS
    )
    index_ndjson(admin, RED_HEALTHY, SAMPLE)
    admin.indices.create(
        index=RED_INDEX,
        settings={
            "number_of_shards": 2,
            "number_of_replicas": 0,
            "index.routing.allocation.require._name": _node_name(cluster, 0),
        },
        mappings=SAMPLE_MAPPINGS,
    )
    index_ndjson(admin, RED_INDEX, SAMPLE)
    _wait_green(admin)
    return RED_INDEX


@pytest.fixture(scope="module")
def first_node_stopped(
    cluster: es_node.RunningCluster,
    admin: Elasticsearch,
    healthy_answer: list[tuple[Any, ...]],
    red_index: str,
) -> Iterator[None]:
    """Node 0, the first URL in CONNECTOR_ES_URL, stopped for the rest of the module; the cluster is
    yellow (the sample's replicas took over) and the red index is red."""
    cluster.nodes[0].stop(keep_data=True)
    deadline = time.monotonic() + WAIT_S  # wait_for_status=red would be met by green: poll instead
    while (health := admin.cluster.health(index=red_index))["status"] != "red":
        assert time.monotonic() < deadline, f"{red_index} did not turn red: {health}"
        time.sleep(0.2)
    admin.cluster.health(index=SAMPLE_INDEX, wait_for_status="yellow", timeout="60s")
    yield


def test_failover_when_the_first_configured_node_is_stopped(
    service: RunningService, healthy_answer: list[tuple[Any, ...]], first_node_stopped: None
) -> None:
    """Three hosts configured, the first one stopped: every detection answers 200 with the outliers of
    the healthy cluster (each gunicorn worker's client finds the first node dead once, then skips it)."""
    took = []
    for _ in range(4):  # both workers, each more than once
        status, body, seconds = _detect(service, SAMPLE_INDEX)
        assert status == 200, body
        assert _answer(body) == healthy_answer
        took.append(seconds)
    print(f"failover detections took {', '.join(f'{s:.2f}' for s in took)} s")  # figures for the report


def test_a_red_index_is_refused_naming_its_missing_shards(
    service: RunningService, first_node_stopped: None
) -> None:
    """Over HTTP: 503 index_unavailable (not elasticsearch_unavailable) with the missing shards in
    details and the message, and what to do; Retry-After 60, as every 503 of the API carries one. Over
    a pattern whose other index is healthy the shards are named one by one; over the red index alone,
    Elasticsearch only says that it has no active shard at all."""
    result = service.call(
        "POST",
        "/api/v1/detect",
        json_body={"range": SAMPLE_RANGE, "index": RED_PATTERN, "annotate": "none"},
        headers=service.bearer,
    )
    assert result.status == 503, result.body
    error = result.json()["error"]
    assert error["code"] == "index_unavailable", error
    assert error["details"] == [{"index": RED_INDEX, "shard": 0}, {"index": RED_INDEX, "shard": 1}]
    assert f"[{RED_INDEX}][0], [{RED_INDEX}][1]" in error["message"]
    assert "Bring back the node(s)" in error["message"]
    assert result.headers.get("Retry-After") == "60"
    status, body, _ = _detect(service, RED_INDEX)
    assert status == 503 and body["error"]["code"] == "index_unavailable", body
    assert body["error"]["details"] == [{"index": RED_INDEX}]


def test_a_red_index_costs_one_request_retries_nothing_and_marks_no_node_dead(
    cluster: es_node.RunningCluster, first_node_stopped: None, caplog: pytest.LogCaptureFixture
) -> None:
    """In process, over the two live nodes: the refusal comes from a single request that no node
    retried, and afterwards every node of the client's pool is still alive."""
    client = _connector_client(cluster.urls[1:])
    try:
        source = ElasticsearchSource(client, index=RED_PATTERN, start=EVERYTHING[0], end=EVERYTHING[1])
        with (
            caplog.at_level(logging.INFO, logger="elastic_transport"),
            caplog.at_level(logging.WARNING, logger="connector.sources.shards"),
            pytest.raises(IndexUnavailableError) as raised,
        ):
            run(source, load_use_cases(SEED).select())
        assert source.requests == 2  # field capabilities (answered), then the first count: refused
        refusals = [r for r in caplog.records if r.name == "connector.sources.shards"]
        assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
        retries = [r for r in caplog.records if "Retrying request" in r.getMessage()]
        assert retries == []
        # elastic_transport keeps the failure count of each dead node here; a live pool has none.
        assert client.transport.node_pool._dead_consecutive_failures == {}
        assert raised.value.details == [{"index": RED_INDEX, "shard": 0}, {"index": RED_INDEX, "shard": 1}]
    finally:
        client.close()


def test_sniffing_finds_the_nodes_that_were_not_configured(
    cluster: es_node.RunningCluster, first_node_stopped: None
) -> None:
    """CONNECTOR_ES_SNIFF=true with only node 1 configured: after the first request the client's pool
    also holds node 2 (a live node it learnt from the cluster), and not node 0, which is down."""
    environment = {"CONNECTOR_ES_URL": cluster.urls[1], "CONNECTOR_ES_SNIFF": "true"}
    connection = ElasticsearchConnection.from_env(environment)
    client = connection.client()
    try:
        assert client.count(index=SAMPLE_INDEX)["count"] == 5280
        pool = {f"http://{node.config.host}:{node.config.port}" for node in client.transport.node_pool.all()}
        assert pool == {cluster.urls[1], cluster.urls[2]}, pool
    finally:
        client.close()
