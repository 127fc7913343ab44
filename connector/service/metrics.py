"""``GET /api/v1/metrics``: the checkpoints' lag in the Prometheus text exposition format (0.0.4). Pure.

Rendered from the entries ``GET /api/v1/checkpoints`` lists (:meth:`Checkpoint.to_dict`), so both say the
same lag and the same ``behind``. A checkpoint that never completed an hour has no lag: its lag sample is
left out (Prometheus has no "unknown") and it counts as behind, as in the listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "rare_child_connector_"


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed, escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # HELP text escapes backslash and line feed, not the double quote.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _family(name: str, help_text: str, samples: Iterable[tuple[str, int]]) -> list[str]:
    lines = [f"# HELP {PREFIX}{name} {_escape_help(help_text)}", f"# TYPE {PREFIX}{name} gauge"]
    lines.extend(f"{PREFIX}{name}{labels} {value}" for labels, value in samples)
    return lines


def _labels(entry: Mapping[str, Any]) -> str:
    use_case = escape_label_value(str(entry["use_case"]))
    index = escape_label_value(str(entry["index"]))
    return f'{{use_case="{use_case}",index="{index}"}}'


def render_checkpoint_metrics(entries: Sequence[Mapping[str, Any]], *, max_lag_seconds: int) -> str:
    """The exposition text: the limit and the total first, then one sample per checkpoint by use case and
    index (a stable order, so two scrapes of the same state are the same text)."""
    ordered = sorted(entries, key=lambda entry: (str(entry["use_case"]), str(entry["index"])))
    lines = [
        *_family(
            "checkpoint_max_lag_seconds",
            "A checkpoint further behind than this is behind (CONNECTOR_CHECKPOINT_MAX_LAG_HOURS).",
            [("", max_lag_seconds)],
        ),
        *_family(
            "checkpoints_behind",
            "Checkpoints behind by more than the limit, or that never completed an hour.",
            [("", sum(1 for entry in ordered if entry["behind"]))],
        ),
        *_family(
            "checkpoint_lag_seconds",
            "Seconds since the end of the last hour analysed for this use case and index.",
            [(_labels(entry), entry["lag_seconds"]) for entry in ordered if entry["lag_seconds"] is not None],
        ),
        *_family(
            "checkpoint_behind",
            "1 when this use case and index is behind by more than the limit, else 0.",
            [(_labels(entry), 1 if entry["behind"] else 0) for entry in ordered],
        ),
    ]
    return "\n".join(lines) + "\n"
