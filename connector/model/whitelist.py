"""Whitelist matching: does a candidate outlier match a literal or regex entry?"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connector.config import UseCase, Whitelist
from connector.model.outlier import Outlier, record_values


def is_whitelisted(use_case: UseCase, outlier: Outlier) -> bool:
    """True when any entry of the use case's whitelist matches the candidate."""
    whitelist = use_case.whitelist
    if not whitelist:
        return False
    universe = candidate_strings(use_case, outlier)
    return matches(whitelist, universe)


def matches(whitelist: Whitelist, universe: set[str]) -> bool:
    """Literal entries need each value among the strings; regex entries each pattern to match one."""
    for literal in whitelist.literals:
        if literal.values <= universe:
            return True
    for entry in whitelist.regexps:
        if all(any(pattern.match(text) for text in universe) for pattern in entry.patterns):
            return True
    return False


# Search bookkeeping that depends on how a hit was fetched, not on the event: left out so the
# NDJSON and Elasticsearch paths whitelist alike.
SEARCH_METADATA = frozenset({"sort", "_score", "_seq_no", "_primary_term"})


def candidate_strings(use_case: UseCase, outlier: Outlier) -> set[str]:
    """Every string a whitelist entry may match: the raw hit's leaves and the record's values."""
    universe = event_strings(outlier.hit)
    universe.update(_text(value) for value in _flatten(record_values(use_case, outlier)))
    return universe


def event_strings(hit: Mapping[str, Any]) -> set[str]:
    """Every leaf string of a hit (search bookkeeping left out), as whitelist entries see them."""
    event = {key: value for key, value in hit.items() if key not in SEARCH_METADATA}
    return {_text(value) for value in _leaves(event)}


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        # Array items count one by one; an object inside an array counts as its Python repr.
        yield from value
    else:
        yield value


def _flatten(values: Iterable[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list | tuple):
            yield from value
        else:
            yield value


def _text(value: Any) -> str:
    return str(value).strip()
