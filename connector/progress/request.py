"""The ``since_checkpoint`` object of a detect request, resolved against one instant. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector.progress.catch_up import CatchUpRequest
from connector.progress.spans import parse_baseline
from connector.results import AnnotateMode
from connector.timerange import resolve_time


def resolve_catch_up(
    body: Mapping[str, Any],
    *,
    use_case: str,
    index: str,
    now: datetime,
    max_spans: int,
    annotate: AnnotateMode,
    dry_run: bool,
    results_index: str,
    max_outliers: int,
) -> CatchUpRequest:
    """``to`` (default now) and ``initial_from`` are date math or ISO-8601, rounded down to the hour later;
    ``max_spans`` is capped by ``CONNECTOR_CATCH_UP_MAX_SPANS``.

    :raises InvalidRangeError: a bound or the baseline cannot be read
    """
    path = "$.since_checkpoint"
    to = resolve_time(body.get("to", "now"), now=now, round_up=False, path=f"{path}.to")
    initial = body.get("initial_from")
    initial_from = (
        None
        if initial is None
        else resolve_time(initial, now=now, round_up=False, path=f"{path}.initial_from")
    )
    baseline = body.get("baseline")
    return CatchUpRequest(
        use_case=use_case,
        index=index,
        to=to,
        initial_from=initial_from,
        baseline=None if baseline is None else parse_baseline(baseline, path=f"{path}.baseline"),
        max_spans=min(int(body.get("max_spans", max_spans)), max_spans),
        annotate=annotate,
        dry_run=dry_run,
        results_index=results_index,
        max_outliers=max_outliers,
        summary=bool(body.get("summary", True)),
    )
