"""Probes and slow clients, measured per gunicorn worker class (issue 12): why the service runs gevent.

For each worker class (the configured one, gevent, and for comparison sync and gthread), on loopback:

(a) frozen node: with Elasticsearch stopped by SIGSTOP while ``2 x workers`` detections wait on it,
    ``/healthz`` and ``/readyz`` are each asked ``--probes`` times with a client timeout of
    ``--probe-timeout`` seconds; latencies and how many got no answer in time;
(b) slow clients: with ``--slow`` connections open (half idle, half sending a header a byte every
    0.5 s, reopened when the service closes them), ``/healthz`` latency and a dry-run detection's;
    and how many slow connections the service closed (its header timeout at work).

Every wait is bounded; the node is its own (it is frozen), started in a temporary directory and stopped
at the end. Results go to ``bench/results/<date>-probes.json`` and ``.md``.

    python bench/probes.py --worker-classes gevent,sync,gthread
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import select
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/ and connector/ live at the repository root
    sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from bench.load import latency_summary, load_sample  # noqa: E402
from bench.run import RESULTS_DIR, Service, gunicorn_service  # noqa: E402
from scripts import es_node  # noqa: E402

WORKERS = 2
SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
TRICKLE_EVERY_S = 0.5
DETECT_TIMEOUT_S = 60.0
# Extra gunicorn arguments per worker class; gthread gets 4 threads per worker.
WORKER_ARGS = {
    "gevent": ["-k", "gevent"],
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
}


def timed_get(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> tuple[int | None, float]:
    """(status, seconds); status ``None`` when no answer came within ``timeout_s``."""
    began = time.monotonic()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int | None = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    except (TimeoutError, urllib.error.URLError, OSError):
        status = None
    return status, time.monotonic() - began


def detect(service: Service, index: str, timeout_s: float) -> tuple[int | None, float]:
    body = json.dumps({"range": SAMPLE_RANGE, "index": index, "dry_run": True}).encode()
    request = urllib.request.Request(
        service.url + "/api/v1/detect",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {service.token}", "Content-Type": "application/json"},
    )
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status: int | None = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    except (TimeoutError, urllib.error.URLError, OSError):
        status = None
    return status, time.monotonic() - began


def probe_series(
    url: str, count: int, timeout_s: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    answers = [timed_get(url, timeout_s, headers) for _ in range(count)]
    answered = [seconds for status, seconds in answers if status is not None]
    return {
        "asked": count,
        "no_answer_within_timeout": count - len(answered),
        "statuses": sorted({str(status) for status, _ in answers}),
        "latency_ms": latency_summary(sorted(answered)),
    }


class SlowClients:
    """``count`` connections that never finish a request, kept at ``count``: half idle, half trickling."""

    def __init__(self, url: str, count: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"x" * 4000
        self.sockets = [socket.create_connection(self.address, timeout=5) for _ in range(count)]
        self.sent = [0] * count
        self.closed_by_service = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(TRICKLE_EVERY_S):
            readable, _, _ = select.select(self.sockets, [], [], 0)
            for position, sock in enumerate(self.sockets):
                if sock in readable:
                    sock.close()
                    self.closed_by_service += 1
                    with contextlib.suppress(OSError):
                        self.sockets[position] = socket.create_connection(self.address, timeout=5)
                    self.sent[position] = 0
                elif position % 2 == 0 and self.sent[position] < len(self.head):
                    with contextlib.suppress(OSError):
                        sock.send(self.head[self.sent[position] : self.sent[position] + 1])
                    self.sent[position] += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def measure(
    worker_class: str, node: es_node.RunningNode, index: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    results_index = f"outliers-probes-{uuid.uuid4().hex[:8]}"
    with gunicorn_service(
        node.url,
        allowed=index,
        results_index=results_index,
        workdir=workdir,
        workers=WORKERS,
        sample_memory=False,
        gunicorn_args=WORKER_ARGS[worker_class],
        settings={"CONNECTOR_ES_TIMEOUT_SECONDS": str(args.es_timeout)},
    ) as service:
        auth = {"Authorization": f"Bearer {service.token}"}
        warm = detect(service, index, DETECT_TIMEOUT_S)
        frozen: dict[str, Any] = {"in_flight_detections": 2 * WORKERS}
        with ThreadPoolExecutor(max_workers=2 * WORKERS) as pool:
            node.pause()
            try:
                calls = [pool.submit(detect, service, index, DETECT_TIMEOUT_S) for _ in range(2 * WORKERS)]
                time.sleep(1.0)
                frozen["healthz"] = probe_series(service.url + "/healthz", args.probes, args.probe_timeout)
                frozen["readyz"] = probe_series(
                    service.url + "/readyz", args.probes, args.probe_timeout, auth
                )
            finally:
                node.resume()
            frozen["detections_after_resume"] = sorted(str(call.result()[0]) for call in calls)
        slow = SlowClients(service.url, args.slow)
        try:
            time.sleep(1.0)
            slow_phase = {
                "connections": args.slow,
                "healthz": probe_series(service.url + "/healthz", args.probes, args.probe_timeout),
            }
            detections = [detect(service, index, args.detect_timeout) for _ in range(args.detections)]
            answered = [seconds for status, seconds in detections if status is not None]
            slow_phase["detect"] = {
                "asked": len(detections),
                "statuses": sorted(str(status) for status, _ in detections),
                "client_timeout_s": args.detect_timeout,
                "latency_ms": latency_summary(sorted(answered)),
            }
            time.sleep(args.hold)
            slow_phase["held_s"] = args.hold
        finally:
            slow.close()
        slow_phase["closed_by_service"] = slow.closed_by_service
        with contextlib.suppress(Exception):
            Elasticsearch(node.url).options(ignore_status=404).indices.delete(index=results_index)
    return {
        "worker_class": worker_class,
        "gunicorn_args": WORKER_ARGS[worker_class],
        "workers": WORKERS,
        "warm_detect": {"status": warm[0], "ms": round(warm[1] * 1000, 1)},
        "frozen_node": frozen,
        "slow_clients": slow_phase,
    }


def _fmt(summary: dict[str, Any], key: str) -> str:
    value = summary["latency_ms"].get(key)
    return "-" if value is None else f"{value:.0f}"


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| worker | frozen: /healthz p50/max ms (no answer) | frozen: /readyz p50/max ms (no answer) | "
        "slow: /healthz p50/max ms (no answer) | slow: detect statuses, p50 ms | slow conns closed |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        frozen, slow = row["frozen_node"], row["slow_clients"]
        cells = [
            row["worker_class"],
            f"{_fmt(frozen['healthz'], 'p50_ms')}/{_fmt(frozen['healthz'], 'max_ms')} "
            f"({frozen['healthz']['no_answer_within_timeout']}/{frozen['healthz']['asked']})",
            f"{_fmt(frozen['readyz'], 'p50_ms')}/{_fmt(frozen['readyz'], 'max_ms')} "
            f"({frozen['readyz']['no_answer_within_timeout']}/{frozen['readyz']['asked']})",
            f"{_fmt(slow['healthz'], 'p50_ms')}/{_fmt(slow['healthz'], 'max_ms')} "
            f"({slow['healthz']['no_answer_within_timeout']}/{slow['healthz']['asked']})",
            f"{', '.join(slow['detect']['statuses'])}; {_fmt(slow['detect'], 'p50_ms')}",
            str(slow["closed_by_service"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_results(results: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    stem = results_dir / f"{datetime.now(UTC):%Y-%m-%d}-probes"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    settings = results["settings"]
    md_path.write_text(
        "\n".join(
            [
                f"# Probes and slow clients per worker class ({results['date']})",
                "",
                f"Machine: {results['machine']}. Real gunicorn, {WORKERS} workers, on 127.0.0.1 against "
                "its own Elasticsearch node (the bundled sample).",
                "",
                f"Frozen: the node SIGSTOPped while {2 * WORKERS} detections wait on it "
                f"(CONNECTOR_ES_TIMEOUT_SECONDS={settings['es_timeout']}); each probe asked "
                f"{settings['probes']} times with a {settings['probe_timeout']} s client timeout.",
                "",
                f"Slow: {settings['slow']} connections open (half idle, half sending a header a byte "
                f"every {TRICKLE_EVERY_S} s, reopened when closed); /healthz asked {settings['probes']} "
                f"times and {settings['detections']} dry-run detections (client timeout "
                f"{settings['detect_timeout']} s); 'closed' counts slow connections the service dropped.",
                "",
                "Latencies in ms (p50/max); 'no answer': no answer within the client timeout.",
                "",
                *table(results["results"]),
                "",
            ]
        )
    )
    return json_path, md_path


@contextlib.contextmanager
def own_node(heap_mb: int) -> Iterator[es_node.RunningNode]:
    with tempfile.TemporaryDirectory(prefix="rcp-probes-", dir="/var/tmp") as workdir:
        node = es_node.start_node(Path(workdir), heap_mb=heap_mb)
        try:
            yield node
        finally:
            with contextlib.suppress(es_node.NodeError):
                node.resume()
            node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker-classes", default="gevent,sync,gthread")
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    parser.add_argument("--es-timeout", type=float, default=20.0)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--detections", type=int, default=3)
    parser.add_argument("--detect-timeout", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=6.0, help="seconds the slow connections stay after")
    parser.add_argument("--heap-mb", type=int, default=512)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    classes = [name.strip() for name in args.worker_classes.split(",") if name.strip()]
    rows = []
    with own_node(args.heap_mb) as node, tempfile.TemporaryDirectory(prefix="rcp-probes-logs-") as logs:
        client = Elasticsearch(node.url, request_timeout=60)
        index = load_sample(client, "osquery-probes-sample").index
        for worker_class in classes:
            print(f"measuring {worker_class}", file=sys.stderr)
            rows.append(measure(worker_class, node, index, Path(logs) / worker_class, args))
    results = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "settings": {key: value for key, value in vars(args).items() if key != "results_dir"},
        "results": rows,
    }
    json_path, md_path = write_results(results, args.results_dir)
    print("\n".join(table(rows)))
    print(f"recorded: {json_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
