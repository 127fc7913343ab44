"""Time bounds: ISO-8601 and Elasticsearch date math, rounding direction, range checks with JSON paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import InvalidRangeError
from connector.timerange import TimeRange, isoformat_z, resolve_baseline, resolve_range, resolve_time

# A Wednesday, mid-month, with sub-millisecond digits to show truncation.
NOW = datetime(2024, 5, 15, 13, 45, 30, 123456, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T00:00:00Z", utc(2024, 5, 1)),
        ("2024-05-01T00:00:00", utc(2024, 5, 1)),
        ("2024-05-01", utc(2024, 5, 1)),
        ("2024-05-01T02:30:00+02:00", utc(2024, 5, 1, 0, 30)),
        ("2024-05-01T10:00:00.123Z", utc(2024, 5, 1, 10, 0, 0, 123000)),
        ("2024-05-01T10:00:00.123999Z", utc(2024, 5, 1, 10, 0, 0, 123000)),
        ("2024-04-30T22:00:00-05:00", utc(2024, 5, 1, 3)),
        ("  2024-05-01T00:00:00Z ", utc(2024, 5, 1)),
    ],
    ids=[
        "z",
        "naive-is-utc",
        "date-only",
        "offset",
        "millis",
        "micros-truncated",
        "negative-offset",
        "spaces",
    ],
)
def test_iso_8601_bounds_resolve_to_utc(text, expected):
    """ISO-8601 with or without offset (naive = UTC) resolves exactly, truncated to milliseconds."""
    resolved = resolve_time(text, now=NOW, round_up=False)
    assert resolved == expected
    assert resolved.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "round_up", "expected"),
    [
        ("now", False, utc(2024, 5, 15, 13, 45, 30, 123000)),
        ("now", True, utc(2024, 5, 15, 13, 45, 30, 123000)),
        ("now-7d", False, utc(2024, 5, 8, 13, 45, 30, 123000)),
        ("now+1h", False, utc(2024, 5, 15, 14, 45, 30, 123000)),
        ("now-d", False, utc(2024, 5, 14, 13, 45, 30, 123000)),
        ("now-90m", False, utc(2024, 5, 15, 12, 15, 30, 123000)),
        ("now-30s", False, utc(2024, 5, 15, 13, 45, 0, 123000)),
        ("now-2H", False, utc(2024, 5, 15, 11, 45, 30, 123000)),
        ("now-1w", False, utc(2024, 5, 8, 13, 45, 30, 123000)),
        ("now-1h/h", False, utc(2024, 5, 15, 12)),
        ("now-1h/h", True, utc(2024, 5, 15, 13)),
        ("now/d", False, utc(2024, 5, 15)),
        ("now/d", True, utc(2024, 5, 16)),
        ("now/w", False, utc(2024, 5, 13)),
        ("now/w", True, utc(2024, 5, 20)),
        ("now/M", False, utc(2024, 5, 1)),
        ("now/M", True, utc(2024, 6, 1)),
        ("now/y", False, utc(2024, 1, 1)),
        ("now/y", True, utc(2025, 1, 1)),
        ("now/m", True, utc(2024, 5, 15, 13, 46)),
        ("now/s", False, utc(2024, 5, 15, 13, 45, 30)),
        ("now-1M/M", False, utc(2024, 4, 1)),
        ("2024-05-01T00:00:00Z||-1d/d", False, utc(2024, 4, 30)),
        ("2024-05-01T00:00:00Z||-1d/d", True, utc(2024, 5, 1)),
        ("2024-05-01T10:00:00Z||+1d", False, utc(2024, 5, 2, 10)),
        ("2024-01-31T00:00:00Z||+1M", False, utc(2024, 2, 29)),
        ("2024-02-29||+1y", False, utc(2025, 2, 28)),
        ("2024-05-01||", False, utc(2024, 5, 1)),
        ("now/d/h", True, utc(2024, 5, 16)),
    ],
    ids=[
        "now",
        "now-round-up-unchanged",
        "minus-days",
        "plus-hours",
        "implicit-one",
        "minutes",
        "seconds",
        "capital-H",
        "weeks",
        "round-hour-down",
        "round-hour-up",
        "round-day-down",
        "round-day-up-is-next-midnight",
        "week-starts-monday",
        "week-up-next-monday",
        "month-down",
        "month-up",
        "year-down",
        "year-up",
        "minute-up",
        "second-down",
        "last-month",
        "anchor-down",
        "anchor-up",
        "anchor-plus",
        "month-end-clamped",
        "leap-day-clamped",
        "anchor-without-math",
        "double-rounding-up",
    ],
)
def test_date_math(text, round_up, expected):
    """Elasticsearch date math: arithmetic, then rounding down (from) or to the next unit's start (to)."""
    assert resolve_time(text, now=NOW, round_up=round_up) == expected


