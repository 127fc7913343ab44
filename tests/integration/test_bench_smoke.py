"""The benchmark's smallest configuration, end to end: the same code paths as ``bench/run.py``.

Loader (straight from the generator, seed rule checked), real gunicorn, (a) detect, (b) the floor
replay, (c) the scan baseline in its own process, (d) the rarechild call and (e) its floor, the results
files. Correctness only: no timings
are asserted (CONTRIBUTING.md), only that each measurement produced a number.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import load as bench_load  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.loader import DataSet, ensure_loaded, planted_and_whitelisted  # noqa: E402


@pytest.fixture
def bench_prefix(es_client: Elasticsearch) -> Iterator[str]:
    """A unique index prefix under osquery-bench-; its data and results indices are deleted after."""
    prefix = f"{bench_run.INDEX_PREFIX}smoke{uuid.uuid4().hex[:12]}-"
    yield prefix
    suffix = prefix.removeprefix(bench_run.INDEX_PREFIX)
    es_client.options(ignore_status=404).indices.delete(
        index=f"{prefix}*,{bench_run.RESULTS_INDEX_PREFIX}{suffix}*", expand_wildcards="all"
    )


def _positive(value: Any) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def test_smallest_benchmark_finds_the_planted_children_and_records_every_measurement(
    es_url: str, bench_prefix: str, tmp_path: Path
) -> None:
    """One repeat at the tiny scale: planted children found, whitelisted ones not, (a), (b), (c) and
    the service's memory measured, and the JSON and markdown results written."""
    results = bench_run.run_benchmark(
        es_url,
        scales=["tiny"],
        repeats=1,
        scan_repeats=1,
        results_dir=tmp_path / "results",
        index_prefix=bench_prefix,
        workdir=tmp_path / "logs",
    )

    (scale,) = results["results"]
    planted, whitelisted = planted_and_whitelisted()
    found = {tuple(item.split(" -> ")) for item in scale["outliers"]}
    assert scale["problems"] == []
    assert found == planted
    assert not found & whitelisted
    assert scale["outliers_total"] == len(planted)
    assert scale["data_set"]["events"] == DataSet.tiny().total_events
    assert scale["load"]["skipped"] is False
    assert _positive(scale["a"]["first_s"])
    assert len(scale["a"]["cold_s"]) == len(scale["a"]["warm_s"]) == 1
    assert _positive(scale["a"]["cold_median_s"]) and _positive(scale["a"]["warm_median_s"])
    assert _positive(scale["b"]["cold_median_s"]) and _positive(scale["b"]["warm_median_s"])
    assert scale["b"]["cold"][0]["composite_pages"] >= 1
    assert scale["b"]["cold"][0]["fetched_documents"] == len(planted) + len(whitelisted)
    (scan,) = scale["c"]["runs"]
    assert _positive(scan["seconds"])
    assert scan["events_read"] == DataSet.tiny().total_events
    assert {tuple(pair) for pair in scan["outlier_pairs"]} == planted
    assert _positive(scale["c"]["peak_kib"])
    assert _positive(scale["service_memory_kib"]["peak_hwm"])
    assert all(_positive(value) for value in scale["ratios"].values())
    rarechild = scale["rarechild"]
    for key in ("d_cold_median_s", "d_warm_median_s", "e_cold_median_s", "e_warm_median_s"):
        assert _positive(rarechild[key]), key
    assert rarechild["e_cold"][0]["composite_pages"] >= 1
    # the floor fetches exactly the events of the alerts the service reported
    assert {tuple(item.split(" -> ")) for item in rarechild["alerts"]} >= {("winword.exe", "cmd.exe")}

    json_path, md_path = (Path(path) for path in results["files"])
    assert json_path.parent == md_path.parent == tmp_path / "results"
    assert json.loads(json_path.read_text())["results"][0]["outliers"] == scale["outliers"]
    assert "| tiny | 5,280 |" in md_path.read_text()


