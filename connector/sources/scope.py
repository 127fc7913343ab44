"""Which concrete indices an index expression reaches, and whether the allowed patterns cover each one.

A name that passes the allowed patterns may still be an alias (or a data stream) whose indices lie
outside them: ``osquery-alias -> secret`` matches ``osquery-*``. Elasticsearch's own role does not stop
that read either, because privileges on an alias name cover the indices behind it. So the expression is
resolved (``GET _resolve/index/<expression>``) before anything is read and every concrete index must be
covered: an index by its own name, a data stream's backing index (``.ds-<stream>-...``) by the data
stream's name (only that data stream can hold it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from connector.errors import IndexNotAllowedError


def covered(name: str, allowed_patterns: tuple[str, ...]) -> bool:
    """Whether one concrete name (an index or data stream, never an expression) matches a pattern."""
    return any(fnmatchcase(name, pattern) for pattern in allowed_patterns)


@dataclass(frozen=True)
class ConcreteIndex:
    """A concrete index the expression reaches; ``judged_as`` is the name the patterns are matched
    against (the index itself, or its data stream); ``via`` says how it was reached (an alias)."""

    name: str
    judged_as: str
    via: str | None = None


def concrete_indices(resolved: Mapping[str, Any]) -> list[ConcreteIndex]:
    """Every concrete index in an answer of ``_resolve/index``, in order, once each."""
    found: dict[str, ConcreteIndex] = {}
    streams: dict[str, list[str]] = {}
    for stream in resolved.get("data_streams") or []:
        streams[stream["name"]] = list(stream.get("backing_indices") or [])
        for backing in streams[stream["name"]]:
            found.setdefault(backing, ConcreteIndex(backing, stream["name"]))
    for index in resolved.get("indices") or []:
        name = index["name"]
        found.setdefault(name, ConcreteIndex(name, index.get("data_stream") or name))
    for alias in resolved.get("aliases") or []:
        for target in alias.get("indices") or []:
            # An alias of a data stream lists the stream; its backing indices are judged by its name.
            for backing in streams.get(target) or [target]:
                found.setdefault(backing, ConcreteIndex(backing, target, via=alias["name"]))
    return list(found.values())


class IndexScope:
    """The concrete indices one detection may read, checked once before reading and on every hit.

    :param expression: the requested index, name or pattern (already checked for syntax)
    :param allowed_patterns: the configured ``CONNECTOR_ALLOWED_INDICES``
    """

    def __init__(self, expression: str, allowed_patterns: tuple[str, ...]) -> None:
        self.expression = expression
        self.allowed_patterns = allowed_patterns
        self._allowed: frozenset[str] | None = None
        self._backing: re.Pattern[str] | None = None  # backing indices of the admitted data streams

    def admit(self, resolved: Mapping[str, Any]) -> None:
        """Accept the resolution or refuse it.

        :raises IndexNotAllowedError: (403) naming the first concrete index outside the patterns.
        """
        indices = concrete_indices(resolved)
        for index in indices:
            if not covered(index.judged_as, self.allowed_patterns):
                raise self._refusal(index.name, via=index.via)
        self._allowed = frozenset(index.name for index in indices)
        streams = [re.escape(stream["name"]) for stream in resolved.get("data_streams") or []]
        # Backing index names: .ds-<data stream>-<yyyy.MM.dd>-<generation>.
        self._backing = (
            re.compile(rf"\.ds-(?:{'|'.join(streams)})-\d{{4}}\.\d{{2}}\.\d{{2}}-\d{{6}}")
            if streams
            else None
        )

    def check_hit(self, hit: Mapping[str, Any]) -> None:
        """Refuse a fetched document from an index the resolution did not admit (an alias or data
        stream changed between resolving and reading).

        :raises IndexNotAllowedError: (403) naming the hit's index.
        """
        if self._allowed is None:
            return
        index = str(hit.get("_index"))
        # A new index matching the patterns, or a data stream's new backing index after a rollover, is fine.
        rolled_over = self._backing is not None and self._backing.fullmatch(index) is not None
        if index in self._allowed or rolled_over or covered(index, self.allowed_patterns):
            return
        raise self._refusal(index, via=None)

    def _refusal(self, index: str, *, via: str | None) -> IndexNotAllowedError:
        through = f" through alias {via!r}" if via else ""
        message = (
            f"index {self.expression!r} reaches the concrete index {index!r}{through}, which the allowed "
            f"patterns ({', '.join(self.allowed_patterns)}) do not cover: they apply to concrete indices, "
            "not to alias names; ask for indices inside them, or move the alias"
        )
        return IndexNotAllowedError(
            message, details=[{"path": "$.index", "message": message, "index": index}]
        )
