"""Bounded load test of the webhook service: real gunicorn, real Elasticsearch, concurrent clients.

One command starts (or reuses) the benchmark's Elasticsearch node (``bench/run.py``), loads the data
(the shipped sample through ``connector load``'s code, and the 1x reference set through
``bench/loader.py``, both skipped when already there), starts one real gunicorn service per worker count
(``bench/run.py``'s launcher, loopback only) and drives it with C client threads. Each phase is bounded
twice: at most ``--max-requests`` requests AND at most ``--duration`` seconds, whichever comes first.

The requests are what a deployment sees: ``POST /api/v1/detect`` over several overlapping ranges of
the data set (half ``dry_run``, half writing to the results index, one with a baseline), plus
``GET /api/v1/use-cases`` and ``GET /readyz``. Every non-2xx answer or transport failure is an error,
recorded with its body. Per configuration (data set x workers x concurrency) it reports requests,
errors, throughput, p50/p90/p99/max latency and the CPU the gunicorn processes used.

The alternatives are compared in the same run (the benchmark rule: ratios and medians from one run):
the phases are interleaved round-robin (round -> data set -> concurrency -> workers), so every worker
count sees the same machine, including whatever else runs on it at the time.

    python bench/load.py --workers 1,2,4 --concurrency 1,4,8 --rounds 3 --duration 12 --max-requests 1500
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/ and connector/ live at the repository root
    sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from bench.loader import DataSet, describe, ensure_loaded  # noqa: E402
from bench.run import (  # noqa: E402
    INDEX_PREFIX,
    REQUEST_TIMEOUT_S,
    RESULTS_INDEX_PREFIX,
    Service,
    add_node_options,
    elasticsearch_node,
    foreign_activity,
    gunicorn_service,
    machine_description,
)
from bench.scan import memory_kib  # noqa: E402
from connector.loading import load_events  # noqa: E402
from connector.sources.ndjson import NdjsonSource  # noqa: E402
from connector.timerange import isoformat_z  # noqa: E402

SAMPLE_EVENTS = ROOT / "examples" / "sample-events.ndjson"
SAMPLE_START = datetime(2024, 3, 4, tzinfo=UTC)  # the sample's 3 days (docs/service.md)
SAMPLE_DAYS = 3
DEFAULT_SCALES = ("sample", "1x")
DEFAULT_WORKERS = (1, 2, 4)
DEFAULT_CONCURRENCY = (1, 4, 8)
DEFAULT_ROUNDS = 3
DEFAULT_DURATION_S = 12.0
DEFAULT_MAX_REQUESTS = 1500
MAX_REPORTED_ERRORS = 10
ERROR_BODY_CHARS = 2000
CLOSE_ENOUGH = 0.10  # a smaller worker count within 10 % of the best throughput is recommended instead
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class Target:
    """A loaded data set: the index the requests read and the time span their ranges cover."""

    name: str
    index: str
    events: int
    start: datetime
    days: int
    load: str


def load_sample(client: Elasticsearch, index: str) -> Target:
    """The shipped sample, indexed as ``connector load`` does (ids kept: a reload is a no-op)."""
    expected = sum(1 for line in SAMPLE_EVENTS.open("rb") if line.strip())
    if client.indices.exists(index=index) and client.count(index=index)["count"] == expected:
        return Target("sample", index, expected, SAMPLE_START, SAMPLE_DAYS, f"{index}: already loaded")
    report = load_events(client, NdjsonSource(SAMPLE_EVENTS).hits(), index=index)
    if report.failed or report.indexed != expected:
        raise RuntimeError(f"loading the sample into {index} failed: {report}")
    return Target("sample", index, expected, SAMPLE_START, SAMPLE_DAYS, f"{index}: loaded {expected} events")


def load_target(client: Elasticsearch, scale: str, index_prefix: str) -> Target:
    """``sample`` or a multiple of the reference scale (``1x``); loaded only if not there yet."""
    if scale == "sample":
        return load_sample(client, f"{index_prefix}sample")
    data_set = DataSet.tiny() if scale == "tiny" else DataSet.at_scale(int(scale.removesuffix("x")))
    index = f"{index_prefix}{data_set.name}"
    report = ensure_loaded(client, data_set, index)
    return Target(
        data_set.name, index, data_set.total_events, data_set.start, data_set.days, describe(report)
    )


# ------------------------------------------------------------------------------------------ the requests


@dataclass(frozen=True)
class RequestSpec:
    """One request of the mix; ``label`` groups latencies by kind in the report."""

    label: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    name: str = ""  # which range, for the report: "detect_write all", "detect_dry_run first_day"...

    def describe(self) -> str:
        return f"{self.label} {self.name}".strip()


def request_mix(target: Target) -> list[RequestSpec]:
    """Ten requests, cycled in order: six detections (overlapping ranges, three writing), two use-case
    listings, two readiness probes; the proportions of an hourly schedule plus monitoring and analysts."""
    start, end = target.start, target.start + timedelta(days=target.days)
    middle = start + (end - start) / 2

    def detect(label: str, since: datetime, until: datetime, *, write: bool, **extra: Any) -> RequestSpec:
        body: dict[str, Any] = {
            "index": target.index,
            "range": {"from": isoformat_z(since), "to": isoformat_z(until)},
            "dry_run": not write,
            **extra,
        }
        kind = f"detect_{'write' if write else 'dry_run'}"
        return RequestSpec(kind, "POST", "/api/v1/detect", body, name=label)

    day = timedelta(days=1)
    return [
        detect("all", start, end, write=True),
        RequestSpec("use_cases", "GET", "/api/v1/use-cases"),
        detect("first_day", start, start + day, write=False),
        RequestSpec("readyz", "GET", "/readyz"),
        detect("first_half", start, middle, write=True),
        detect("last_day_vs_all", end - day, end, write=False, baseline={"from": isoformat_z(start)}),
        RequestSpec("use_cases", "GET", "/api/v1/use-cases"),
        detect("middle", start + day / 2, end - day / 2, write=True),
        RequestSpec("readyz", "GET", "/readyz"),
        detect("second_half", middle, end, write=False),
    ]


@dataclass
class Outcome:
    label: str
    status: int
    seconds: float
    body: bytes = b""
    written: int = 0
    unchanged: int = 0


def _send(connection: http.client.HTTPConnection, spec: RequestSpec, token: str) -> Outcome:
    """One request on a kept-alive connection (http.client reopens it when gunicorn closes it)."""
    headers = {"Authorization": f"Bearer {token}"}
    payload = None
    if spec.body is not None:
        payload = json.dumps(spec.body).encode()
        headers["Content-Type"] = "application/json"
    began = time.perf_counter()
    try:
        connection.request(spec.method, spec.path, body=payload, headers=headers)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        return Outcome(spec.label, 0, time.perf_counter() - began, repr(error).encode())
    seconds = time.perf_counter() - began
    outcome = Outcome(spec.label, response.status, seconds, body)
    if spec.label == "detect_write" and 200 <= response.status < 300:
        annotation = json.loads(body).get("annotation") or {}
        outcome.written, outcome.unchanged = annotation.get("written", 0), annotation.get("unchanged", 0)
    return outcome


# ------------------------------------------------------------------------------------------ one phase


def _process_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values (no interpolation: an observed latency)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(seconds)
    return {
        "p50_ms": _ms(percentile(ordered, 50)),
        "p90_ms": _ms(percentile(ordered, 90)),
        "p99_ms": _ms(percentile(ordered, 99)),
        "max_ms": _ms(ordered[-1] if ordered else None),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


@dataclass
class _Driver:
    """Hands out request numbers to the client threads until either bound is reached."""

    max_requests: int
    deadline: float
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self.max_requests or time.perf_counter() >= self.deadline:
                return None
            self._next += 1
            return self._next - 1


def run_phase(
    service: Service, mix: Sequence[RequestSpec], *, concurrency: int, max_requests: int, duration_s: float
) -> dict[str, Any]:
    """C client threads against one service, bounded by a request count and a duration; its figures.

    Requests in flight when the duration ends are completed and counted (none is started after it).
    """
    address = urlsplit(service.url)
    pids = [service.master.pid, *service.worker_pids]
    ticks_before = sum(_process_ticks(pid) for pid in pids)
    busy_before, total_before = _machine_ticks()
    client_before = time.process_time()
    began = time.perf_counter()
    driver = _Driver(max_requests, began + duration_s)
    outcomes: list[list[Outcome]] = [[] for _ in range(concurrency)]

    def client(mine: list[Outcome]) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT_S)
        try:
            while (number := driver.take()) is not None:
                mine.append(_send(connection, mix[number % len(mix)], service.token))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(mine,), daemon=True) for mine in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    busy_after, total_after = _machine_ticks()
    service_cpu_s = (sum(_process_ticks(pid) for pid in pids) - ticks_before) / CLOCK_TICKS
    every = [outcome for mine in outcomes for outcome in mine]
    return summarize_phase(
        every,
        wall_s=wall,
        service_cpu_s=service_cpu_s,
        client_cpu_s=time.process_time() - client_before,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
    )


def summarize_phase(
    outcomes: Sequence[Outcome],
    *,
    wall_s: float,
    service_cpu_s: float,
    client_cpu_s: float,
    machine_busy: float,
) -> dict[str, Any]:
    """Counts, errors (with their bodies), throughput and latencies of one phase."""
    errors = [outcome for outcome in outcomes if not 200 <= outcome.status < 300]
    by_label: dict[str, list[float]] = {}
    for outcome in outcomes:
        by_label.setdefault(outcome.label, []).append(outcome.seconds)
    return {
        "requests": len(outcomes),
        "errors": len(errors),
        "error_samples": [
            {
                "label": error.label,
                "status": error.status,
                "body": error.body[:ERROR_BODY_CHARS].decode(errors="replace"),
            }
            for error in errors[:MAX_REPORTED_ERRORS]
        ],
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(len(outcomes) / wall_s, 2) if wall_s else None,
        "latency_s": [round(outcome.seconds, 5) for outcome in outcomes],
        "labels": [outcome.label for outcome in outcomes],
        "latency": latency_summary([outcome.seconds for outcome in outcomes]),
        "latency_by_label": {label: latency_summary(values) for label, values in sorted(by_label.items())},
        "requests_by_label": {label: len(values) for label, values in sorted(by_label.items())},
        "written": sum(outcome.written for outcome in outcomes),
        "unchanged": sum(outcome.unchanged for outcome in outcomes),
        "service_cpu_s": round(service_cpu_s, 2),
        "service_cpu_cores": round(service_cpu_s / wall_s, 2) if wall_s else None,
        "client_cpu_s": round(client_cpu_s, 2),
        "machine_busy_pct": round(100 * machine_busy, 1),
    }


# ------------------------------------------------------------------------------------------ the run


def _warm_up(service: Service, mix: Sequence[RequestSpec]) -> list[dict[str, Any]]:
    """Each request of the mix once, not measured: first connections, the results index, caches.

    Returns its errors (a configuration that fails here would fail every phase the same way).
    """
    phase = run_phase(service, mix, concurrency=1, max_requests=len(mix), duration_s=REQUEST_TIMEOUT_S)
    return phase["error_samples"]


def _aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration over its rounds: totals, median throughput, latency percentiles over all requests."""
    latencies = [seconds for phase in rounds for seconds in phase["latency_s"]]
    throughputs = [phase["throughput_rps"] for phase in rounds if phase["throughput_rps"] is not None]
    return {
        "requests": sum(phase["requests"] for phase in rounds),
        "errors": sum(phase["errors"] for phase in rounds),
        "error_samples": [sample for phase in rounds for sample in phase["error_samples"]][
            :MAX_REPORTED_ERRORS
        ],
        "throughput_rps_median": round(statistics.median(throughputs), 2) if throughputs else None,
        "throughput_rps_rounds": throughputs,
        "latency": latency_summary(latencies),
        "detect_latency": latency_summary(
            [s for phase in rounds for s, label in _labelled(phase) if label.startswith("detect")]
        ),
        "service_cpu_cores_median": statistics.median(
            phase["service_cpu_cores"] for phase in rounds if phase["service_cpu_cores"] is not None
        )
        if rounds
        else None,
        "machine_busy_pct_median": statistics.median(phase["machine_busy_pct"] for phase in rounds)
        if rounds
        else None,
        "written": sum(phase["written"] for phase in rounds),
        "unchanged": sum(phase["unchanged"] for phase in rounds),
    }


