"""The performance benchmark of issue 5: service vs. Elasticsearch floor vs. scan-everything baseline.

One command starts (or reuses) a real Elasticsearch node, loads the seeded data sets
(``bench/loader.py``, skipped when already loaded), starts the real service under gunicorn (one worker,
so its memory is one process's) and measures, in the same run, with several repetitions:

(a) ``POST /api/v1/detect`` over the whole range of the scale, results written: the first call after
    the service started, then per repetition a cold call (request cache cleared) and a warm one;
(b) the floor: the Elasticsearch requests alone that (a) sends (field caps, the same composite
    aggregation pages, the candidate fetch with a point in time, the explanation aggregation),
    replayed with the client, cold and warm;
(c) the scan-everything baseline (``bench/scan.py``, its own process): every event with its full
    ``_source``, counted in Python, the same frontier and whitelist;
(d) the rarechild model's call (``examples/rarechild.ini``) over the same range, cold and warm, and
(e) its bare Elasticsearch requests (field caps, the pages of its two composite aggregations, the
    fetch of the alerting pairs' events), replayed with the client and timed alone;
plus the gunicorn worker's peak memory (VmHWM, and VmRSS sampled during (a)) and (c)'s.

It prints a table with the medians and the ratios a/b, c/a and memory 16x/1x, checks that every
planted child was found and no whitelisted one reported (exit 1 otherwise), and records
``bench/results/<date>-<scales>.json`` and ``.md`` with the machine's description.

    python bench/run.py --scales 1,4,16 --repeats 5

``--case hourly`` measures the scheduled hourly call instead (``bench/hourly.py``): the last hour with no
baseline, a 7-day and a 30-day one, each counted raw and with the baseline summary; recorded as
``bench/results/<date>-hourly.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/ and connector/ live at the repository root
    sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from bench.hourly import bench_hourly_scale, hourly_summary, hourly_table  # noqa: E402
from bench.loader import DataSet, LoadReport, describe, ensure_loaded, load_generator  # noqa: E402
from bench.scan import memory_kib  # noqa: E402
from connector.config import RareChildUseCase, UseCase, load_use_case  # noqa: E402
from connector.knowledge import load_knowledge  # noqa: E402
from connector.model.rarechild import (  # noqa: E402
    GroupCount,
    PathCount,
    Population,
    ScoringSettings,
    score_pairs,
)
from connector.sources.elasticsearch import (  # noqa: E402
    COMPOSITE_PAGE_SIZE,
    FETCH_PAGE_SIZE,
    PIT_KEEP_ALIVE,
    ElasticsearchSource,
    isoformat_z,
)
from scripts import es_node  # noqa: E402

USE_CASES = ROOT / "examples" / "rare_child.ini"
RARECHILD_USE_CASES = ROOT / "examples" / "rarechild.ini"
RARECHILD = "rarechild_suspicious_child"
GUNICORN_CONF = ROOT / "connector" / "service" / "gunicorn_conf.py"
APP_FACTORY = "connector.service:create_app()"
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_NODE_DIR = Path("/var/tmp/rcp-bench-node")  # outside /root: the ES user must reach it
DEFAULT_HEAP_MB = 3072
INDEX_PREFIX = "osquery-bench-"
RESULTS_INDEX_PREFIX = "outliers-bench-"
SERVICE_START_S = 60.0
SERVICE_STOP_S = 40.0
REQUEST_TIMEOUT_S = 600.0
SCAN_TIMEOUT_S = 3600.0
SAMPLE_INTERVAL_S = 0.02
SCAN_REPEATS_ABOVE = 1_000_000  # above this many events the baseline runs once (it takes minutes)


# ------------------------------------------------------------------------------------------ helpers


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine_description(client: Elasticsearch) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        cpu_model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), ""
        )
    mem_total_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
    nodes = client.nodes.info(filter_path="nodes.*.version,nodes.*.jvm.mem.heap_max_in_bytes")["nodes"]
    node = next(iter(nodes.values()))
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_total_kib / 2**20, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "elasticsearch": node["version"],
        "es_heap_mb": node["jvm"]["mem"]["heap_max_in_bytes"] // 2**20,
        "es_nodes": len(nodes),
    }


def foreign_activity() -> dict[str, Any]:
    """Load average and other java / gunicorn / pytest processes (not this run's) at this moment."""
    mine = {os.getpid()}
    others: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            text = b" ".join(argv[:4]).decode(errors="replace")
            for name in ("java", "gunicorn", "pytest"):
                if name in text:
                    others[name] = others.get(name, 0) + 1
    return {"loadavg": [round(value, 2) for value in os.getloadavg()], "processes": others}


# ------------------------------------------------------------------------------------------ the node


@contextlib.contextmanager
def elasticsearch_node(es_url: str | None, workdir: Path, heap_mb: int, keep: bool) -> Iterator[str]:
    """``es_url`` if given; else the healthy node recorded in ``workdir``; else a new one, stopped after."""
    if es_url:
        yield es_url
        return
    es_node = _es_node_module()
    if (workdir / es_node.STATE_FILE).is_file():
        node = es_node.RunningNode.load(workdir)
        if node.live_pids() and es_node.cluster_health_ok(node.url):
            print(f"reusing the Elasticsearch node at {node.url}", file=sys.stderr)
            yield node.url
            return
    print(f"starting Elasticsearch ({heap_mb} MB heap) in {workdir}", file=sys.stderr)
    node = es_node.start_node(workdir, heap_mb=heap_mb)
    try:
        yield node.url
    finally:
        if not keep:
            node.stop()


def _es_node_module() -> Any:
    return es_node


# ------------------------------------------------------------------------------------------ the service


@dataclass
class Service:
    url: str
    token: str
    master: subprocess.Popen[bytes]
    log_path: Path
    worker_pids: list[int] = field(default_factory=list)
    rss_samples_kib: list[int] = field(default_factory=list)
    _sampling: threading.Event = field(default_factory=threading.Event)

    def detect(self, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """POST /api/v1/detect; (client-side seconds, response body). Non-200 raises with the body."""
        request = urllib.request.Request(
            self.url + "/api/v1/detect",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"detect answered {error.code}: {error.read()[:2000]!r}") from None
        return time.perf_counter() - began, json.loads(payload)

    @property
    def worker_pid(self) -> int:
        """The first worker: with one worker (the memory benchmark), the process that does all the work."""
        return self.worker_pids[0]

    def memory(self) -> dict[str, int]:
        return memory_kib(self.worker_pid)

    def sample(self) -> None:
        while not self._sampling.wait(SAMPLE_INTERVAL_S):
            with contextlib.suppress(OSError, KeyError):
                self.rss_samples_kib.append(self.memory()["VmRSS"])


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@contextlib.contextmanager
def gunicorn_service(
    es_url: str,
    *,
    allowed: str,
    results_index: str,
    workdir: Path,
    workers: int = 1,
    sample_memory: bool = True,
    gunicorn_args: Sequence[str] = (),
    settings: dict[str, str] | None = None,
) -> Iterator[Service]:
    """The real service: gunicorn, ``workers`` workers, a free loopback port; stopped in ``finally``.

    One worker (the default) makes the worker's memory the service's memory (``bench/run.py``); the load
    test (``bench/load.py``) starts several and turns the 20 ms RSS sampler off, so that sampling thread
    does not compete with the clients for the CPU. ``gunicorn_args`` override the configuration file
    (``bench/probes.py`` compares worker classes with ``-k``); ``settings`` override ``CONNECTOR_*``.
    """
    port = free_loopback_port()
    token = secrets.token_urlsafe(24)
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONNECTOR_")}
    env.update(
        {
            "CONNECTOR_ES_URL": es_url,
            "CONNECTOR_USE_CASES": f"{USE_CASES},{RARECHILD_USE_CASES}",
            "CONNECTOR_API_TOKENS": token,
            "CONNECTOR_ALLOWED_INDICES": allowed,
            "CONNECTOR_RESULTS_INDEX": results_index,
            # Long limits: a cold 16x run must be measured, not cut off. gunicorn's worker timeout
            # follows the detection deadline (gunicorn_conf.py).
            "CONNECTOR_ES_TIMEOUT_SECONDS": "300",
            "CONNECTOR_DETECT_TIMEOUT_SECONDS": "570",
            "CONNECTOR_BIND": f"127.0.0.1:{port}",
            "CONNECTOR_WORKERS": str(workers),
            **(settings or {}),
        }
    )
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"service-{port}.log"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), *gunicorn_args, APP_FACTORY]
    with open(log_path, "wb") as log_file:
        master = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(f"http://127.0.0.1:{port}", token, master, log_path)
    sampler = threading.Thread(target=service.sample, daemon=True)
    try:
        _wait_until_healthy(service)
        service.worker_pids = _wait_for_workers(service, workers)
        if sample_memory:
            sampler.start()
        yield service
    finally:
        service._sampling.set()
        if sampler.is_alive():
            sampler.join(timeout=5)
        _stop(master)


