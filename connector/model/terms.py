"""The terms model: per-pair counts in, outliers out, with ee-outliers' whitelist passes.

The model works on counts, not on events. It asks for the events ("entries") of candidate
pairs only, because only candidates need their documents: for placeholders and whitelists.
:class:`TermsEvaluation` is a small state machine that a driver (the engine) feeds:

    evaluation = TermsEvaluation(use_case, counts)
    while not evaluation.done:
        evaluation.add_entries(source_entries(evaluation.pairs_needing_entries()))
        evaluation.advance()

A pass judges every pending aggregator. When a candidate is whitelisted, its entries leave
the counts, all candidates of that pass are thrown away and the aggregator is judged again
(``within_aggregator``); for ``across_aggregators`` every aggregator is judged again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.config import TargetCountMethod, TriggerMethod, UseCase
from connector.model.fields import event_pairs
from connector.model.frontier import confidence, decision_frontier, is_outlier
from connector.model.outlier import Observation, Outlier, build_outlier
from connector.model.whitelist import is_whitelisted

Pair = tuple[str, str]


@dataclass
class PairCounts:
    """How many entries each (aggregator, term) pair has, both in first-seen order."""

    by_aggregator: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, aggregator: str, term: str, count: int = 1) -> None:
        terms = self.by_aggregator.setdefault(aggregator, {})
        terms[term] = terms.get(term, 0) + count

    def remove(self, aggregator: str, term: str, count: int) -> None:
        """Take entries away; a term at zero disappears, its aggregator stays (quirk Q3)."""
        terms = self.by_aggregator[aggregator]
        remaining = terms[term] - count
        if remaining < 0:
            raise ValueError(f"cannot remove {count} entries of {(aggregator, term)}: only {terms[term]}")
        if remaining:
            terms[term] = remaining
        else:
            del terms[term]

    @property
    def pair_count(self) -> int:
        return sum(len(terms) for terms in self.by_aggregator.values())


@dataclass(frozen=True)
class Entry:
    """One (aggregator, term) occurrence of an event. An event may give several."""

    hit: Mapping[str, Any]
    aggregator: str
    term: str

    @property
    def pair(self) -> Pair:
        return (self.aggregator, self.term)


def count_event(counts: PairCounts, use_case: UseCase, source: Any) -> bool:
    """Add one event's entries to ``counts``; False when the event lacks a field."""
    pairs = event_pairs(source, aggregator=use_case.aggregator, target=use_case.target)
    if pairs is None:
        return False
    for aggregator, term in pairs:
        counts.add(aggregator, term)
    return True


def entries_of_event(
    use_case: UseCase, hit: Mapping[str, Any], wanted: Iterable[Pair] | set[Pair]
) -> list[Entry]:
    """The entries of ``hit`` whose pair is in ``wanted`` (duplicates kept, as they are counted)."""
    pairs = event_pairs(hit.get("_source") or {}, aggregator=use_case.aggregator, target=use_case.target)
    if not pairs:
        return []
    return [Entry(hit, aggregator, term) for aggregator, term in pairs if (aggregator, term) in wanted]


def judge_within(use_case: UseCase, aggregator: str, term_counts: Mapping[str, int]) -> list[Observation]:
    """Candidates of one aggregator under ``within_aggregator`` (deferred ones give none)."""
    if not term_counts:
        return []
    if use_case.min_target_buckets is not None and len(term_counts) < use_case.min_target_buckets:
        # ee-outliers defers such an aggregator to the next batch; after the last batch, never.
        return []
    values = list(term_counts.values())
    frontier = _frontier(use_case, values)
    if use_case.trigger_method is TriggerMethod.COEFF_OF_VARIATION:
        # The CV is compared with the sensitivity; if it passes, every term is a candidate.
        if not is_outlier(
            term_count=frontier,
            decision_frontier=use_case.trigger_sensitivity,
            trigger_on=use_case.trigger_on,
        ):
            return []
        certainty = confidence(
            value=frontier, decision_frontier=use_case.trigger_sensitivity, trigger_on=use_case.trigger_on
        )
        return [
            Observation(
                aggregator=aggregator,
                term=term,
                term_count=count,
                decision_frontier=frontier,
                confidence=certainty,
            )
            for term, count in term_counts.items()
        ]
    return [
        Observation(
            aggregator=aggregator,
            term=term,
            term_count=count,
            decision_frontier=frontier,
            confidence=confidence(value=count, decision_frontier=frontier, trigger_on=use_case.trigger_on),
        )
        for term, count in term_counts.items()
        if is_outlier(term_count=count, decision_frontier=frontier, trigger_on=use_case.trigger_on)
    ]


