"""Time bounds of a detection: ISO-8601 or Elasticsearch date math, resolved to aware UTC datetimes.

Pure: no clock is read here, ``now`` is always passed in, so a request resolves every bound against
one instant and tests are exact.

Accepted forms::

    2024-05-01T00:00:00Z  2024-05-01T02:00:00+02:00  2024-05-01   (ISO-8601; no offset means UTC)
    now  now-7d  now-1h/h  now/d  now+1M-2d/w
    2024-05-01T00:00:00Z||-1d/d                                    (an ISO anchor followed by ``||``)

Units are ``y`` years, ``M`` months, ``w`` weeks, ``d`` days, ``h``/``H`` hours, ``m`` minutes and
``s`` seconds; a missing number means 1 (``now-d``), as in Elasticsearch. Rounding (``/unit``) is done
in UTC; weeks start on Monday. Every bound must resolve to a four-digit year (1000 to 9999).

Rounding direction. The detection queries ``from <= @timestamp < to``. A ``from`` bound rounds
*down* (``now/d`` is today 00:00). A ``to`` bound rounds *up* to the end of the unit, like
Elasticsearch's inclusive ``lte``, and since our upper bound is exclusive that end is expressed as
the START of the next unit: ``to: now/d`` is tomorrow 00:00, so the whole of today is included.
An ISO ``to`` without rounding is taken as written (``to: 2024-05-01`` stops before May 1st).

Elasticsearch keeps dates in milliseconds, so every resolved instant is truncated to whole
milliseconds: the range a response reports is exactly the range that was queried.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from connector.errors import InvalidRangeError

#: Four-digit years only: what ISO-8601/RFC 3339 date-times and Elasticsearch's default date format
#: (``strict_date_optional_time``) can carry without an extension, and far beyond any process event.
MIN_YEAR = 1000
MAX_YEAR = 9999
_MILLISECOND = timedelta(milliseconds=1)
_MATH_OPERATION = re.compile(r"([+-])(\d{0,9})([yMwdhHms])|/([yMwdhHms])")
_ISO_START = re.compile(r"\d{4}")
_UNIT_NAMES = "y (years), M (months), w (weeks), d (days), h/H (hours), m (minutes), s (seconds)"
_ISO_EXAMPLE = "ISO-8601 (2024-05-01T00:00:00Z)"
_MATH_EXAMPLE = "Elasticsearch date math (now-7d, now/d, 2024-05-01T00:00:00Z||-1d)"


class TimeWindow(Protocol):
    """Anything with a start and an end, as the engines take a range."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class TimeRange:
    """``start <= t < end``, both aware UTC datetimes."""

    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def isoformat_z(moment: datetime) -> str:
    """``2024-05-01T00:00:00.000Z``: UTC, millisecond precision, as Elasticsearch prints dates.

    The year always has four digits (``strftime("%Y")`` prints year 999 as ``999``, which neither
    RFC 3339 nor Elasticsearch's ``strict_date_optional_time`` accepts).
    """
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as Elasticsearch keys date buckets."""
    return int(moment.timestamp() * 1000)


def resolve_time(text: str, *, now: datetime, round_up: bool, path: str = "$") -> datetime:
    """Resolve one bound to an aware UTC datetime (see the module docstring for the forms).

    :param now: the instant ``now`` stands for (naive means UTC).
    :param round_up: True for an exclusive upper bound: ``/unit`` then means the start of the next unit.
    :param path: JSON path of the value, used in the error details.
    :raises InvalidRangeError: with ``details=[{"path": path, "message": ...}]``.
    """
    stripped = text.strip()
    try:
        if stripped.startswith("now"):
            anchor = _utc(now)
            math_text = stripped[3:]
        elif "||" in stripped:
            anchor_text, _, math_text = stripped.partition("||")
            anchor = _parse_iso(anchor_text, path=path, original=text)
        else:
            anchor = _parse_iso(stripped, path=path, original=text)
            math_text = ""
        resolved = _truncate_to_millis(
            _apply_math(anchor, math_text, round_up=round_up, path=path, original=text)
        )
    except OverflowError:
        resolved = None
    if resolved is None or not MIN_YEAR <= resolved.year <= MAX_YEAR:
        raise _invalid(path, f"{text!r} is outside the supported dates (years {MIN_YEAR} to {MAX_YEAR})")
    return resolved


def resolve_range(
    from_text: str,
    to_text: str,
    *,
    now: datetime,
    max_days: int,
    path: str = "$.range",
) -> TimeRange:
    """Resolve ``from`` (rounded down) and ``to`` (rounded up, exclusive) and check the range.

    :raises InvalidRangeError: listing every problem (both bounds can be wrong at once), when a bound
        cannot be parsed, when ``to`` is not after ``from``, or when the range is longer than ``max_days``.
    """
    problems: list[dict[str, str]] = []
    start = end = None
    try:
        start = resolve_time(from_text, now=now, round_up=False, path=f"{path}.from")
    except InvalidRangeError as error:
        problems.extend(error.details)
    try:
        end = resolve_time(to_text, now=now, round_up=True, path=f"{path}.to")
    except InvalidRangeError as error:
        problems.extend(error.details)
    if start is None or end is None:
        raise InvalidRangeError(_summary(problems), details=problems)
    if end <= start:
        fix = "swap the two values" if end < start else "give a range that is not empty"
        message = (
            f"must be after from: to {to_text!r} resolves to {isoformat_z(end)}, "
            f"from {from_text!r} resolves to {isoformat_z(start)}; {fix}"
        )
        raise _invalid(f"{path}.to", message)
    if end - start > timedelta(days=max_days):
        days = (end - start) / timedelta(days=1)
        message = (
            f"the range spans {days:.1f} days ({isoformat_z(start)} to {isoformat_z(end)}); "
            f"the limit is {max_days} days (CONNECTOR_MAX_RANGE_DAYS)"
        )
        raise _invalid(path, message)
    return TimeRange(start, end)


def resolve_baseline(
    from_text: str,
    *,
    time_range: TimeRange,
    now: datetime,
    max_days: int,
    path: str = "$.baseline.from",
) -> datetime:
    """Resolve a baseline start (rounded down): it must lie before the range, within ``max_days`` of its end.

    :raises InvalidRangeError: with the baseline's path.
    """
    start = resolve_time(from_text, now=now, round_up=False, path=path)
    if start >= time_range.start:
        message = (
            f"must be before the range: {from_text!r} resolves to {isoformat_z(start)}, "
            f"the range starts at {isoformat_z(time_range.start)}"
        )
        raise _invalid(path, message)
    if time_range.end - start > timedelta(days=max_days):
        message = (
            f"baseline and range together span more than {max_days} days (CONNECTOR_MAX_RANGE_DAYS); "
            f"{from_text!r} resolves to {isoformat_z(start)}"
        )
        raise _invalid(path, message)
    return start


def _parse_iso(text: str, *, path: str, original: str) -> datetime:
    # fromisoformat also reads ordinal and week dates; a leading 4-digit year keeps out everything
    # that is clearly not a date (e.g. "yesterday", "-1d").
    if not _ISO_START.match(text):
        raise _invalid(path, f"{original!r} is neither {_ISO_EXAMPLE} nor {_MATH_EXAMPLE}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        message = f"{original!r} is not a valid ISO-8601 date ({error}); use {_ISO_EXAMPLE} or date math"
        raise _invalid(path, message) from None
    return _utc(parsed)


def _apply_math(anchor: datetime, math_text: str, *, round_up: bool, path: str, original: str) -> datetime:
    moment = anchor
    rounded_up = False
    position = 0
    while position < len(math_text):
        match = _MATH_OPERATION.match(math_text, position)
        if match is None:
            message = (
                f"{original!r}: cannot read date math at {math_text[position:]!r}; write +N<unit>, "
                f"-N<unit> or /<unit> with units {_UNIT_NAMES}"
            )
            raise _invalid(path, message)
        sign, amount, unit, rounding_unit = match.groups()
        if rounding_unit is not None:
            moment = _floor(moment, rounding_unit)
            if round_up:
                # Elasticsearch's inclusive end of the unit (its last millisecond); we add the
                # millisecond back at the end, which yields the start of the next unit.
                moment = _add(moment, rounding_unit, 1) - _MILLISECOND
                rounded_up = True
        else:
            count = int(amount) if amount else 1
            moment = _add(moment, unit, count if sign == "+" else -count)
        position = match.end()
    if rounded_up:
        moment = _truncate_to_millis(moment) + _MILLISECOND
    return moment


def _add(moment: datetime, unit: str, count: int) -> datetime:
    if unit == "y":
        return _add_months(moment, 12 * count)
    if unit == "M":
        return _add_months(moment, count)
    step = {
        "w": timedelta(weeks=1),
        "d": timedelta(days=1),
        "h": timedelta(hours=1),
        "H": timedelta(hours=1),
        "m": timedelta(minutes=1),
        "s": timedelta(seconds=1),
    }[unit]
    return moment + step * count


def _add_months(moment: datetime, months: int) -> datetime:
    # Like java.time plusMonths (used by Elasticsearch): the day is clamped to the target month's length.
    month_index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(month_index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("year out of range")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _floor(moment: datetime, unit: str) -> datetime:
    if unit == "y":
        return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "w":
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=midnight.weekday())
    if unit == "d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit in ("h", "H"):
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "m":
        return moment.replace(second=0, microsecond=0)
    return moment.replace(microsecond=0)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _truncate_to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def _invalid(path: str, message: str) -> InvalidRangeError:
    return InvalidRangeError(f"{path}: {message}", details=[{"path": path, "message": message}])


def _summary(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{problem['path']}: {problem['message']}" for problem in problems)