def _wait_until_healthy(service: Service) -> None:
    deadline = time.monotonic() + SERVICE_START_S
    while time.monotonic() < deadline:
        if service.master.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {service.log_path.read_text(errors='replace')[-4000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(service.url + "/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the service did not answer /healthz in {SERVICE_START_S:.0f} s")


def _wait_for_workers(service: Service, expected: int) -> list[int]:
    """The worker pids once all ``expected`` forked: /healthz answers as soon as the first one is up."""
    deadline = time.monotonic() + SERVICE_START_S
    while True:
        pids = _children(service.master.pid)
        if len(pids) == expected:
            return pids
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {expected} gunicorn worker(s), found {pids}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SERVICE_STOP_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# ------------------------------------------------------------------------------------------ (b) the floor


def floor_requests(
    client: Elasticsearch, use_case: UseCase, *, index: str, data_set: DataSet
) -> dict[str, float]:
    """The Elasticsearch requests of one detection, sent directly; seconds per step and in total.

    Same requests as :class:`ElasticsearchSource`: field caps (each detection resolves its fields),
    the composite pages (same query, sources and page size), the candidate fetch (one plain search,
    or a point in time with ``search_after`` when it fills a page; same clauses and page size) and the
    explanation aggregation of the outliers.
    """
    gen = load_generator()
    source = ElasticsearchSource(
        client, index=index, start=data_set.start, end=data_set.end, host_field=use_case.host_field
    )
    began = time.perf_counter()
    fields = source.resolve_fields(use_case)
    resolved = time.perf_counter()
    query = source.base_query(use_case)
    sources = [
        {"a0": {"terms": {"field": fields.aggregator[0]}}},
        {"t0": {"terms": {"field": fields.target[0]}}},
    ]
    counts: dict[tuple[str, str], int] = {}
    after = None
    first = True
    pages = 0
    while True:
        composite: dict[str, Any] = {"size": COMPOSITE_PAGE_SIZE, "sources": sources}
        if after is not None:
            composite["after"] = after
        response = client.search(
            index=index,
            size=0,
            track_total_hits=first,
            allow_partial_search_results=False,
            query=query,
            aggs={"pairs": {"composite": composite}},
        )
        pages += 1
        first = False
        aggregation = response["aggregations"]["pairs"]
        for bucket in aggregation["buckets"]:
            counts[(bucket["key"]["a0"], bucket["key"]["t0"])] = bucket["doc_count"]
        after = aggregation.get("after_key")
        if after is None or len(aggregation["buckets"]) < COMPOSITE_PAGE_SIZE:
            break
    counted = time.perf_counter()

    candidates = gen.flags_from_counts(counts)
    by_parent: dict[str, list[str]] = {}
    for parent, child in sorted(candidates):
        by_parent.setdefault(parent, []).append(child)
    clauses = [
        {
            "bool": {
                "filter": [{"term": {fields.aggregator[0]: parent}}, {"terms": {fields.target[0]: children}}]
            }
        }
        for parent, children in by_parent.items()
    ]
    fetch_query = source.base_query(
        use_case, extra=[{"bool": {"should": clauses, "minimum_should_match": 1}}]
    )
    sort = [{fields.timestamp: {"order": "asc", "format": "epoch_millis"}}]
    # As the source does: one plain search; a point-in-time scan only when that page is full.
    first_page = client.search(
        index=index,
        size=FETCH_PAGE_SIZE,
        query=fetch_query,
        sort=sort,
        track_total_hits=False,
        seq_no_primary_term=True,
        allow_partial_search_results=False,
    )["hits"]["hits"]
    fetched = len(first_page)
    if fetched >= FETCH_PAGE_SIZE:
        fetched = 0
        pit = client.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"]
        try:
            search_after = None
            while True:
                response = client.search(
                    pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                    size=FETCH_PAGE_SIZE,
                    query=fetch_query,
                    sort=sort,
                    search_after=search_after,
                    track_total_hits=False,
                    seq_no_primary_term=True,
                    allow_partial_search_results=False,
                )
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                fetched += len(hits)
                if len(hits) < FETCH_PAGE_SIZE:
                    break
                search_after = hits[-1]["sort"]
        finally:
            client.options(ignore_status=404).close_point_in_time(id=pit)
    fetched_at = time.perf_counter()

    reported = gen.outliers_after_whitelist(counts)
    filters = {
        f"p{i}": {
            "bool": {
                "should": [
                    {
                        "bool": {
                            "filter": [
                                {"term": {fields.aggregator[0]: parent}},
                                {"terms": {fields.target[0]: [child]}},
                            ]
                        }
                    }
                ],
                "minimum_should_match": 1,
            }
        }
        for i, (parent, child) in enumerate(sorted(reported))
    }
    host_cardinality = {"cardinality": {"field": fields.host, "precision_threshold": 1000}}
    if filters and fields.host:
        client.search(
            index=index,
            size=0,
            track_total_hits=False,
            allow_partial_search_results=False,
            query=query,
            aggs={"pairs": {"filters": {"filters": filters}, "aggs": {"hosts": host_cardinality}}},
        )
    explained = time.perf_counter()
    return {
        "total_s": explained - began,
        "field_caps_s": resolved - began,
        "composite_s": counted - resolved,
        "composite_pages": pages,
        "fetch_s": fetched_at - counted,
        "fetched_documents": fetched,
        "explain_s": explained - fetched_at,
    }


def rarechild_floor_requests(
    client: Elasticsearch, use_case: RareChildUseCase, *, index: str, data_set: DataSet
) -> dict[str, float]:
    """The Elasticsearch requests of one rarechild detection, sent directly; only they are timed.

    The same requests as the service's: field caps, the pages of both composite aggregations (per host,
    per path; built by the same source method), and the fetch of the alerting pairs' events. The scoring
    in between runs untimed, so the total is Elasticsearch's share alone.
    """
    knowledge = load_knowledge(use_case.knowledge)
    source = ElasticsearchSource(
        client, index=index, start=data_set.start, end=data_set.end, host_field=use_case.host_field
    )
    spent = 0.0
    began = time.perf_counter()
    client.field_caps(index=index, fields="*", allow_no_indices=True)
    spent += time.perf_counter() - began
    source.resolve_fields(use_case)  # untimed: the request above already paid for it
    host_spec, path_spec = source.rarechild_aggregations(use_case)
    query = source.base_query(use_case)
    buckets: dict[str, list[dict[str, Any]]] = {"hosts": [], "paths": []}
    pages = 0
    for name, spec in (("hosts", host_spec), ("paths", path_spec)):
        if spec is None:
            continue
        sources, sub_aggs, _ = spec
        after = None
        first = True
        while True:
            composite: dict[str, Any] = {"size": COMPOSITE_PAGE_SIZE, "sources": sources}
            if after is not None:
                composite["after"] = after
            aggregation: dict[str, Any] = {"composite": composite}
            if sub_aggs:
                aggregation["aggs"] = sub_aggs
            began = time.perf_counter()
            response = client.search(
                index=index,
                size=0,
                track_total_hits=first,
                allow_partial_search_results=False,
                query=query,
                aggs={"pairs": aggregation},
            )
            spent += time.perf_counter() - began
            pages += 1
            first = False
            result = response["aggregations"]["pairs"]
            buckets[name].extend(result["buckets"])
            after = result.get("after_key")
            if after is None or len(result["buckets"]) < COMPOSITE_PAGE_SIZE:
                break
    groups = [
        GroupCount(b["key"]["p"], b["key"]["c"], b["key"].get("h"), b["doc_count"], b["doc_count"], None)
        for b in buckets["hosts"]
    ]
    paths = [
        PathCount(b["key"]["p"], b["key"]["c"], b["key"].get("x"), b["doc_count"]) for b in buckets["paths"]
    ]
    settings = ScoringSettings(
        threshold=use_case.score_threshold, smoothing=use_case.smoothing, range_has_baseline=False
    )
    population = Population.from_counts(groups, paths, knowledge)
    candidates = score_pairs(population, knowledge, settings)[: use_case.max_alerts]
    wanted = {
        raw: frozenset(candidate.flagged_paths) if candidate.flagged_only else None
        for candidate in candidates
        for raw in candidate.raw_pairs
    }
    fetched = 0
    began = time.perf_counter()
    for hits in source.rarechild_hits(use_case, wanted).values():
        fetched += len(hits)
    spent += time.perf_counter() - began
    return {"total_s": spent, "composite_pages": pages, "fetched_documents": fetched}


# ------------------------------------------------------------------------------------------ (c) the baseline


def scan_baseline(es_url: str, *, index: str, data_set: DataSet) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(ROOT / "bench" / "scan.py"),
        "--es-url",
        es_url,
        "--index",
        index,
        "--from",
        isoformat_z(data_set.start),
        "--to",
        isoformat_z(data_set.end),
        "--use-cases",
        str(USE_CASES),
    ]
    began = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, timeout=SCAN_TIMEOUT_S, check=False, cwd=ROOT)
    wall = time.perf_counter() - began
    if completed.returncode != 0:
        raise RuntimeError(f"bench/scan.py failed: {completed.stderr.decode(errors='replace')[-4000:]}")
    report = json.loads(completed.stdout)
    report["process_wall_s"] = wall
    return report


