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


_ALERT_COLUMNS: Sequence[tuple[str, str, int]] = (
    ("score", "score", 6),
    ("aggregator", "parent", 26),
    ("term", "child", 26),
    ("count", "events", 6),
    ("host_count", "hosts", 5),
    ("_id", "first event", 26),
)


def render_table(result: dict[str, Any]) -> str:
    """A fixed-width table of the outliers with a one-line header; long cells end in '…'."""
    if result.get("model") == "rarechild":
        return render_alerts(result)
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


def render_alerts(result: dict[str, Any]) -> str:
    """Rarechild alerts: one row each, then its reasons, factor by factor, with their points."""
    alerts = result["outliers"]
    noun = "alert" if len(alerts) == 1 else "alerts"
    lines = [
        f"{result['use_case']}: {len(alerts)} {noun} in {result['events_analyzed']:,} events "
        f"({result['pairs_above_threshold']} pairs reached the threshold)"
    ]
    if not alerts:
        return "\n".join(lines) + "\n"
    headings = [heading for _, heading, _ in _ALERT_COLUMNS]
    rows = [[_cell(alert.get(key)) for key, _, _ in _ALERT_COLUMNS] for alert in alerts]
    widths = [
        min(limit, max(len(headings[i]), *(len(row[i]) for row in rows)))
        for i, (_, _, limit) in enumerate(_ALERT_COLUMNS)
    ]
    lines.append("")
    lines.append(_line(headings, widths))
    lines.append(_line(["-" * width for width in widths], widths))
    for alert, row in zip(alerts, rows, strict=True):
        lines.append(_line(row, widths))
        for factor in sorted(alert["factors"], key=lambda item: -item["points"]):
            if factor["points"] > 0:
                lines.append(f"        {factor['points']:+6.2f}  {_fit(factor['says'], 100).rstrip()}")
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
