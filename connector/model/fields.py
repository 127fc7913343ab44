"""Turning an event into the strings the terms model counts (ee-outliers "sentences")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final


class _Absent:
    """Marker for a field that an event does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path``, matching each segment case-insensitively.

    When several keys match a segment, the first in document order wins (as in ee-outliers).
    A literal key containing a dot is not found. A path that runs through a scalar, an array
    or null gives :data:`ABSENT` (ee-outliers crashes there; see quirk Q11 in the docs).
    """
    current = document
    for segment in path.split("."):
        if not isinstance(current, Mapping):
            return ABSENT
        wanted = segment.lower()
        for key in current:
            if key.lower() == wanted:
                current = current[key]
                break
        else:
            return ABSENT
    return current


def value_text(value: Any) -> str | None:
    """One field value as the model's string, or None when the value cannot be used.

    Scalars use Python spelling (``True``, ``1.5``); an array of scalars is joined with
    ``" - "``; null, objects and arrays holding arrays or objects are unusable.
    """
    if value is None or isinstance(value, Mapping):
        return None
    if isinstance(value, list):
        if any(isinstance(item, list | Mapping) for item in value):
            return None
        return " - ".join(str(item) for item in value)
    return str(value)


def sentences(document: Any, paths: Sequence[str]) -> list[str] | None:
    """The strings ``paths`` give for ``document``; None when any path is absent.

    An array field gives one value per element (duplicates kept); several paths give their
    Cartesian product joined with ``" - "``, each new field's values forming the outer loop.
    Combinations holding an unusable value are dropped.
    """
    combinations: list[list[str | None]] = [[]]
    for path in paths:
        value = lookup(document, path)
        if value is ABSENT:
            return None
        if isinstance(value, list):
            combinations = [[*combo, value_text(item)] for item in value for combo in combinations]
        else:
            text = value_text(value)
            combinations = [[*combo, text] for combo in combinations]
    return [" - ".join(combo) for combo in combinations if None not in combo]  # type: ignore[arg-type]


def event_pairs(
    source: Any, *, aggregator: Sequence[str], target: Sequence[str]
) -> list[tuple[str, str]] | None:
    """The (aggregator value, term) entries one event adds, in ee-outliers' order.

    None means the event lacks a field and is skipped entirely. An empty list means it has the
    fields but no usable value (for example an empty array).
    """
    terms = sentences(source, target)
    if terms is None:
        return None
    aggregators = sentences(source, aggregator)
    if aggregators is None:
        return None
    return [(aggregator_value, term) for term in terms for aggregator_value in aggregators]


def text_at(source: Any, path: str) -> str | None:
    """A field's value as text for answers and alerts; None when absent, null, an object or an array."""
    value = lookup(source, path)
    if value is ABSENT or value is None or isinstance(value, Mapping | list):
        return None
    return str(value)
