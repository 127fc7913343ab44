"""A "since the checkpoint" call: take the lease, detect each owed hour in turn, move the checkpoint.

Each span is one ordinary detection (``detect``), with the baseline the hourly call would have had. The
checkpoint moves only after a span's detection and its write-back completed; a span whose write-back
failed stops the call and stays owed, so a retry (or the next scheduled call) analyses it again, and its
deterministic result ids keep that from duplicating anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from connector.progress.checkpoints import Checkpoint, CheckpointStore
from connector.progress.spans import SpanPlan, plan_spans
from connector.results import AnnotateMode, WriteReport
from connector.results.report import MAX_REPORTED_ERRORS
from connector.timerange import TimeRange, isoformat_z

log = logging.getLogger(__name__)


class SpanDetection(Protocol):
    """What :func:`connector.engine.detect_in_elasticsearch` returns, as far as a catch-up needs it."""

    annotation: WriteReport

    def to_response(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CatchUpRequest:
    """The ``since_checkpoint`` object of a request, resolved."""

    use_case: str
    index: str
    to: datetime
    initial_from: datetime | None
    baseline: timedelta | None
    max_spans: int
    annotate: AnnotateMode
    dry_run: bool
    results_index: str
    max_outliers: int
    summary: bool = True


@dataclass(frozen=True)
class CatchUp:
    """What one call analysed: the plan, the detections of the spans done, the checkpoint after."""

    request: CatchUpRequest
    plan: SpanPlan
    previous: datetime | None
    detections: tuple[tuple[TimeRange, datetime | None, SpanDetection], ...]
    checkpoint: Checkpoint | None
    checkpoint_index: str
    stopped_early: bool

    @property
    def annotation_failed(self) -> bool:
        return any(detection.annotation.failed for _, _, detection in self.detections)

    @property
    def owed(self) -> TimeRange | None:
        """What is left: after the last span done, up to the plan's end."""
        done_to = self.detections[-1][0].end if self.detections else self.plan.start
        if self.stopped_early and self.detections:
            done_to = self.detections[-1][0].start  # its write-back failed: still owed
        return TimeRange(done_to, self.plan.end) if done_to < self.plan.end else None

    def to_response(self) -> dict[str, Any]:
        """The detect response (detect-response.schema.json) over every span, plus ``checkpoint``."""
        request = self.request
        answers = [detection.to_response() for _, _, detection in self.detections]
        outliers = [outlier for answer in answers for outlier in answer["outliers"]]
        first = self.detections[0] if self.detections else None
        last = self.detections[-1] if self.detections else None
        resumed = self.plan.start
        body: dict[str, Any] = {
            "use_case": request.use_case,
            "index": request.index,
            "range": {
                "from": isoformat_z(first[0].start if first else resumed),
                "to": isoformat_z(last[0].end if last else resumed),
            },
            "baseline": {"from": isoformat_z(first[1])} if first and first[1] else None,
            # every span reads the same index with the same use case: the profile of the last one
            "profile": answers[-1]["profile"] if answers else None,
            "events_analyzed": sum(answer["events_analyzed"] for answer in answers),
            "aggregators": max((answer["aggregators"] for answer in answers), default=0),
            "outliers_total": sum(answer["outliers_total"] for answer in answers),
            "outliers": outliers[: request.max_outliers],
            "annotation": self._annotation(answers),
            "took_ms": sum(answer["took_ms"] for answer in answers),
            "checkpoint": self._checkpoint(answers),
        }
        if answers and "model" in answers[0]:
            body["model"] = answers[0]["model"]
            body["pairs_above_threshold"] = sum(answer["pairs_above_threshold"] for answer in answers)
        return body

    def _annotation(self, answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not answers:
            request = self.request
            empty = WriteReport(
                mode=request.annotate,
                index=request.results_index if request.annotate is AnnotateMode.RESULTS_INDEX else None,
                dry_run=request.dry_run,
                written=0,
                unchanged=0,
                failed=0,
            )
            return empty.to_dict()
        merged = dict(answers[0]["annotation"])
        for key in ("written", "unchanged", "failed"):
            merged[key] = sum(answer["annotation"][key] for answer in answers)
        merged["errors"] = [e for answer in answers for e in answer["annotation"]["errors"]][
            :MAX_REPORTED_ERRORS
        ]
        outcomes = {answer["annotation"]["outcome"] for answer in answers}
        merged["outcome"] = next(
            (outcome for outcome in ("failed", "partial", "complete", "skipped") if outcome in outcomes),
            "complete",
        )
        if merged["outcome"] == "failed" and len(outcomes) > 1:
            merged["outcome"] = "partial"
        return merged

    def _checkpoint(self, answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
        owed = self.owed
        stored = self.checkpoint
        return {
            "id": stored.id if stored else None,
            "index": self.checkpoint_index,
            "previous": isoformat_z(self.previous) if self.previous else None,
            "analysed_to": isoformat_z(stored.analysed_to) if stored and stored.analysed_to else None,
            "advanced": bool(stored and stored.analysed_to and stored.analysed_to != self.previous),
            "spans": [
                {
                    "from": isoformat_z(span.start),
                    "to": isoformat_z(span.end),
                    "baseline_from": isoformat_z(baseline) if baseline else None,
                    "events_analyzed": answer["events_analyzed"],
                    "outliers_total": answer["outliers_total"],
                    "annotation_outcome": answer["annotation"]["outcome"],
                }
                for (span, baseline, _), answer in zip(self.detections, answers, strict=True)
            ],
            "owed": None
            if owed is None
            else {
                "from": isoformat_z(owed.start),
                "to": isoformat_z(owed.end),
                "spans": int(owed.duration / timedelta(hours=1)),
            },
        }


def catch_up(
    store: CheckpointStore,
    request: CatchUpRequest,
    *,
    detect: Callable[[TimeRange, datetime | None], SpanDetection],
    holder: str,
    lease: timedelta,
    clock: Callable[[], datetime],
    max_days: int,
    seconds_left: Callable[[], float | None] = lambda: None,
) -> CatchUp:
    """Analyse the owed hours of ``request`` one span at a time, moving the checkpoint after each.

    A dry run reads the checkpoint and neither takes the lease nor moves it. A span is not started when
    ``seconds_left`` (the request's deadline) is under twice the longest span so far: the rest is owed
    rather than cut off by the deadline.

    :raises CheckpointBusyError: another call holds the lease: nothing was analysed
    :raises CheckpointConflictError: another call took over while this one ran (its spans stay written)
    """
    if request.dry_run:
        checkpoint = store.read(request.use_case, request.index)
    else:
        checkpoint = store.acquire(request.use_case, request.index, holder=holder, now=clock(), lease=lease)
    previous = checkpoint.analysed_to if checkpoint else None
    done: list[tuple[TimeRange, datetime | None, SpanDetection]] = []
    stopped = False
    longest = 0.0
    try:  # from the lease on: a refused plan (InvalidRangeError) gives the lease back too
        plan = plan_spans(
            checkpoint=previous,
            initial_from=request.initial_from,
            to=request.to,
            max_spans=request.max_spans,
            baseline=request.baseline,
            max_days=max_days,
        )
        for span in plan.spans:
            left = seconds_left()
            if done and left is not None and left < 2 * longest:
                log.info("catch-up of %s: deadline near, %s onwards stays owed", request.use_case, span.start)
                break
            began = time.monotonic()
            baseline_start = span.start - request.baseline if request.baseline else None
            detection = detect(span, baseline_start)
            done.append((span, baseline_start, detection))
            longest = max(longest, time.monotonic() - began)
            if detection.annotation.failed:
                stopped = True  # its write-back is incomplete: the span stays owed
                log.warning(
                    "catch-up of %s stopped at %s: write-back incomplete", request.use_case, span.start
                )
                break
            if checkpoint is not None and not request.dry_run:
                checkpoint = store.advance(checkpoint, to=span.end, now=clock())
    finally:
        if checkpoint is not None and not request.dry_run:
            store.release(checkpoint, now=clock())
    return CatchUp(
        request=request,
        plan=plan,
        previous=previous,
        detections=tuple(done),
        checkpoint=checkpoint,
        checkpoint_index=store.index,
        stopped_early=stopped,
    )
