"""The Prometheus text of ``GET /api/v1/metrics`` (connector/service/metrics.py), pinned byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.progress.checkpoints import Checkpoint
from connector.service.metrics import CONTENT_TYPE, escape_label_value, render_checkpoint_metrics

NOW = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
MAX_LAG = timedelta(hours=3)


def entry(use_case: str, index: str, analysed_to: datetime | None) -> dict:
    """An entry as GET /api/v1/checkpoints lists it, so both endpoints judge ``behind`` the same way."""
    checkpoint = Checkpoint(
        id="x",
        use_case=use_case,
        index=index,
        analysed_from=None,
        analysed_to=analysed_to,
        spans_analysed=0,
        lease_holder=None,
        lease_until=None,
    )
    return checkpoint.to_dict(NOW, max_lag=MAX_LAG)


def test_the_exposition_text_is_pinned_and_ordered_by_use_case_then_index():
    entries = [
        entry("terms_x", "logs-b", datetime(2026, 12, 2, 12, tzinfo=UTC)),
        entry("rarechild_x", "logs-a", datetime(2026, 12, 2, 6, tzinfo=UTC)),
        entry("terms_x", "logs-a", datetime(2026, 12, 2, 9, 30, tzinfo=UTC)),
    ]
    assert render_checkpoint_metrics(entries, max_lag_seconds=10800) == (
        "# HELP rare_child_connector_checkpoint_max_lag_seconds A checkpoint further behind than this is "
        "behind (CONNECTOR_CHECKPOINT_MAX_LAG_HOURS).\n"
        "# TYPE rare_child_connector_checkpoint_max_lag_seconds gauge\n"
        "rare_child_connector_checkpoint_max_lag_seconds 10800\n"
        "# HELP rare_child_connector_checkpoints_behind Checkpoints behind by more than the limit, or that "
        "never completed an hour.\n"
        "# TYPE rare_child_connector_checkpoints_behind gauge\n"
        "rare_child_connector_checkpoints_behind 1\n"
        "# HELP rare_child_connector_checkpoint_lag_seconds Seconds since the end of the last hour analysed "
        "for this use case and index.\n"
        "# TYPE rare_child_connector_checkpoint_lag_seconds gauge\n"
        'rare_child_connector_checkpoint_lag_seconds{use_case="rarechild_x",index="logs-a"} 23400\n'
        'rare_child_connector_checkpoint_lag_seconds{use_case="terms_x",index="logs-a"} 10800\n'
        'rare_child_connector_checkpoint_lag_seconds{use_case="terms_x",index="logs-b"} 1800\n'
        "# HELP rare_child_connector_checkpoint_behind 1 when this use case and index is behind by more than "
        "the limit, else 0.\n"
        "# TYPE rare_child_connector_checkpoint_behind gauge\n"
        'rare_child_connector_checkpoint_behind{use_case="rarechild_x",index="logs-a"} 1\n'
        'rare_child_connector_checkpoint_behind{use_case="terms_x",index="logs-a"} 0\n'
        'rare_child_connector_checkpoint_behind{use_case="terms_x",index="logs-b"} 0\n'
    )


def test_exactly_the_limit_is_not_behind_and_one_second_more_is():
    """Same boundary as the listing: behind means more than the limit."""
    at_limit = entry("u", "i", NOW - MAX_LAG)
    beyond = entry("u", "j", NOW - MAX_LAG - timedelta(seconds=1))
    lines = render_checkpoint_metrics([at_limit, beyond], max_lag_seconds=10800).splitlines()
    assert 'rare_child_connector_checkpoint_behind{use_case="u",index="i"} 0' in lines
    assert 'rare_child_connector_checkpoint_behind{use_case="u",index="j"} 1' in lines
    assert "rare_child_connector_checkpoints_behind 1" in lines


def test_a_checkpoint_that_never_completed_an_hour_is_behind_without_a_lag_sample():
    text = render_checkpoint_metrics([entry("u", "i", None)], max_lag_seconds=3600)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == [
        "rare_child_connector_checkpoint_max_lag_seconds 3600",
        "rare_child_connector_checkpoints_behind 1",
        'rare_child_connector_checkpoint_behind{use_case="u",index="i"} 1',
    ]


def test_no_checkpoint_gives_every_family_with_zero_behind():
    """Every family is there before the first call, so an alert rule can tell "none" from "no data"."""
    text = render_checkpoint_metrics([], max_lag_seconds=7200)
    assert [line for line in text.splitlines() if line.startswith("# TYPE")] == [
        "# TYPE rare_child_connector_checkpoint_max_lag_seconds gauge",
        "# TYPE rare_child_connector_checkpoints_behind gauge",
        "# TYPE rare_child_connector_checkpoint_lag_seconds gauge",
        "# TYPE rare_child_connector_checkpoint_behind gauge",
    ]
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "rare_child_connector_checkpoint_max_lag_seconds 7200",
        "rare_child_connector_checkpoints_behind 0",
    ]
    assert text.endswith("# TYPE rare_child_connector_checkpoint_behind gauge\n")  # one final line feed


def test_label_values_escape_backslash_double_quote_and_line_feed():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    odd = entry('use "case"', "logs-\\win\ndows", NOW - timedelta(hours=1))
    text = render_checkpoint_metrics([odd], max_lag_seconds=10800)
    assert (
        'rare_child_connector_checkpoint_behind{use_case="use \\"case\\"",index="logs-\\\\win\\ndows"} 0\n'
        in text
    )
    # Every sample stays on one line: a line feed in a value cannot start a forged sample.
    assert len(text.splitlines()) == 12


def test_the_content_type_is_the_text_format_version_0_0_4():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