def test_the_hourly_case_times_every_baseline_raw_and_with_the_summary(
    es_url: str, bench_prefix: str, tmp_path: Path
) -> None:
    """bench/run.py --case hourly at the tiny scale: five cases per model, the summary's answers equal the
    raw ones (a difference is a recorded problem), the JSON and markdown files written."""
    results = bench_run.run_hourly(
        es_url, scales=["tiny"], repeats=1, results_dir=tmp_path / "results", index_prefix=bench_prefix
    )
    assert [item["model"] for item in results["results"]] == ["terms", "rarechild"]
    for item in results["results"]:
        assert item["problems"] == []
        assert sorted((case["baseline"], case["mode"]) for case in item["cases"]) == [
            ("30d", "raw"),
            ("30d", "summary"),
            ("7d", "raw"),
            ("7d", "summary"),
            ("none", "raw"),
        ]
        assert all(_positive(case["median_s"]) for case in item["cases"])
        by_case = {(case["baseline"], case["mode"]): case for case in item["cases"]}
        assert (
            by_case[("30d", "raw")]["events_analyzed"]
            == by_case[("30d", "summary")]["events_analyzed"]
            == 5280
        )
    assert set(results["summary"]["summary_30d_over_no_baseline"]) == {"terms", "rarechild"}
    assert all(Path(path).is_file() for path in results["files"])
    table = Path(results["files"][1]).read_text()
    assert "| tiny | terms |" in table and "| tiny | rarechild |" in table


def test_loader_skips_a_set_it_already_holds_and_reloads_a_changed_one(
    es_client: Elasticsearch, bench_prefix: str
) -> None:
    """The set's identity in the mapping's _meta plus the document count decide: same set skipped,
    another seed reloaded."""
    index = f"{bench_prefix}loader"
    first = ensure_loaded(es_client, DataSet.tiny(), index)
    again = ensure_loaded(es_client, DataSet.tiny(), index)
    other = ensure_loaded(es_client, DataSet.tiny(seed=8), index)

    assert (first.skipped, again.skipped, other.skipped) == (False, True, False)
    assert again.content_sha256 == first.content_sha256 != other.content_sha256
    settings = es_client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert "refresh_interval" not in settings  # back to the default after the load
    assert es_client.count(index=index)["count"] == DataSet.tiny().total_events


def test_load_runner_drives_real_gunicorn_with_concurrent_clients_and_reports_zero_errors(
    es_url: str, bench_prefix: str, tmp_path: Path
) -> None:
    """Ten requests from two clients against one real gunicorn worker over the sample: every request
    answered 2xx, the count bound respected, every reported figure present; the results files written."""
    results = bench_load.run_load(
        es_url,
        scales=["sample"],
        workers=[1],
        concurrency=[2],
        rounds=1,
        max_requests=10,
        duration_s=120.0,
        results_dir=tmp_path / "results",
        workdir=tmp_path / "logs",
        index_prefix=bench_prefix,
    )

    assert results["warm_up_errors"] == []
    assert results["errors_total"] == 0
    (configuration,) = results["configurations"]
    assert configuration["target"] == "sample"
    assert (configuration["workers"], configuration["concurrency"]) == (1, 2)
    assert configuration["requests"] == 10
    assert configuration["errors"] == 0 and configuration["error_samples"] == []
    assert _positive(configuration["throughput_rps_median"])
    latency = configuration["latency"]
    assert all(_positive(latency[key]) for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
    assert latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert _positive(configuration["detect_latency"]["p50_ms"])
    assert configuration["service_cpu_cores_median"] >= 0
    (target,) = results["targets"]
    assert target["events"] == 5280
    assert results["recommendation"]["sample"]["workers"] == 1

    json_path, md_path = (Path(path) for path in results["files"])
    assert json_path.name.endswith("-load.json") and md_path.name.endswith("-load.md")
    assert json.loads(json_path.read_text())["configurations"][0]["requests"] == 10
    assert "| sample | 1 | 2 | 10 | 0 |" in md_path.read_text()


def test_load_phase_stops_at_its_duration_before_its_request_count(es_url: str, tmp_path: Path) -> None:
    """The duration bound holds on its own: a zero-second phase starts no request."""
    with bench_run.gunicorn_service(
        es_url, allowed="osquery-bench-none-*", results_index="outliers-bench-none", workdir=tmp_path
    ) as service:
        phase = bench_load.run_phase(
            service,
            [bench_load.RequestSpec("readyz", "GET", "/readyz")],
            concurrency=2,
            max_requests=1000,
            duration_s=0.0,
        )
    assert phase["requests"] == 0 and phase["errors"] == 0