# ------------------------------------------------------------------------------------------ one scale


def data_set_for(scale: str) -> DataSet:
    return DataSet.tiny() if scale == "tiny" else DataSet.at_scale(int(scale.removesuffix("x")))


def bench_scale(
    client: Elasticsearch,
    es_url: str,
    data_set: DataSet,
    *,
    repeats: int,
    scan_repeats: int,
    index_prefix: str,
    workdir: Path,
) -> dict[str, Any]:
    """Load, then measure (a), (b) and (c) for one data set; correctness included in the result."""
    gen = load_generator()
    index = f"{index_prefix}{data_set.name}"
    results_index = f"{RESULTS_INDEX_PREFIX}{index.removeprefix(INDEX_PREFIX)}"
    print(f"[{data_set.name}] loading {data_set.total_events:,} events into {index}", file=sys.stderr)
    load: LoadReport = ensure_loaded(client, data_set, index)
    print(f"[{data_set.name}] {describe(load)}", file=sys.stderr)
    client.indices.flush(index=index)
    segments = len(client.cat.segments(index=index, format="json"))
    use_case = load_use_case(USE_CASES, None)
    activity_before = foreign_activity()
    body = {
        "index": index,
        "range": {"from": isoformat_z(data_set.start), "to": isoformat_z(data_set.end)},
        "annotate": "results_index",
    }

    def clear_cache() -> None:
        client.indices.clear_cache(index=index, request=True)

    a_cold: list[float] = []
    a_dry_cold: list[float] = []
    a_warm: list[float] = []
    took_cold: list[int] = []
    b_cold: list[dict[str, float]] = []
    b_warm: list[dict[str, float]] = []
    rarechild = load_use_case(RARECHILD_USE_CASES, RARECHILD)
    assert isinstance(rarechild, RareChildUseCase)
    rarechild_body = {**body, "use_case": RARECHILD}
    d_cold: list[float] = []
    d_warm: list[float] = []
    d_dry_cold: list[float] = []
    e_cold: list[dict[str, float]] = []
    e_warm: list[dict[str, float]] = []
    with gunicorn_service(
        es_url, allowed=f"{index_prefix}*", results_index=results_index, workdir=workdir
    ) as svc:
        idle = svc.memory()
        clear_cache()
        first_s, response = svc.detect(body)
        for repeat in range(repeats):
            clear_cache()
            seconds, cold_response = svc.detect(body)
            a_cold.append(seconds)
            took_cold.append(cold_response["took_ms"])
            a_warm.append(svc.detect(body)[0])
            clear_cache()  # the same detection without writing: how much of (a) the writes take
            a_dry_cold.append(svc.detect({**body, "annotate": "none"})[0])
            clear_cache()
            b_cold.append(floor_requests(client, use_case, index=index, data_set=data_set))
            b_warm.append(floor_requests(client, use_case, index=index, data_set=data_set))
            # (d) the rarechild model's call, against (e) its bare Elasticsearch requests
            clear_cache()
            seconds, rarechild_response = svc.detect(rarechild_body)
            d_cold.append(seconds)
            d_warm.append(svc.detect(rarechild_body)[0])
            clear_cache()  # the same detection without writing: how much of (d) the writes take
            d_dry_cold.append(svc.detect({**rarechild_body, "annotate": "none"})[0])
            clear_cache()
            e_cold.append(rarechild_floor_requests(client, rarechild, index=index, data_set=data_set))
            e_warm.append(rarechild_floor_requests(client, rarechild, index=index, data_set=data_set))
            print(
                f"[{data_set.name}] repeat {repeat + 1}/{repeats}: a cold {a_cold[-1]:.3f} s, warm "
                f"{a_warm[-1]:.3f} s; b cold {b_cold[-1]['total_s']:.3f} s, "
                f"warm {b_warm[-1]['total_s']:.3f} s; rarechild d cold {d_cold[-1]:.3f} s, "
                f"e cold {e_cold[-1]['total_s']:.3f} s",
                file=sys.stderr,
            )
        peak = svc.memory()
        rss_max = max(svc.rss_samples_kib, default=0)

    scans = []
    for repeat in range(scan_repeats):
        scans.append(scan_baseline(es_url, index=index, data_set=data_set))
        print(
            f"[{data_set.name}] scan {repeat + 1}/{scan_repeats}: {scans[-1]['seconds']:.1f} s",
            file=sys.stderr,
        )

    planted = {(event.parent, event.child) for event in gen.reported_planted(data_set.hosts)}
    whitelisted = {(event.parent, event.child) for event in gen.WHITELISTED}
    found = {(outlier["aggregator"], outlier["term"]) for outlier in response["outliers"]}
    problems = []
    if missing := sorted(planted - found):
        problems.append(f"planted children not found by the service: {missing}")
    if reported := sorted(whitelisted & found):
        problems.append(f"whitelisted children reported by the service: {reported}")
    if response["events_analyzed"] != data_set.total_events:
        problems.append(
            f"the service analysed {response['events_analyzed']} events, not {data_set.total_events}"
        )
    for scan in scans:
        scan_found = {tuple(pair) for pair in scan["outlier_pairs"]}
        if scan_found != found:
            problems.append(f"the scan baseline found {sorted(scan_found)}, the service {sorted(found)}")

    a_cold_median, a_warm_median = median(a_cold), median(a_warm)
    b_cold_median = median([item["total_s"] for item in b_cold])
    b_warm_median = median([item["total_s"] for item in b_warm])
    c_median = median([scan["seconds"] for scan in scans])
    return {
        "scale": data_set.name,
        "index": index,
        "data_set": {
            "seed": data_set.seed,
            "hosts": data_set.hosts,
            "days": data_set.days,
            "events": data_set.total_events,
            "from": isoformat_z(data_set.start),
            "to": isoformat_z(data_set.end),
        },
        "load": {
            "skipped": load.skipped,
            "seconds": round(load.seconds, 1),
            "events_per_second": round(load.events_per_second),
            "content_sha256": load.content_sha256,
            "segments": segments,
        },
        "activity_before": activity_before,
        "activity_after": foreign_activity(),
        "a": {
            "first_s": first_s,
            "cold_s": a_cold,
            "warm_s": a_warm,
            "cold_median_s": a_cold_median,
            "warm_median_s": a_warm_median,
            "no_write_cold_s": a_dry_cold,
            "no_write_cold_median_s": median(a_dry_cold),
            "server_took_ms_cold": took_cold,
        },
        "b": {
            "cold": b_cold,
            "warm": b_warm,
            "cold_median_s": b_cold_median,
            "warm_median_s": b_warm_median,
            "cold_median_steps_s": {
                key: median([item[key] for item in b_cold]) for key in b_cold[0] if key.endswith("_s")
            }
            if b_cold
            else {},
        },
        "c": {
            "runs": scans,
            "median_s": c_median,
            "peak_kib": max((scan["memory_kib"]["VmHWM"] for scan in scans), default=None),
        },
        "service_memory_kib": {
            "idle_rss": idle.get("VmRSS"),
            "peak_hwm": peak.get("VmHWM"),
            "sampled_max_rss": rss_max,
        },
        "ratios": {
            "a_over_b_cold": ratio(a_cold_median, b_cold_median),
            "a_over_b_warm": ratio(a_warm_median, b_warm_median),
            "c_over_a_cold": ratio(c_median, a_cold_median),
            "c_over_a_warm": ratio(c_median, a_warm_median),
        },
        "rarechild": {
            "d_cold_s": d_cold,
            "d_warm_s": d_warm,
            "d_no_write_cold_s": d_dry_cold,
            "d_no_write_cold_median_s": median(d_dry_cold),
            "e_cold": e_cold,
            "e_warm": e_warm,
            "d_cold_median_s": median(d_cold),
            "d_warm_median_s": median(d_warm),
            "e_cold_median_s": median([item["total_s"] for item in e_cold]),
            "e_warm_median_s": median([item["total_s"] for item in e_warm]),
            "d_over_e_cold": ratio(median(d_cold), median([item["total_s"] for item in e_cold])),
            "d_over_e_warm": ratio(median(d_warm), median([item["total_s"] for item in e_warm])),
            "alerts": [f"{o['aggregator']} -> {o['term']}" for o in rarechild_response["outliers"]]
            if d_cold
            else [],
        },
        "outliers_total": response["outliers_total"],
        "outliers": sorted(f"{parent} -> {child}" for parent, child in found),
        "problems": problems,
    }


