"""Rendering a detection for people: a plain-text table for terminals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_COLUMNS: Sequence[tuple[str, str, int]] = (
    # (record key, heading, widest the column may grow)
    ("_id", "event id", 26),
    ("aggregator", "aggregator", 30),
    ("term", "term", 30),
    ("term_count", "count", 7),
    ("decision_frontier", "frontier", 10),
    ("confidence", "conf.", 6),
    ("summary", "summary", 70),
)


def render_table(result: dict[str, Any]) -> str:
    """A fixed-width table of the outliers with a one-line header; long cells end in '…'."""
    outliers = result["outliers"]
    noun = "outlier" if len(outliers) == 1 else "outliers"
    lines = [f"{result['use_case']}: {len(outliers)} {noun} in {result['events_analyzed']:,} events"]
    if not outliers:
        return "\n".join(lines) + "\n"
    rows = [[_cell(record.get(key)) for key, _, _ in _COLUMNS] for record in outliers]
    headings = [heading for _, heading, _ in _COLUMNS]
    widths = [
        min(limit, max(len(headings[i]), *(len(row[i]) for row in rows)))
        for i, (_, _, limit) in enumerate(_COLUMNS)
    ]
    lines.append("")
    lines.append(_line(headings, widths))
    lines.append(_line(["-" * width for width in widths], widths))
    lines.extend(_line(row, widths) for row in rows)
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if value is None:
        return "-"
    return " ".join(str(value).split())  # one line per row, even for wrapped summaries


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(_fit(cell, width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def _fit(text: str, width: int) -> str:
    if len(text) > width:
        return text[: width - 1] + "…"
    return text.ljust(width)
