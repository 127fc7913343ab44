"""Events from an NDJSON file: one Elasticsearch hit or one bare event document per line.

The file is streamed, never loaded whole: counting keeps only the pair counts, and fetching
entries keeps only the events of the requested pairs. Each request reads the file again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.config import RareChildUseCase, UseCase
from connector.errors import InputError
from connector.model.fields import event_pairs
from connector.model.rarechild import GroupCount, PathCount, text_at
from connector.model.terms import Entry, Pair, PairCounts, count_event, entries_of_event

Progress = Callable[[int, int], None]
"""Called now and then with (lines read, bytes read)."""

PROGRESS_EVERY = 20_000


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

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        counts = PairCounts()
        events = 0
        for hit in self.hits():
            events += 1
            count_event(counts, use_case, hit["_source"])
        return counts, events

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        for hit in self.hits():
            yield from entries_of_event(use_case, hit, pairs)

    def rarechild_counts(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[GroupCount], list[PathCount], int]:
        """Per (parent, child, host) and per (parent, child, path) counts, the whole file being the range."""
        if range_start is not None:
            raise ValueError("an NDJSON file is analysed whole: it has no baseline")
        by_host: dict[tuple[str, str, str | None], int] = {}
        by_path: dict[tuple[str, str, str | None], int] = {}
        events = 0
        for hit in self.hits():
            events += 1
            source = hit["_source"]
            pairs = event_pairs(source, aggregator=use_case.aggregator, target=use_case.target)
            if not pairs:
                continue
            host = text_at(source, use_case.host_field)
            path = text_at(source, use_case.path_field)
            for parent, child in dict.fromkeys(pairs):  # an event counts once per pair, as in a bucket
                by_host[(parent, child, host)] = by_host.get((parent, child, host), 0) + 1
                by_path[(parent, child, path)] = by_path.get((parent, child, path), 0) + 1
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
        for hit in self.hits():
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