def test_rounding_up_at_a_boundary_still_moves_to_the_next_unit():
    """Like Elasticsearch's lte, to: now/d at exactly midnight covers that whole day (ends next midnight)."""
    midnight = utc(2024, 5, 15)
    assert resolve_time("now/d", now=midnight, round_up=True) == utc(2024, 5, 16)
    assert resolve_time("now/d", now=midnight, round_up=False) == midnight


def test_naive_now_is_taken_as_utc():
    """A naive ``now`` means UTC, not the machine's local zone."""
    assert resolve_time("now", now=datetime(2024, 5, 1, 12), round_up=False) == utc(2024, 5, 1, 12)


def test_rounding_happens_in_utc_for_an_anchor_with_offset():
    """``/d`` of 2024-05-01T01:00+02:00 (= Apr 30 23:00 UTC) rounds to Apr 30 00:00 UTC."""
    assert resolve_time("2024-05-01T01:00:00+02:00||/d", now=NOW, round_up=False) == utc(2024, 4, 30)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("yesterday", "is neither ISO-8601"),
        ("", "is neither ISO-8601"),
        ("-1d", "is neither ISO-8601"),
        ("now-7x", "cannot read date math at '-7x'"),
        ("now-7", "cannot read date math at '-7'"),
        ("now 7d", "cannot read date math at ' 7d'"),
        ("nowhere", "cannot read date math at 'here'"),
        ("2024-13-01", "is not a valid ISO-8601 date (month must be in 1..12)"),
        ("2024-05-01T00:00:00Z||+1q", "cannot read date math at '+1q'"),
        ("bad||-1d", "is neither ISO-8601"),
        ("9999-12-31||+1y", "outside the supported dates"),
        ("now-999999999w", "outside the supported dates"),
        ("0001-01-01T00:00:00+01:00", "outside the supported dates"),
        ("0999-12-31", "outside the supported dates (years 1000 to 9999)"),
        ("1000-01-01||-1d", "outside the supported dates (years 1000 to 9999)"),
    ],
    ids=[
        "word",
        "empty",
        "math-without-anchor",
        "bad-unit",
        "missing-unit",
        "space",
        "now-prefix-only",
        "bad-month",
        "anchor-bad-unit",
        "bad-anchor",
        "year-overflow",
        "week-overflow",
        "offset-underflow",
        "three-digit-year",
        "math-below-year-1000",
    ],
)
def test_bad_bounds_raise_invalid_range_with_the_path(text, fragment):
    """A bound that cannot be resolved is an InvalidRangeError with one detail at the given path."""
    with pytest.raises(InvalidRangeError) as caught:
        resolve_time(text, now=NOW, round_up=False, path="$.range.from")
    (detail,) = caught.value.details
    assert detail["path"] == "$.range.from"
    assert fragment in detail["message"]
    assert caught.value.message == f"$.range.from: {detail['message']}"
    assert caught.value.status == 400


def test_resolve_range_rounds_from_down_and_to_up():
    """from: now-1d/d and to: now/d give yesterday 00:00 up to (excluding) tomorrow 00:00."""
    assert resolve_range("now-1d/d", "now/d", now=NOW, max_days=400) == TimeRange(
        utc(2024, 5, 14), utc(2024, 5, 16)
    )


def test_resolve_range_reports_both_bad_bounds_in_order():
    """When from and to are both wrong, details list both, from first."""
    with pytest.raises(InvalidRangeError) as caught:
        resolve_range("last week", "now-1q", now=NOW, max_days=400)
    assert [detail["path"] for detail in caught.value.details] == ["$.range.from", "$.range.to"]


@pytest.mark.parametrize(
    ("from_text", "to_text"),
    [("now", "now"), ("now", "now-1h"), ("2024-05-02", "2024-05-01")],
    ids=["empty", "reversed-math", "reversed-iso"],
)
def test_end_must_be_after_start(from_text, to_text):
    """to <= from is refused at $.range.to, with both resolved instants in the message."""
    with pytest.raises(InvalidRangeError) as caught:
        resolve_range(from_text, to_text, now=NOW, max_days=400)
    (detail,) = caught.value.details
    assert detail["path"] == "$.range.to"
    assert detail["message"].startswith(f"must be after from: to {to_text!r} resolves to ")
    assert f", from {from_text!r} resolves to " in detail["message"]


def test_a_reversed_range_says_to_swap_the_values_and_an_empty_one_says_so():
    with pytest.raises(InvalidRangeError) as reversed_range:
        resolve_range("2024-05-02", "2024-05-01", now=NOW, max_days=400)
    assert str(reversed_range.value) == (
        "$.range.to: must be after from: to '2024-05-01' resolves to 2024-05-01T00:00:00.000Z, "
        "from '2024-05-02' resolves to 2024-05-02T00:00:00.000Z; swap the two values"
    )
    with pytest.raises(InvalidRangeError) as empty:
        resolve_range("2024-05-01", "2024-05-01", now=NOW, max_days=400)
    assert str(empty.value).endswith("; give a range that is not empty")


