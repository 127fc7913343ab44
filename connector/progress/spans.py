"""Which whole hours a "since the checkpoint" call analyses, and which it leaves owed. Pure.

Spans are whole UTC hours, one detection each, exactly as an hourly scheduler that never missed a run
would have asked for them; so a catch-up reports what the missed calls would have reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connector.errors import InvalidRangeError
from connector.timerange import TimeRange, isoformat_z

HOUR = timedelta(hours=1)
_BASELINE = re.compile(r"([1-9][0-9]{0,4})([dh])")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_baseline(text: str, *, path: str = "$.since_checkpoint.baseline") -> timedelta:
    """``7d`` or ``12h``: how far before each span its baseline starts."""
    match = _BASELINE.fullmatch(text)
    if match is None:
        message = f"{text!r} is not a baseline length; write a number of days or hours, e.g. 7d or 36h"
        raise InvalidRangeError(f"{path}: {message}", details=[{"path": path, "message": message}])
    amount = int(match[1])
    return timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)


@dataclass(frozen=True)
class SpanPlan:
    """The spans to analyse now (oldest first) and the whole hours left for later calls.

    :ivar start: where analysis resumes: the checkpoint, or the first start without one
    :ivar end: the end of the last whole hour asked for (``to`` rounded down to the hour)
    """

    start: datetime
    end: datetime
    spans: tuple[TimeRange, ...]
    owed: TimeRange | None

    @property
    def owed_spans(self) -> int:
        return 0 if self.owed is None else int(self.owed.duration / HOUR)

    def owed_to_dict(self) -> dict[str, object] | None:
        if self.owed is None:
            return None
        return {
            "from": isoformat_z(self.owed.start),
            "to": isoformat_z(self.owed.end),
            "spans": self.owed_spans,
        }


def plan_spans(
    *,
    checkpoint: datetime | None,
    initial_from: datetime | None,
    to: datetime,
    max_spans: int,
    baseline: timedelta | None,
    max_days: int,
) -> SpanPlan:
    """Hour-aligned spans from the checkpoint (or ``initial_from``, or the hour before ``to``) up to ``to``.

    A start after ``to`` (the checkpoint is ahead of the caller's clock) plans nothing: an hour is never
    analysed twice. At most ``max_spans`` are planned; the rest is owed.

    :raises InvalidRangeError: one span with its baseline would exceed ``max_days`` (CONNECTOR_MAX_RANGE_DAYS)
    """
    end = floor_hour(to)
    start = checkpoint if checkpoint is not None else floor_hour(initial_from or end - HOUR)
    if baseline is not None and baseline + HOUR > timedelta(days=max_days):
        path = "$.since_checkpoint.baseline"
        message = (
            f"a baseline of {baseline / timedelta(days=1):g} days and its hour exceed "
            f"{max_days} days (CONNECTOR_MAX_RANGE_DAYS); ask for a shorter baseline"
        )
        raise InvalidRangeError(f"{path}: {message}", details=[{"path": path, "message": message}])
    spans: list[TimeRange] = []
    moment = start
    while moment + HOUR <= end and len(spans) < max_spans:
        spans.append(TimeRange(moment, moment + HOUR))
        moment += HOUR
    owed = TimeRange(moment, end) if moment + HOUR <= end else None
    return SpanPlan(start=start, end=end, spans=tuple(spans), owed=owed)