# ------------------------------------------------------------------------------------------ reporting


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def table(scales: list[dict[str, Any]]) -> list[str]:
    header = (
        "| scale | events | a first | a cold | a warm | b cold | b warm | a/b cold | a/b warm | c | c/a cold "
        "| service peak MiB | c peak MiB | outliers |"
    )
    rows = [
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for item in scales:
        memory = item["service_memory_kib"]
        rows.append(
            f"| {item['scale']} | {item['data_set']['events']:,} | {_fmt(item['a']['first_s'], ' s')} "
            f"| {_fmt(item['a']['cold_median_s'], ' s')} | {_fmt(item['a']['warm_median_s'], ' s')} "
            f"| {_fmt(item['b']['cold_median_s'], ' s')} | {_fmt(item['b']['warm_median_s'], ' s')} "
            f"| {_fmt(item['ratios']['a_over_b_cold'], '', 2)} "
            f"| {_fmt(item['ratios']['a_over_b_warm'], '', 2)} "
            f"| {_fmt(item['c']['median_s'], ' s', 1)} | {_fmt(item['ratios']['c_over_a_cold'], '', 1)} "
            f"| {memory['peak_hwm'] / 1024:.1f} "
            f"| {_fmt(None if item['c']['peak_kib'] is None else item['c']['peak_kib'] / 1024, '', 1)} "
            f"| {item['outliers_total']} |"
        )
    rows.append("")
    rows.append(
        "| scale | rarechild d cold | d warm | d cold, no write | e cold | e warm | d/e cold | d/e warm "
        "| alerts |"
    )
    rows.append("|---|---|---|---|---|---|---|---|---|")
    for item in scales:
        rare = item["rarechild"]
        rows.append(
            f"| {item['scale']} | {_fmt(rare['d_cold_median_s'], ' s')} "
            f"| {_fmt(rare['d_warm_median_s'], ' s')} | {_fmt(rare['d_no_write_cold_median_s'], ' s')} "
            f"| {_fmt(rare['e_cold_median_s'], ' s')} | {_fmt(rare['e_warm_median_s'], ' s')} "
            f"| {_fmt(rare['d_over_e_cold'], '', 2)} | {_fmt(rare['d_over_e_warm'], '', 2)} "
            f"| {len(rare['alerts'])} |"
        )
    return rows


def summary(scales: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {item["scale"]: item for item in scales}
    out: dict[str, Any] = {}
    if "1x" in by_name and "16x" in by_name:
        out["memory_16x_over_1x"] = (
            by_name["16x"]["service_memory_kib"]["peak_hwm"] / by_name["1x"]["service_memory_kib"]["peak_hwm"]
        )
    first = by_name.get("1x")
    if first:
        out["a_cold_1x_s"] = first["a"]["cold_median_s"]
    out["targets"] = {
        "a_over_b_le_1.3": all((item["ratios"]["a_over_b_cold"] or 99) <= 1.3 for item in scales),
        "c_over_a_ge_30_at_1x": bool(first and (first["ratios"]["c_over_a_cold"] or 0) >= 30),
        "a_under_1s_at_1x": bool(first and first["a"]["cold_median_s"] < 1.0),
        "memory_16x_le_1.2x": out.get("memory_16x_over_1x", 99) <= 1.2
        if "memory_16x_over_1x" in out
        else None,
        "planted_found_whitelisted_suppressed": not any(item["problems"] for item in scales),
        "rarechild_d_over_e_le_1.5": all(
            (item["rarechild"]["d_over_e_cold"] or 99) <= 1.5 for item in scales
        ),
        "rarechild_under_1s_at_1x": bool(first and (first["rarechild"]["d_cold_median_s"] or 99) < 1.0),
    }
    return out


def write_results(results: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-{'-'.join(results['scales'])}"
    json_path = results_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    machine = results["machine"]
    lines = [
        f"# Benchmark {results['date']} ({', '.join(results['scales'])})",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}, Elasticsearch {machine['elasticsearch']} "
        f"(1 node, {machine['es_heap_mb']} MB heap). Repeats: {results['repeats']} (medians); "
        "service: gunicorn, 1 sync worker.",
        "",
        "a = POST /api/v1/detect over the whole range, results written (cold: request cache cleared); "
        "b = the Elasticsearch requests of (a) alone; "
        "c = scan every event with its _source and count in Python.",
        "",
        *table(results["results"]),
        "",
        f"Summary: `{json.dumps(results['summary'], sort_keys=True)}`",
        "",
    ]
    for item in results["results"]:
        steps = ", ".join(f"{key} {value:.3f}" for key, value in item["b"]["cold_median_steps_s"].items())
        lines.append(
            f"- {item['scale']}: a cold without writes {_fmt(item['a']['no_write_cold_median_s'], ' s')}; "
            f"b cold steps (s): {steps}; service idle RSS "
            f"{item['service_memory_kib']['idle_rss'] / 1024:.1f} MiB; (c) runs {len(item['c']['runs'])}; "
            f"before: {item['activity_before']}"
        )
        for problem in item["problems"]:
            lines.append(f"  - PROBLEM: {problem}")
    md_path = results_dir / f"{stem}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def run_benchmark(
    es_url: str,
    *,
    scales: Sequence[str],
    repeats: int,
    scan_repeats: int,
    results_dir: Path,
    index_prefix: str = INDEX_PREFIX,
    workdir: Path | None = None,
    scan_max_events: int | None = None,
) -> dict[str, Any]:
    """Every scale in order; returns the recorded results (also written to ``results_dir``)."""
    client = Elasticsearch(es_url, request_timeout=REQUEST_TIMEOUT_S)
    workdir = workdir or results_dir / "logs"
    try:
        results: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scales": [data_set_for(scale).name for scale in scales],
            "repeats": repeats,
            "scan_repeats": scan_repeats,
            "scan_max_events": scan_max_events,
            "machine": machine_description(client),
            "results": [],
        }
        for scale in scales:
            data_set = data_set_for(scale)
            runs = scan_repeats if data_set.total_events <= SCAN_REPEATS_ABOVE else min(scan_repeats, 1)
            if scan_max_events is not None and data_set.total_events > scan_max_events:
                runs = 0  # recorded as not measured (c: null), never as a number
            results["results"].append(
                bench_scale(
                    client,
                    es_url,
                    data_set,
                    repeats=repeats,
                    scan_repeats=runs,
                    index_prefix=index_prefix,
                    workdir=workdir,
                )
            )
        results["summary"] = summary(results["results"])
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["files"] = [str(path) for path in write_results(results, results_dir)]
        return results
    finally:
        client.close()