def judge_across(use_case: UseCase, counts: PairCounts) -> dict[str, list[Observation]]:
    """Candidates under ``across_aggregators``: whole aggregators, by their distinct terms."""
    distinct = {aggregator: len(terms) for aggregator, terms in counts.by_aggregator.items()}
    if not distinct:
        return {}  # ee-outliers crashes here for several methods (quirk Q10); nothing to flag
    frontier = _frontier(use_case, list(distinct.values()))
    flagged: dict[str, list[Observation]] = {}
    for aggregator, unique_terms in distinct.items():
        if is_outlier(term_count=unique_terms, decision_frontier=frontier, trigger_on=use_case.trigger_on):
            certainty = confidence(
                value=unique_terms, decision_frontier=frontier, trigger_on=use_case.trigger_on
            )
            flagged[aggregator] = [
                Observation(
                    aggregator=aggregator,
                    term=term,
                    term_count=unique_terms,
                    decision_frontier=frontier,
                    confidence=certainty,
                )
                for term in counts.by_aggregator[aggregator]
            ]
    return flagged


class TermsEvaluation:
    """Drives judging, whitelisting and re-judging until every aggregator is settled."""

    def __init__(self, use_case: UseCase, counts: PairCounts) -> None:
        self.use_case = use_case
        self.counts = counts
        self.outliers: list[Outlier] = []
        self.whitelisted_entries = 0
        self.passes = 0
        self._entries: dict[Pair, list[Entry]] = {}
        self._across = use_case.target_count_method is TargetCountMethod.ACROSS_AGGREGATORS
        self._pending: set[str] = set(counts.by_aggregator)
        self._candidates: dict[str, list[Observation]] = {}
        self._judge()

    @property
    def done(self) -> bool:
        return not self._pending

    def pairs_needing_entries(self) -> set[Pair]:
        """Candidate pairs whose events the model has not been given yet."""
        return {
            (observation.aggregator, observation.term)
            for observations in self._candidates.values()
            for observation in observations
            if (observation.aggregator, observation.term) not in self._entries
        }

    def add_entries(self, entries: Iterable[Entry], *, pairs: Iterable[Pair] = ()) -> None:
        """Give the model the entries of requested pairs; ``pairs`` lists those requested.

        Every requested pair is recorded, even one no entry came back for, so it is not asked
        for again.
        """
        for pair in pairs:
            self._entries.setdefault(pair, [])
        for entry in entries:
            self._entries.setdefault(entry.pair, []).append(entry)

    def advance(self) -> None:
        """Run one whitelist pass over the current candidates."""
        missing = self.pairs_needing_entries()
        if missing:
            raise RuntimeError(f"{len(missing)} candidate pairs have no entries yet; call add_entries first")
        self.passes += 1
        if self._across:
            self._advance_across()
        else:
            self._advance_within()

    def _advance_within(self) -> None:
        for aggregator in [a for a in self.counts.by_aggregator if a in self._pending]:
            candidates = self._candidates.get(aggregator, [])
            outliers, whitelisted = self._check(candidates)
            if whitelisted:
                self._remove(whitelisted)
                self._candidates[aggregator] = judge_within(
                    self.use_case, aggregator, self.counts.by_aggregator[aggregator]
                )
            else:
                self.outliers.extend(outliers)
                self._pending.discard(aggregator)
                self._candidates.pop(aggregator, None)

    def _advance_across(self) -> None:
        candidates = [o for a in self.counts.by_aggregator for o in self._candidates.get(a, [])]
        outliers, whitelisted = self._check(candidates)
        if whitelisted:
            self._remove(whitelisted)
            self._judge()
        else:
            self.outliers.extend(outliers)
            self._pending.clear()
            self._candidates.clear()

    def _judge(self) -> None:
        if self._across:
            self._candidates = judge_across(self.use_case, self.counts)
        else:
            self._candidates = {
                aggregator: judge_within(self.use_case, aggregator, self.counts.by_aggregator[aggregator])
                for aggregator in self._pending
            }

    def _check(self, candidates: list[Observation]) -> tuple[list[Outlier], list[Entry]]:
        outliers: list[Outlier] = []
        whitelisted: list[Entry] = []
        for observation in candidates:
            for entry in self._entries[(observation.aggregator, observation.term)]:
                outlier = build_outlier(self.use_case, entry.hit, observation)
                if is_whitelisted(self.use_case, outlier):
                    whitelisted.append(entry)
                else:
                    outliers.append(outlier)
        return outliers, whitelisted

    def _remove(self, whitelisted: list[Entry]) -> None:
        gone = {id(entry) for entry in whitelisted}
        for pair in {entry.pair for entry in whitelisted}:
            kept = [entry for entry in self._entries[pair] if id(entry) not in gone]
            self.counts.remove(*pair, len(self._entries[pair]) - len(kept))
            self._entries[pair] = kept
        self.whitelisted_entries += len(whitelisted)


def _frontier(use_case: UseCase, values: list[int]) -> float:
    return decision_frontier(
        values,
        trigger_method=use_case.trigger_method,
        trigger_sensitivity=use_case.trigger_sensitivity,
        trigger_on=use_case.trigger_on,
    )
