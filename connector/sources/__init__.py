"""Where events and counts come from. The model never imports from here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from connector.config import UseCase
from connector.model.terms import Entry, Pair, PairCounts


class EventSource(Protocol):
    """A place the engine can ask for pair counts, then for the entries of chosen pairs."""

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        """Counts of every (aggregator, term) pair, and the number of events analysed."""
        ...

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        """Every entry whose pair is in ``pairs``, in event order, duplicates kept."""
        ...

    def field_names(self) -> frozenset[str]:
        """The fields the events have (a data profile is detected from them)."""
        ...