def run_hourly(
    es_url: str, *, scales: Sequence[str], repeats: int, results_dir: Path, index_prefix: str = INDEX_PREFIX
) -> dict[str, Any]:
    """The hourly case (bench/hourly.py) for every scale; recorded as ``<date>-hourly``."""
    client = Elasticsearch(es_url, request_timeout=REQUEST_TIMEOUT_S)
    try:
        results: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "case": "hourly",
            "scales": [data_set_for(scale).name for scale in scales],
            "repeats": repeats,
            "machine": machine_description(client),
            "activity_before": foreign_activity(),
            "results": [],
        }
        for scale in scales:
            data_set = data_set_for(scale)
            for use_case_path, section in ((USE_CASES, None), (RARECHILD_USE_CASES, RARECHILD)):
                results["results"].append(
                    bench_hourly_scale(
                        client,
                        data_set,
                        repeats=repeats,
                        index=f"{index_prefix}{data_set.name}",
                        use_case_path=use_case_path,
                        section=section,
                    )
                )
        results["summary"] = hourly_summary(results["results"])
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{results['date']}-hourly"
        json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
        json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        machine = results["machine"]
        lines = [
            f"# Benchmark {results['date']} (hourly: {', '.join(results['scales'])})",
            "",
            f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
            f"Linux {machine['kernel']}, Python {machine['python']}, "
            f"Elasticsearch {machine['elasticsearch']} "
            f"(1 node, {machine['es_heap_mb']} MB heap). Repeats: {repeats} (medians); in-process engine "
            "calls (detect_in_elasticsearch), cold (request cache cleared; the summary index refreshed, as "
            "an hour after the previous write), annotate none.",
            "",
            "One scheduled call for the last hour of the data set; raw = the baseline recounted by the "
            "composite aggregation; with summary = whole baseline hours read back from the summary index "
            "(primed by one call first), the hour itself counted raw. Both models: terms "
            "(examples/rare_child.ini) and rarechild (examples/rarechild.ini). The whole answers of both "
            "modes (counts, outliers, scores) are compared on every call.",
            "",
            *hourly_table(results["results"]),
            "",
            f"Summary: `{json.dumps(results['summary'], sort_keys=True)}`",
            "",
            f"- before: {results['activity_before']}",
        ]
        for item in results["results"]:
            for problem in item["problems"]:
                lines.append(f"  - PROBLEM: {problem}")
        md_path.write_text("\n".join(lines) + "\n")
        results["files"] = [str(json_path), str(md_path)]
        return results
    finally:
        client.close()


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """Where the benchmark's Elasticsearch node and recorded results live (shared with bench/load.py)."""
    parser.add_argument("--es-url", help="use this cluster instead of starting/reusing the benchmark node")
    parser.add_argument(
        "--node-dir", type=Path, default=DEFAULT_NODE_DIR, help="workdir of the benchmark node"
    )
    parser.add_argument("--heap-mb", type=int, default=DEFAULT_HEAP_MB)
    parser.add_argument("--keep-node", action="store_true", help="leave a node this run started running")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16", help="comma-separated multipliers (1, 4, 16) or 'tiny'")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of (a) and (b) per scale")
    parser.add_argument(
        "--scan-repeats", type=int, default=3, help="repetitions of (c) (once above 1M events)"
    )
    parser.add_argument(
        "--scan-max-events",
        type=int,
        help="skip (c) on larger data sets (it reads every event: minutes at 16x)",
    )
    parser.add_argument(
        "--case", choices=("detect", "hourly"), default="detect", help="hourly: the scheduled last-hour call"
    )
    add_node_options(parser)
    args = parser.parse_args(argv)
    scales = [scale.strip() for scale in args.scales.split(",") if scale.strip()]
    if args.case == "hourly":
        with elasticsearch_node(args.es_url, args.node_dir, args.heap_mb, args.keep_node) as es_url:
            hourly = run_hourly(es_url, scales=scales, repeats=args.repeats, results_dir=args.results_dir)
        print("\n".join(hourly_table(hourly["results"])))
        print(json.dumps(hourly["summary"], indent=2, sort_keys=True))
        print("recorded: " + ", ".join(hourly["files"]))
        hourly_problems = [problem for item in hourly["results"] for problem in item["problems"]]
        for problem in hourly_problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        return 1 if hourly_problems else 0
    with elasticsearch_node(args.es_url, args.node_dir, args.heap_mb, args.keep_node) as es_url:
        results = run_benchmark(
            es_url,
            scales=scales,
            repeats=args.repeats,
            scan_repeats=args.scan_repeats,
            scan_max_events=args.scan_max_events,
            results_dir=args.results_dir,
            workdir=args.node_dir / "service-logs",
        )
    print("\n".join(table(results["results"])))
    print(json.dumps(results["summary"], indent=2, sort_keys=True))
    print("recorded: " + ", ".join(results["files"]))
    problems = [problem for item in results["results"] for problem in item["problems"]]
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
