"""Events from an NDJSON file: one Elasticsearch hit or one bare event document per line.

The file is streamed, never loaded whole: counting keeps only the pair counts, and fetching
entries keeps only the events of the requested pairs. Each request reads the file again.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.config import RareChildUseCase, UseCase
from connector.errors import InputError
from connector.model.fields import ABSENT, event_pairs, lookup, text_at
from connector.model.rarechild import GroupCount, PairTally, PathCount, tally_groups
from connector.model.terms import Entry, Pair, PairCounts, count_event, entries_of_event
from connector.profiles import meets

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called now and then with (lines read, bytes read)."""

PROGRESS_EVERY = 20_000


class FieldPresence:
    """Which configured fields occur in a file at all: a misspelt field is said once, with those that exist.

    Over Elasticsearch the mapping tells (a missing field is an error); a file has none, so the events
    tell. It stays a warning: events lacking a field are skipped, as ee-outliers does, and a file of
    such events legitimately gives no outliers.
    """

    SAMPLE_EVENTS = 1_000
    SHOWN_FIELDS = 40

    def __init__(self, use_case: UseCase | RareChildUseCase) -> None:
        self.use_case = use_case
        self.options = [("aggregator", path) for path in use_case.aggregator] + [
            ("target", path) for path in use_case.target
        ]
        self.found = {path: False for _, path in self.options}
        self.existing: set[str] = set()
        self.sampled = 0

    def see(self, source: Any) -> None:
        for path, found in self.found.items():
            if not found and lookup(source, path) is not ABSENT:
                self.found[path] = True
        if self.sampled < self.SAMPLE_EVENTS:
            self.sampled += 1
            self.existing.update(_leaf_paths(source))

    def check(self, path: Path, events: int) -> None:
        """Warn (once per field) about each configured field that occurs in none of the ``events``."""
        if not events:
            return
        for option, field_path in self.options:
            if self.found[field_path]:
                continue
            shown = sorted(self.existing)
            listing = ", ".join(shown[: self.SHOWN_FIELDS]) + (
                " ..." if len(shown) > self.SHOWN_FIELDS else ""
            )
            close = difflib.get_close_matches(field_path, shown, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]!r}? " if close else ""
            log.warning(
                "[%s] %s: field %r is in none of the %s events of %s, so every event was skipped; "
                "%scheck the field path (fields of these events: %s)",
                self.use_case.section,
                option,
                field_path,
                f"{events:,}",
                path,
                hint,
                listing or "none",
            )


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if not isinstance(value, dict):
        return [prefix] if prefix else []
    paths = []
    for key, item in value.items():
        paths.extend(_leaf_paths(item, f"{prefix}.{key}" if prefix else str(key)))
    return paths


