"""Planning the hourly spans of a "since the checkpoint" call (connector/progress/spans.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import InvalidRangeError
from connector.progress.checkpoints import checkpoint_id
from connector.progress.spans import parse_baseline, plan_spans
from connector.timerange import TimeRange

T = datetime(2024, 3, 6, 14, 0, tzinfo=UTC)
H = timedelta(hours=1)


def plan(**overrides):
    arguments = {
        "checkpoint": None,
        "initial_from": None,
        "to": T,
        "max_spans": 24,
        "baseline": timedelta(days=7),
        "max_days": 400,
    }
    arguments.update(overrides)
    return plan_spans(**arguments)


def test_three_missed_hours_are_three_consecutive_spans():
    planned = plan(checkpoint=T - 3 * H)
    assert planned.spans == (
        TimeRange(T - 3 * H, T - 2 * H),
        TimeRange(T - 2 * H, T - H),
        TimeRange(T - H, T),
    )
    assert planned.owed is None


def test_without_a_checkpoint_the_first_call_takes_the_previous_whole_hour():
    assert plan(to=T + timedelta(minutes=5, seconds=3)).spans == (TimeRange(T - H, T),)


def test_initial_from_is_rounded_down_to_its_hour():
    planned = plan(initial_from=T - 2 * H + timedelta(minutes=59))
    assert planned.spans == (TimeRange(T - 2 * H, T - H), TimeRange(T - H, T))


def test_the_current_partial_hour_is_never_analysed():
    assert plan(checkpoint=T, to=T + timedelta(minutes=59)).spans == ()


def test_a_checkpoint_ahead_of_to_plans_nothing_so_no_hour_is_analysed_twice():
    planned = plan(checkpoint=T + 5 * H)
    assert planned.spans == () and planned.owed is None


def test_beyond_max_spans_the_rest_is_owed():
    planned = plan(checkpoint=T - 30 * H, max_spans=24)
    assert len(planned.spans) == 24 and planned.spans[-1].end == T - 6 * H
    assert planned.owed == TimeRange(T - 6 * H, T) and planned.owed_spans == 6


def test_a_baseline_longer_than_the_range_limit_is_refused_naming_the_setting():
    with pytest.raises(InvalidRangeError, match="CONNECTOR_MAX_RANGE_DAYS") as caught:
        plan(checkpoint=T - H, baseline=timedelta(days=400))
    assert caught.value.details[0]["path"] == "$.since_checkpoint.baseline"


@pytest.mark.parametrize(("text", "length"), [("7d", timedelta(days=7)), ("36h", timedelta(hours=36))])
def test_baseline_lengths(text, length):
    assert parse_baseline(text) == length


@pytest.mark.parametrize("text", ["0d", "7w", "-1d", "7", "d"])
def test_bad_baseline_lengths_are_refused(text):
    with pytest.raises(InvalidRangeError, match="7d or 36h"):
        parse_baseline(text)


def test_checkpoint_ids_follow_use_case_and_index_only():
    assert checkpoint_id("terms_a", "osquery-*") == checkpoint_id("terms_a", "osquery-*")
    assert (
        len({checkpoint_id("terms_a", "x"), checkpoint_id("terms_b", "x"), checkpoint_id("terms_a", "y")})
        == 3
    )