def _labelled(phase: dict[str, Any]) -> Iterator[tuple[float, str]]:
    return zip(phase["latency_s"], phase["labels"], strict=True)


def recommend(configurations: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker count to document, per data set: the fewest workers whose throughput at the highest
    concurrency is within ``CLOSE_ENOUGH`` of the best (each worker is another process's memory and
    another client connection to Elasticsearch), provided it made no errors."""
    by_target: dict[str, dict[str, Any]] = {}
    for target in sorted({item["target"] for item in configurations}):
        rows = [item for item in configurations if item["target"] == target]
        top = max(item["concurrency"] for item in rows)
        candidates = [item for item in rows if item["concurrency"] == top and item["errors"] == 0]
        if not candidates:
            by_target[target] = {"workers": None, "reason": "every configuration had errors"}
            continue
        best = max(item["throughput_rps_median"] or 0 for item in candidates)
        chosen = min(
            (
                item
                for item in candidates
                if (item["throughput_rps_median"] or 0) >= (1 - CLOSE_ENOUGH) * best
            ),
            key=lambda item: item["workers"],
        )
        by_target[target] = {
            "workers": chosen["workers"],
            "at_concurrency": top,
            "throughput_rps": chosen["throughput_rps_median"],
            "best_throughput_rps": best,
            "p99_ms": chosen["latency"]["p99_ms"],
        }
    return by_target


def run_load(
    es_url: str,
    *,
    scales: Sequence[str],
    workers: Sequence[int],
    concurrency: Sequence[int],
    rounds: int,
    max_requests: int,
    duration_s: float,
    results_dir: Path,
    workdir: Path,
    index_prefix: str = INDEX_PREFIX,
) -> dict[str, Any]:
    """Load the data, start one service per worker count, run every phase interleaved; record the results."""
    client = Elasticsearch(es_url, request_timeout=REQUEST_TIMEOUT_S)
    results_index = f"{RESULTS_INDEX_PREFIX}{index_prefix.removeprefix(INDEX_PREFIX)}load"
    try:
        started_at = datetime.now(UTC)
        machine = machine_description(client)
        targets = [load_target(client, scale, index_prefix) for scale in scales]
        for target in targets:
            print(f"[load] {target.load}", file=sys.stderr)
        with contextlib.ExitStack() as stack:
            services = {
                count: stack.enter_context(
                    gunicorn_service(
                        es_url,
                        allowed=f"{index_prefix}*",
                        results_index=results_index,
                        workdir=workdir,
                        workers=count,
                        sample_memory=False,
                    )
                )
                for count in workers
            }
            phases, warm_up_errors = _interleaved(
                services,
                targets,
                concurrency,
                rounds=rounds,
                max_requests=max_requests,
                duration_s=duration_s,
            )
            memory = {
                str(count): [memory_kib(pid).get("VmHWM", 0) for pid in service.worker_pids]
                for count, service in services.items()
            }
        configurations = [
            {"target": target.name, "workers": count, "concurrency": clients, **_aggregate(rounds_of)}
            for (target, count, clients), rounds_of in phases.items()
        ]
        results = {
            "date": started_at.strftime("%Y-%m-%d"),
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "versions": _versions(),
            "source": _source_state(),
            "parameters": {
                "scales": list(scales),
                "workers": list(workers),
                "concurrency": list(concurrency),
                "rounds": rounds,
                "max_requests_per_phase": max_requests,
                "max_duration_s_per_phase": duration_s,
                "request_mix": [spec.describe() for spec in request_mix(targets[0])] if targets else [],
            },
            "targets": [
                {"name": t.name, "index": t.index, "events": t.events, "days": t.days, "load": t.load}
                for t in targets
            ],
            "warm_up_errors": warm_up_errors,
            "configurations": configurations,
            "worker_peak_rss_kib": memory,
            "errors_total": sum(item["errors"] for item in configurations),
            "recommendation": recommend(configurations),
            "other_activity": busiest_moment([phase for rounds_of in phases.values() for phase in rounds_of]),
        }
        results["files"] = [str(path) for path in write_results(results, results_dir)]
        return results
    finally:
        client.close()


def _interleaved(
    services: dict[int, Service],
    targets: Sequence[Target],
    concurrency: Sequence[int],
    *,
    rounds: int,
    max_requests: int,
    duration_s: float,
) -> tuple[dict[tuple[Target, int, int], list[dict[str, Any]]], list[dict[str, Any]]]:
    """Every phase, round-robin (round, data set, concurrency, workers): alternatives run side by side."""
    mixes = {target: request_mix(target) for target in targets}
    warm_up_errors = [
        {"workers": count, "target": target.name, **error}
        for count, service in services.items()
        for target in targets
        for error in _warm_up(service, mixes[target])
    ]
    phases: dict[tuple[Target, int, int], list[dict[str, Any]]] = {}
    for round_number in range(rounds):
        for target in targets:
            for clients in concurrency:
                for count, service in services.items():
                    phase = run_phase(
                        service,
                        mixes[target],
                        concurrency=clients,
                        max_requests=max_requests,
                        duration_s=duration_s,
                    )
                    phase["round"] = round_number + 1
                    phase["activity_after"] = foreign_activity()
                    phases.setdefault((target, count, clients), []).append(phase)
                    print(
                        f"[round {round_number + 1}/{rounds}] {target.name} workers={count} "
                        f"clients={clients}: "
                        f"{phase['requests']} requests, {phase['errors']} errors, "
                        f"{phase['throughput_rps']} req/s, p50 {phase['latency']['p50_ms']} ms, "
                        f"p99 {phase['latency']['p99_ms']} ms",
                        file=sys.stderr,
                    )
    return phases, warm_up_errors


# ------------------------------------------------------------------------------------------ reporting


def _source_state() -> dict[str, Any]:
    """The commit measured and whether the working tree differed from it (read-only git calls)."""
    state: dict[str, Any] = {"commit": None, "modified_files": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        state = {"commit": head.stdout.strip(), "modified_files": len(status.stdout.splitlines())}
    return state


def _versions() -> dict[str, str]:
    """The packages the measured service ran with (the machine's Python and Elasticsearch are elsewhere)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("gunicorn", "flask", "elasticsearch", "jsonschema")}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(configurations: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown rows, one per configuration, in the order the run measured them."""
    header = (
        "| data set | workers | clients | requests | errors | req/s (median) | req/s rounds | p50 ms "
        "| p90 ms | p99 ms | max ms | detect p50 ms | detect p99 ms | gunicorn CPU (cores) | machine busy % |"
    )
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    ordered = sorted(configurations, key=lambda item: (item["target"], item["concurrency"], item["workers"]))
    for item in ordered:
        latency, detect = item["latency"], item["detect_latency"]
        rows.append(
            f"| {item['target']} | {item['workers']} | {item['concurrency']} | {item['requests']:,} "
            f"| {item['errors']} | {_fmt(item['throughput_rps_median'])} "
            f"| {' / '.join(_fmt(value, 0) for value in item['throughput_rps_rounds'])} "
            f"| {_fmt(latency['p50_ms'])} "
            f"| {_fmt(latency['p90_ms'])} | {_fmt(latency['p99_ms'])} | {_fmt(latency['max_ms'])} "
            f"| {_fmt(detect['p50_ms'])} | {_fmt(detect['p99_ms'])} "
            f"| {_fmt(item['service_cpu_cores_median'], 2)} | {_fmt(item['machine_busy_pct_median'])} |"
        )
    return rows


def busiest_moment(phases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The most of everything else seen on the machine after any phase: how quiet the run really was.

    ``java`` includes this run's own Elasticsearch node and ``gunicorn`` its services.
    """
    processes: dict[str, int] = {}
    loadavg_1m = 0.0
    for phase in phases:
        activity = phase.get("activity_after") or {}
        loadavg_1m = max(loadavg_1m, *(activity.get("loadavg") or [0.0])[:1])
        for name, count in (activity.get("processes") or {}).items():
            processes[name] = max(processes.get(name, 0), count)
    return {"max_loadavg_1m": loadavg_1m, "max_processes": processes}


def conclusion(results: dict[str, Any]) -> list[str]:
    """The recommendation, in words, from the recorded figures."""
    lines = []
    for target, choice in results["recommendation"].items():
        if choice["workers"] is None:
            lines.append(f"- {target}: no recommendation, {choice['reason']}.")
            continue
        lines.append(
            f"- {target}: {choice['workers']} worker(s): {_fmt(choice['throughput_rps'])} req/s at "
            f"{choice['at_concurrency']} clients (best of all worker counts: "
            f"{_fmt(choice['best_throughput_rps'])}), "
            f"p99 {_fmt(choice['p99_ms'])} ms; the fewest workers within {CLOSE_ENOUGH:.0%} of the best."
        )
    return lines


def write_results(results: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    """``<date>-load.json`` (every figure) and ``<date>-load.md`` (the table, the machine, the conclusion)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{results['date']}-load"
    json_path = results_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    machine, parameters, versions = results["machine"], results["parameters"], results["versions"]
    lines = [
        f"# Load test {results['date']}",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}, Elasticsearch {machine['elasticsearch']} "
        f"(1 node, {machine['es_heap_mb']} MB heap, same machine). "
        + ", ".join(f"{name} {value}" for name, value in sorted(versions.items()))
        + ".",
        "",
        "What was measured: real gunicorn (sync workers, `connector/service/gunicorn_conf.py`) on 127.0.0.1, "
        "driven by client threads of one Python process on the same machine (keep-alive connections; the "
        "sync worker closes each). Request mix, cycled: "
        + ", ".join(f"`{label}`" for label in parameters["request_mix"])
        + ". Each phase stops at "
        f"{parameters['max_requests_per_phase']:,} requests or {parameters['max_duration_s_per_phase']:g} s, "
        f"whichever comes first; {parameters['rounds']} rounds, interleaved round-robin (round, data set, "
        "clients, workers), so the worker counts share the same conditions. Latency percentiles are over "
        "every request of all rounds (nearest rank); throughput is the median of the rounds. Any non-2xx "
        "answer is an error. gunicorn CPU = CPU seconds of master and workers / wall time; machine busy = "
        "all CPUs (Elasticsearch, the clients and anything else running).",
        "",
        _activity_sentence(results["other_activity"]),
        "",
        "Data sets: "
        + "; ".join(
            f"{t['name']} ({t['events']:,} events, {t['days']} days, `{t['index']}`)"
            for t in results["targets"]
        )
        + ".",
        "",
        *table(results["configurations"]),
        "",
        f"Errors in total: {results['errors_total']} (warm-up errors: {len(results['warm_up_errors'])}).",
        "",
        "Worker peak RSS (VmHWM, MiB) per service: "
        + "; ".join(
            f"{count} worker(s): {', '.join(f'{kib / 1024:.0f}' for kib in values)}"
            for count, values in results["worker_peak_rss_kib"].items()
        )
        + ".",
        "",
        "## Conclusion",
        "",
        *conclusion(results),
        "",
    ]
    for item in results["configurations"]:
        for sample in item["error_samples"]:
            lines.append(
                f"- ERROR {item['target']} workers={item['workers']} clients={item['concurrency']}: {sample}"
            )
    md_path = results_dir / f"{stem}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _activity_sentence(activity: dict[str, Any]) -> str:
    processes = activity["max_processes"]
    others = processes.get("pytest", 0)
    seen = ", ".join(f"{name} {count}" for name, count in sorted(processes.items())) or "none"
    verdict = (
        "other test runs shared the machine, so absolute figures are noisy: compare rows of the same "
        "data set and client count"
        if others
        else "no other test run shared the machine"
    )
    return (
        f"Other activity, at most, after any phase: load average (1 min) {activity['max_loadavg_1m']:.2f}; "
        f"processes {seen} (java includes this run's node, gunicorn its services): {verdict}."
    )


def _numbers(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers, comma-separated")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scales", default=",".join(DEFAULT_SCALES), help="'sample' and/or 1x, 4x, 16x, tiny"
    )
    parser.add_argument(
        "--workers", type=_numbers, default=list(DEFAULT_WORKERS), help="gunicorn worker counts"
    )
    parser.add_argument(
        "--concurrency", type=_numbers, default=list(DEFAULT_CONCURRENCY), help="client threads"
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="interleaved repetitions")
    parser.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION_S, help="seconds per phase, at most"
    )
    parser.add_argument(
        "--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, help="requests per phase, at most"
    )
    add_node_options(parser)
    args = parser.parse_args(argv)
    scales = [scale.strip() for scale in args.scales.split(",") if scale.strip()]
    with elasticsearch_node(args.es_url, args.node_dir, args.heap_mb, args.keep_node) as es_url:
        results = run_load(
            es_url,
            scales=scales,
            workers=args.workers,
            concurrency=args.concurrency,
            rounds=args.rounds,
            max_requests=args.max_requests,
            duration_s=args.duration,
            results_dir=args.results_dir,
            workdir=args.node_dir / "service-logs",
        )
    print("\n".join(table(results["configurations"])))
    print("\n".join(conclusion(results)))
    print("recorded: " + ", ".join(results["files"]))
    return 1 if results["errors_total"] or results["warm_up_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