def test_range_longer_than_max_days_is_refused():
    """A range one millisecond longer than max_days is refused at $.range; exactly max_days passes."""
    assert resolve_range("2024-05-01", "2024-05-08", now=NOW, max_days=7).duration == timedelta(days=7)
    with pytest.raises(InvalidRangeError) as caught:
        resolve_range("2024-05-01", "2024-05-08T00:00:00.001Z", now=NOW, max_days=7)
    (detail,) = caught.value.details
    assert detail["path"] == "$.range"
    assert "the limit is 7 days (CONNECTOR_MAX_RANGE_DAYS)" in detail["message"]


def test_baseline_must_start_before_the_range():
    """A baseline start before the range resolves (rounded down); at or after the range start: refused."""
    time_range = resolve_range("now-1h", "now", now=NOW, max_days=400)
    assert resolve_baseline("now-7d/d", time_range=time_range, now=NOW, max_days=400) == utc(2024, 5, 8)
    with pytest.raises(InvalidRangeError) as caught:
        resolve_baseline("now-1h", time_range=time_range, now=NOW, max_days=400)
    assert caught.value.details[0]["path"] == "$.baseline.from"
    assert caught.value.details[0]["message"].startswith("must be before the range")


def test_baseline_counts_towards_max_days():
    """Baseline plus range longer than max_days is refused at $.baseline.from."""
    time_range = resolve_range("now-1d", "now", now=NOW, max_days=30)
    with pytest.raises(InvalidRangeError) as caught:
        resolve_baseline("now-31d", time_range=time_range, now=NOW, max_days=30)
    assert caught.value.details[0]["path"] == "$.baseline.from"
    assert "more than 30 days" in caught.value.details[0]["message"]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2024, 5, 1), "2024-05-01T00:00:00.000Z"),
        (utc(2024, 5, 1, 10, 0, 0, 123999), "2024-05-01T10:00:00.123Z"),
        (datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T00:00:00.000Z"),
        (datetime(2024, 5, 1, 2), "2024-05-01T02:00:00.000Z"),
        (utc(999, 1, 2), "0999-01-02T00:00:00.000Z"),
    ],
    ids=["midnight", "millis-truncated", "offset-converted", "naive-is-utc", "four-digit-year"],
)
def test_isoformat_z(moment, expected):
    """UTC, milliseconds, trailing Z: the format Elasticsearch prints."""
    assert isoformat_z(moment) == expected


def test_the_supported_years_are_exactly_1000_to_9999():
    """The first and last millisecond of the four-digit years resolve; one step beyond does not."""
    assert resolve_time("1000-01-01", now=NOW, round_up=False) == utc(1000, 1, 1)
    last = resolve_time("9999-12-31T23:59:59.999Z", now=NOW, round_up=False)
    assert isoformat_z(last) == "9999-12-31T23:59:59.999Z"
    for text in ("1000-01-01||-1s", "9999-12-31T23:59:59.999Z||+1s"):
        with pytest.raises(InvalidRangeError, match=r"outside the supported dates \(years 1000 to 9999\)"):
            resolve_time(text, now=NOW, round_up=False)


_UNIT = st.sampled_from("yMwdhHms")
_STEP = st.one_of(
    st.tuples(st.sampled_from("+-"), st.integers(0, 999_999_999).map(str) | st.just(""), _UNIT).map("".join),
    _UNIT.map(lambda unit: "/" + unit),
    st.text(max_size=3),
)
_ANCHOR = st.one_of(
    st.just("now"),
    st.datetimes(min_value=datetime(1, 1, 1)).map(lambda moment: moment.isoformat() + "||"),
    st.text(max_size=12),
)
BOUNDS = st.one_of(
    st.builds(lambda anchor, steps: anchor + "".join(steps), _ANCHOR, st.lists(_STEP, max_size=4)), st.text()
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(from_text=BOUNDS, to_text=BOUNDS, max_days=st.integers(1, 36600))
def test_any_text_resolves_or_raises_invalid_range(from_text: str, to_text: str, max_days: int):
    """Whatever the two bounds are, the result is a valid range or an InvalidRangeError: never another
    exception (which the service would turn into a 500), and a valid range prints as RFC 3339."""
    try:
        time_range = resolve_range(from_text, to_text, now=NOW, max_days=max_days)
    except InvalidRangeError as error:
        assert error.details and all(detail["path"].startswith("$.range") for detail in error.details)
        return
    assert time_range.start < time_range.end
    assert time_range.duration <= timedelta(days=max_days)
    for moment in (time_range.start, time_range.end):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", isoformat_z(moment))
