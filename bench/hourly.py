"""The hourly case of the benchmark (issue 13): one scheduled call for the last hour of a data set.

Per scale, in the same run and against the same node: the call with no baseline, and with a 7-day and a
30-day baseline, each counted raw (the whole baseline recounted) and with the baseline summary
(``connector/progress/``: whole baseline hours read back, only the new hour counted). Every call is cold
(request cache cleared; the summary index refreshed, as it is by the hour after a write) and goes through
the engine as the service runs it (``detect_in_elasticsearch``, annotate ``none``: the write-back is the
same for all cases). The summary is primed by one call first,
as the previous hourly calls would have written it. The counts of both paths are compared on every
call (the outliers must be the same), so a fast wrong answer cannot pass.

    python bench/run.py --case hourly --scales 1,16 --repeats 5
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from elasticsearch import Elasticsearch

from bench.loader import DataSet, describe, ensure_loaded
from connector.config import RareChildUseCase, load_use_case
from connector.engine import detect_in_elasticsearch
from connector.progress.summary import SummaryStore
from connector.timerange import TimeRange, isoformat_z

HOUR = timedelta(hours=1)
BASELINES: tuple[tuple[str, timedelta | None], ...] = (
    ("none", None),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
SUMMARY_INDEX_PREFIX = "outliers-bench-summary-"


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def _fingerprint(answer: dict[str, Any]) -> str:
    """What must not differ between raw and summarised counting: the whole answer but its timing."""
    return json.dumps({key: value for key, value in answer.items() if key != "took_ms"}, sort_keys=True)


def bench_hourly_scale(
    client: Elasticsearch,
    data_set: DataSet,
    *,
    repeats: int,
    index: str,
    use_case_path: Any,
    section: str | None = None,
) -> dict[str, Any]:
    """Load (once), then time the last-hour call with each baseline, raw and with the summary."""
    print(f"[{data_set.name}] hourly: loading {data_set.total_events:,} events into {index}", file=sys.stderr)
    load = ensure_loaded(client, data_set, index)
    print(f"[{data_set.name}] {describe(load)}", file=sys.stderr)
    use_case = load_use_case(use_case_path, section)
    model = "rarechild" if isinstance(use_case, RareChildUseCase) else "terms"
    span = TimeRange(data_set.end - HOUR, data_set.end)
    summary_index = f"{SUMMARY_INDEX_PREFIX}{data_set.name}-{model}"
    client.options(ignore_status=404).indices.delete(index=summary_index)
    # Primed whole by one call, as a run of hourly calls would have filled it (each stores FILL_HOURS).
    store = SummaryStore(client, summary_index, fill_hours=10**6)

    def detect(baseline: timedelta | None, summary: SummaryStore | None) -> dict[str, Any]:
        client.indices.clear_cache(index=index, request=True)
        if summary is not None and client.indices.exists(index=summary_index):
            # As the hour since the previous call would have (the index refreshes every second): else
            # the read right after the previous repeat's write would pay for a refresh.
            client.indices.refresh(index=summary_index)
        detection = detect_in_elasticsearch(
            client,
            use_case,
            index=index,
            time_range=span,
            baseline_start=None if baseline is None else span.start - baseline,
            annotate="none",
            summary=summary,
        )
        return detection.to_response()

    cases: list[dict[str, Any]] = []
    problems: list[str] = []
    for name, baseline in BASELINES:
        modes: list[tuple[str, SummaryStore | None]] = [("raw", None)]
        if baseline is not None:
            detect(baseline, store)  # priming: what the earlier hourly calls would have stored
            modes.append(("summary", store))
        answers: dict[str, dict[str, Any]] = {}
        for mode, summary in modes:
            times = []
            for _ in range(repeats):
                seconds, answer = _timed(lambda: detect(baseline, summary))  # noqa: B023
                times.append(seconds)
                answers[mode] = answer
            cases.append(
                {
                    "baseline": name,
                    "mode": mode,
                    "median_s": statistics.median(times),
                    "runs_s": times,
                    "events_analyzed": answers[mode]["events_analyzed"],
                    "outliers": len(answers[mode]["outliers"]),
                }
            )
        if "summary" in answers and _fingerprint(answers["raw"]) != _fingerprint(answers["summary"]):
            problems.append(f"{data_set.name} {model} {name}: the summary changed the answer")
    client.options(ignore_status=404).indices.delete(index=summary_index)
    none = next(case["median_s"] for case in cases if case["baseline"] == "none")
    for case in cases:
        case["over_no_baseline"] = case["median_s"] / none if none else None
    return {
        "scale": data_set.name,
        "model": model,
        "use_case": use_case.section,
        "events": load.events,
        "days": data_set.days,
        "span": {"from": isoformat_z(span.start), "to": isoformat_z(span.end)},
        "cases": cases,
        "problems": problems,
    }


def hourly_table(scales: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| scale | model | events (days) | baseline | raw | with summary | raw / no baseline "
        "| summary / no baseline | events counted | outliers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in scales:
        by_case = {(case["baseline"], case["mode"]): case for case in item["cases"]}
        for name, _ in BASELINES:
            raw = by_case[(name, "raw")]
            summary = by_case.get((name, "summary"))
            lines.append(
                f"| {item['scale']} | {item.get('model', 'terms')} "
                f"| {item['events']:,} ({item['days']} d) | {name} "
                f"| {raw['median_s']:.3f} s | "
                + (f"{summary['median_s']:.3f} s" if summary else "-")
                + f" | {raw['over_no_baseline']:.2f} | "
                + (f"{summary['over_no_baseline']:.2f}" if summary else "-")
                + f" | {raw['events_analyzed']:,} | {raw['outliers']} |"
            )
    return lines


def hourly_summary(scales: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The goal: with the summary, the 30-day call costs at most 2x the call with no baseline (16x)."""
    ratios: dict[str, dict[str, float]] = {}
    for item in scales:
        for case in item["cases"]:
            if case["baseline"] == "30d" and case["mode"] == "summary":
                ratios.setdefault(item.get("model", "terms"), {})[item["scale"]] = case["over_no_baseline"]
    terms = ratios.get("terms", {})
    return {
        "summary_30d_over_no_baseline": ratios,
        "targets": {"summary_30d_le_2x_at_16x": None if "16x" not in terms else terms["16x"] <= 2.0},
    }