class NdjsonSource:
    """An :class:`~connector.sources.EventSource` over a file of hits or documents."""

    def __init__(self, path: str | Path, *, progress: Progress | None = None) -> None:
        self.path = Path(path)
        self.progress = progress

    def hits(self) -> Iterator[dict[str, Any]]:
        """Every event as a hit ``{"_id", "_index", "_source"}``, in file order.

        A bare document gets ``_id`` ``line-<n>`` (1-based) and no ``_index``.
        :raises InputError: naming the line, for anything that is not a JSON object.
        """
        try:
            handle = self.path.open("rb")
        except OSError as error:
            raise InputError(f"cannot open the events file: {error.strerror}", path=self.path) from None
        with handle:
            bytes_read = 0
            for line_number, raw in enumerate(handle, start=1):
                bytes_read += len(raw)
                if self.progress and line_number % PROGRESS_EVERY == 0:
                    self.progress(line_number, bytes_read)
                if not raw.strip():
                    continue
                yield self._hit(raw, line_number)
            if self.progress:
                self.progress(line_number if bytes_read else 0, bytes_read)

    def field_names(self) -> frozenset[str]:
        """The fields of the file's first events (what a data profile is detected from)."""
        names: set[str] = set()
        for number, hit in enumerate(self.hits()):
            if number >= FieldPresence.SAMPLE_EVENTS:
                break
            names.update(_leaf_paths(hit["_source"]))
        return frozenset(names)

    def admitted_hits(self, use_case: UseCase | RareChildUseCase) -> Iterator[dict[str, Any]]:
        """The hits that meet the use case's data-profile conditions (all of them without conditions)."""
        conditions = use_case.profile_conditions
        for hit in self.hits():
            if not conditions or meets(hit["_source"], conditions):
                yield hit

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        counts = PairCounts()
        events = 0
        presence = FieldPresence(use_case)
        for hit in self.admitted_hits(use_case):
            events += 1
            presence.see(hit["_source"])
            count_event(counts, use_case, hit["_source"])
        presence.check(self.path, events)
        return counts, events

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        for hit in self.admitted_hits(use_case):
            yield from entries_of_event(use_case, hit, pairs)

    def rarechild_tallies(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[PairTally], list[PathCount], int]:
        """:meth:`rarechild_counts` with its groups folded per stored pair, as the model takes them."""
        groups, paths, events = self.rarechild_counts(use_case, range_start)
        return tally_groups(groups), paths, events

    def rarechild_counts(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[GroupCount], list[PathCount], int]:
        """Per (parent, child, host) and per (parent, child, path) counts, the whole file being the range."""
        if range_start is not None:
            raise ValueError("an NDJSON file is analysed whole: it has no baseline")
        by_host: dict[tuple[str, str, str | None], int] = {}
        by_path: dict[tuple[str, str, str | None], int] = {}
        events = 0
        presence = FieldPresence(use_case)
        for hit in self.admitted_hits(use_case):
            events += 1
            source = hit["_source"]
            presence.see(source)
            pairs = event_pairs(source, aggregator=use_case.aggregator, target=use_case.target)
            if not pairs:
                continue
            host = text_at(source, use_case.host_field)
            path = text_at(source, use_case.path_field)
            for parent, child in dict.fromkeys(pairs):  # an event counts once per pair, as in a bucket
                by_host[(parent, child, host)] = by_host.get((parent, child, host), 0) + 1
                by_path[(parent, child, path)] = by_path.get((parent, child, path), 0) + 1
        presence.check(self.path, events)
        groups = [GroupCount(p, c, h, count, count, None) for (p, c, h), count in by_host.items()]
        paths = [PathCount(p, c, path, count) for (p, c, path), count in by_path.items()]
        return groups, paths, events

    def rarechild_hits(
        self,
        use_case: RareChildUseCase,
        wanted: dict[Pair, frozenset[str] | None],
        range_start: datetime | None = None,
    ) -> dict[Pair, list[dict[str, Any]]]:
        """The events of each stored (parent, child) spelling in ``wanted``, in file order.

        ``wanted[pair]`` a set of paths: only the events run from one of them (the flagged ones).
        """
        if range_start is not None:
            raise ValueError("an NDJSON file is analysed whole: it has no baseline")
        found: dict[Pair, list[dict[str, Any]]] = {pair: [] for pair in wanted}
        for hit in self.admitted_hits(use_case):
            source = hit["_source"]
            pairs = event_pairs(source, aggregator=use_case.aggregator, target=use_case.target)
            if not pairs:
                continue
            path = text_at(source, use_case.path_field)
            for pair in dict.fromkeys(pairs):
                if pair not in wanted:
                    continue
                only = wanted[pair]
                if only is not None and path not in only:
                    continue
                found[pair].append(hit)
        return found

    def _hit(self, raw: bytes, line_number: int) -> dict[str, Any]:
        try:
            # Without its line break, so an error at the end of the line gets that line's column.
            document = json.loads(raw.rstrip(b"\r\n"))
        except UnicodeDecodeError as error:
            raise InputError(f"not UTF-8 text ({error.reason})", path=self.path, line=line_number) from None
        except json.JSONDecodeError as error:
            raise InputError(
                f"not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON object",
                path=self.path,
                line=line_number,
            ) from None
        if not isinstance(document, dict):
            raise InputError(
                f"a JSON {type(document).__name__} where an object was expected; each line must be an "
                'Elasticsearch hit {"_id": ..., "_source": {...}} or an event document',
                path=self.path,
                line=line_number,
            )
        if "_source" not in document:
            return {"_id": f"line-{line_number}", "_source": document}
        if not isinstance(document["_source"], dict):
            raise InputError('"_source" must be a JSON object', path=self.path, line=line_number)
        if "_id" not in document:
            document["_id"] = f"line-{line_number}"
        return document
