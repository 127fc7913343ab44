"""The rarechild model: one explained score per (parent, child) pair, a threshold and an alert budget.

Counts in, scored candidates out; then the events of the best candidates in, alerts out. The model
never reads events itself: a source counts, per (parent, child, host), how many events there are and how
many of them show a path factor, and later fetches the events of the candidates the model picks. The
formula of every factor is in docs/rarechild.md; the numbers here are those of that page.

Names are compared case-folded (``WINWORD.EXE`` and ``winword.exe`` are one program) and reported
folded. The score is a sum of points, each factor's share kept in the record, so an analyst reads why.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.config import RareChildUseCase
from connector.model.fields import lookup
from connector.model.knowledge import DOUBLE_EXTENSION, FROM_USER_DIRECTORY, Knowledge
from connector.model.outlier import SUMMARY_WIDTH, fill_placeholders, placeholder_paths
from connector.model.whitelist import event_strings, matches

MODEL_TYPE = "rarechild"

# Statistical factors: points per bit of surprise, and the most bits one factor may contribute.
WITHIN_PARENT_WEIGHT = 0.3
PARENT_WEIGHT = 0.2
CHILD_WEIGHT = 0.2
HOST_WEIGHT = 0.5
MAX_BITS = 12.0
NOVELTY_POINTS = 2.0

Pair = tuple[str, str]


@dataclass(frozen=True)
class GroupCount:
    """What a source counted for one (parent, child, host) as stored (not folded).

    :ivar count: events counted (the baseline and the range)
    :ivar in_range: of those, events in the evaluated range
    :ivar first_ms: the earliest counted event (epoch milliseconds), None when unknown
    """

    parent: str
    child: str
    host: str | None
    count: int
    in_range: int
    first_ms: int | None


@dataclass(frozen=True)
class PairTally:
    """One stored (parent, child) over the counted window: its groups' counts summed, the earliest of
    their first events, and the hosts it ran on. What the model folds; a source may count it directly
    (the baseline summary keeps it per hour) or fold its per-host groups (:func:`tally_groups`)."""

    parent: str
    child: str
    count: int
    in_range: int
    first_ms: int | None
    hosts: frozenset[str]


def tally_groups(groups: Iterable[GroupCount]) -> list[PairTally]:
    """Per-host groups folded per stored (parent, child), in the order the pairs first appear."""
    tallies: dict[Pair, list[Any]] = {}
    for group in groups:
        tally = tallies.get((group.parent, group.child))
        if tally is None:
            tally = tallies[(group.parent, group.child)] = [0, 0, None, set()]
        tally[0] += group.count
        tally[1] += group.in_range
        if group.first_ms is not None:
            tally[2] = group.first_ms if tally[2] is None else min(tally[2], group.first_ms)
        if group.host is not None and group.count:
            tally[3].add(group.host)
    return [
        PairTally(parent, child, count, in_range, first_ms, frozenset(hosts))
        for (parent, child), (count, in_range, first_ms, hosts) in tallies.items()
    ]


@dataclass(frozen=True)
class PathCount:
    """In-range events of one (parent, child) as stored, per executable path (None: no path).

    The model judges each distinct path itself (user-writable? a system binary outside its directory?),
    so both sources only count, and agree by construction.
    """

    parent: str
    child: str
    path: str | None
    count: int


@dataclass(frozen=True)
class Factor:
    """One reason, its share of the score and the number behind it (bits, hosts, count...)."""

    name: str
    points: float
    value: float | None
    says: str
    technique: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "factor": self.name,
            "points": round(self.points, 3),
            "value": None if self.value is None else round(self.value, 3),
            "says": self.says,
        }
        if self.technique:
            record["technique"] = self.technique
        return record


@dataclass(frozen=True)
class Candidate:
    """A pair whose score reaches the threshold, before its events are fetched.

    ``flagged_only``: only the events with a path factor reach the threshold, so only those alert, and
    ``flagged_paths`` are their paths. ``raw_pairs`` are the stored spellings of the pair, for the source
    to fetch its events.
    """

    parent: str
    child: str
    score: float
    factors: tuple[Factor, ...]
    flagged_only: bool
    flagged_paths: tuple[str, ...]
    events_in_scope: int
    raw_pairs: tuple[Pair, ...]
    hosts_with_pair: int
    hosts_seen: int

    @property
    def pair(self) -> Pair:
        return (self.parent, self.child)

    def explanation(self) -> str:
        """``mshta.exe → cmd.exe: reason; reason; ...`` with the reasons that scored, biggest first."""
        reasons = [
            factor.says for factor in sorted(self.factors, key=lambda f: -f.points) if factor.points > 0
        ]
        return f"{self.parent} → {self.child}: " + "; ".join(reasons)


@dataclass(frozen=True)
class ScoringSettings:
    threshold: float
    smoothing: float
    range_has_baseline: bool
    baseline_label: str = ""


@dataclass
class _PairTotals:
    count: int = 0
    in_range: int = 0
    before: int = 0
    first_ms: int | None = None
    user_writable: int = 0
    outside_home: int = 0
    flagged: int = 0
    flagged_paths: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    raw: set[Pair] = field(default_factory=set)


@dataclass(frozen=True)
class Population:
    """Counts folded to lower-case names: per pair, per parent, per child, and the hosts seen."""

    pairs: Mapping[Pair, _PairTotals]
    parent_counts: Mapping[str, int]
    child_counts: Mapping[str, int]
    child_user_writable: Mapping[str, int]
    hosts: frozenset[str]
    events: int

    @classmethod
    def from_counts(
        cls, groups: Iterable[GroupCount], paths: Iterable[PathCount], knowledge: Knowledge
    ) -> Population:
        """Fold the sources' per-host counts; judge each distinct path with ``knowledge``."""
        return cls.from_tallies(tally_groups(groups), paths, knowledge)

    @classmethod
    def from_tallies(
        cls, tallies: Iterable[PairTally], paths: Iterable[PathCount], knowledge: Knowledge
    ) -> Population:
        """Fold the stored pairs to lower-case names; judge each distinct path with ``knowledge``."""
        pairs: dict[Pair, _PairTotals] = {}
        parents: dict[str, int] = {}
        children: dict[str, int] = {}
        child_uw: dict[str, int] = {}
        hosts: set[str] = set()
        events = 0
        for tally in tallies:
            key = (tally.parent.lower(), tally.child.lower())
            totals = pairs.setdefault(key, _PairTotals())
            totals.count += tally.count
            totals.in_range += tally.in_range
            totals.before += tally.count - tally.in_range
            if tally.first_ms is not None:
                totals.first_ms = (
                    tally.first_ms if totals.first_ms is None else min(totals.first_ms, tally.first_ms)
                )
            totals.raw.add((tally.parent, tally.child))
            totals.hosts.update(tally.hosts)
            hosts.update(tally.hosts)
            parents[key[0]] = parents.get(key[0], 0) + tally.count
            children[key[1]] = children.get(key[1], 0) + tally.count
            events += tally.count
        judged: dict[tuple[str, str], tuple[bool, bool]] = {}  # the same path recurs under many parents
        for item in paths:
            key = (item.parent.lower(), item.child.lower())
            totals = pairs.get(key)
            if totals is None or item.path is None:
                continue
            verdict = judged.get((key[1], item.path))
            if verdict is None:
                verdict = (
                    knowledge.is_user_writable(item.path),
                    knowledge.is_outside_home(key[1], item.path),
                )
                judged[(key[1], item.path)] = verdict
            user_writable, outside = verdict
            totals.user_writable += item.count if user_writable else 0
            totals.outside_home += item.count if outside else 0
            if user_writable or outside:
                totals.flagged += item.count
                totals.flagged_paths.add(item.path)
            if user_writable:
                child_uw[key[1]] = child_uw.get(key[1], 0) + item.count
        return cls(pairs, parents, children, child_uw, frozenset(hosts), events)


def score_pairs(population: Population, knowledge: Knowledge, settings: ScoringSettings) -> list[Candidate]:
    """Every pair with events in the range whose score reaches the threshold, best first.

    Ties are broken by parent, then child, so the same counts always give the same order.
    """
    candidates = []
    for pair in sorted(population.pairs):
        totals = population.pairs[pair]
        if totals.in_range <= 0:
            continue
        base, path_factors = _factors(pair, totals, population, knowledge, settings)
        base_score = sum(factor.points for factor in base)
        full_score = base_score + sum(factor.points for factor in path_factors)
        if base_score >= settings.threshold:
            flagged_only, in_scope = False, totals.in_range
        elif path_factors and full_score >= settings.threshold:
            flagged_only, in_scope = True, totals.flagged
        else:
            continue
        candidates.append(
            Candidate(
                parent=pair[0],
                child=pair[1],
                score=full_score,
                factors=(*base, *path_factors),
                flagged_only=flagged_only,
                flagged_paths=tuple(sorted(totals.flagged_paths)) if flagged_only else (),
                events_in_scope=in_scope,
                raw_pairs=tuple(sorted(totals.raw)),
                hosts_with_pair=len(totals.hosts),
                hosts_seen=len(population.hosts),
            )
        )
    candidates.sort(key=lambda candidate: (-candidate.score, candidate.parent, candidate.child))
    return candidates


def _bits(probability: float) -> float:
    return min(MAX_BITS, -math.log2(probability))


def _factors(
    pair: Pair,
    totals: _PairTotals,
    population: Population,
    knowledge: Knowledge,
    settings: ScoringSettings,
) -> tuple[list[Factor], list[Factor]]:
    parent, child = pair
    events = population.events
    parent_count = population.parent_counts[parent]
    child_count = population.child_counts[child]
    distinct_children = len(population.child_counts)
    distinct_parents = len(population.parent_counts)
    child_share = (child_count + 1) / (events + distinct_children)
    alpha = settings.smoothing
    within = (totals.count + alpha * child_share) / (parent_count + alpha)
    factors = [
        Factor(
            "rare_under_parent",
            WITHIN_PARENT_WEIGHT * _bits(within),
            _bits(within),
            f"{child} is {totals.count:,} of the {parent_count:,} processes {parent} launched "
            f"(smoothed share {within:.2g})",
        ),
        Factor(
            "rare_parent",
            PARENT_WEIGHT * _bits((parent_count + 1) / (events + distinct_parents)),
            _bits((parent_count + 1) / (events + distinct_parents)),
            f"{parent} launched {parent_count:,} of {events:,} processes",
        ),
        Factor(
            "rare_child",
            CHILD_WEIGHT * _bits(child_share),
            _bits(child_share),
            f"{child} is {child_count:,} of {events:,} processes",
        ),
    ]
    hosts_seen = len(population.hosts)
    with_pair = max(1, len(totals.hosts))
    if hosts_seen >= 2:
        host_bits = math.log2(hosts_seen / with_pair)
        factors.append(
            Factor(
                "host_prevalence", HOST_WEIGHT * host_bits, host_bits, f"on {with_pair} of {hosts_seen} hosts"
            )
        )
    else:
        factors.append(Factor("host_prevalence", 0.0, 0.0, f"on {with_pair} of {max(hosts_seen, 1)} hosts"))
    if settings.range_has_baseline:
        if totals.before == 0:
            factors.append(
                Factor(
                    "novelty", NOVELTY_POINTS, 0.0, f"first seen in this range ({settings.baseline_label})"
                )
            )
        else:
            factors.append(
                Factor(
                    "novelty", 0.0, float(totals.before), f"seen {totals.before:,} times before this range"
                )
            )
    factors.extend(_knowledge_factors(parent, child, population, knowledge))
    path_factors = []
    if totals.outside_home:
        path_factors.append(
            Factor(
                "system_binary_elsewhere",
                knowledge.points.system_binary_elsewhere,
                float(totals.outside_home),
                f"{child} ran from outside its system directory ({totals.outside_home:,} events)",
                "T1036.005",
            )
        )
    if totals.user_writable:
        path_factors.append(
            Factor(
                "user_writable_path",
                knowledge.points.user_writable,
                float(totals.user_writable),
                f"{child} ran from a user-writable directory ({totals.user_writable:,} events)",
                "T1204.002",
            )
        )
    return factors, path_factors


def _knowledge_factors(parent: str, child: str, population: Population, knowledge: Knowledge) -> list[Factor]:
    parent_classes = list(knowledge.classes_of(parent))
    if population.child_user_writable.get(parent, 0) > 0:
        parent_classes.append(FROM_USER_DIRECTORY)
    if knowledge.has_double_extension(parent):
        parent_classes.append(DOUBLE_EXTENSION)
    factors = []
    match = knowledge.best_rule(parent_classes, knowledge.classes_of(child))
    if match is not None:
        factors.append(
            Factor(
                "known_technique",
                match.rule.points,
                None,
                f"{match.rule.says} ({match.rule.technique}; {match.parent_class} → {match.child_class})",
                match.rule.technique,
            )
        )
    if knowledge.has_double_extension(child):
        factors.append(
            Factor(
                "double_extension",
                knowledge.points.double_extension,
                None,
                f"{child} poses as a document (double extension)",
                "T1036.007",
            )
        )
    if knowledge.unexpected_parent(parent, child):
        expected = ", ".join(sorted(knowledge.expected_parents[child]))
        factors.append(
            Factor(
                "unexpected_parent",
                knowledge.points.unexpected_parent,
                None,
                f"{child} is started by {expected}, not by {parent}",
                "T1036.005",
            )
        )
    return factors


# -- alerts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """A candidate with its events: one record however often the pair occurred in the range."""

    candidate: Candidate
    hits: tuple[Mapping[str, Any], ...]
    hosts: tuple[str, ...]
    first_time: str | None
    last_time: str | None
    outlier_type: tuple[str, ...]
    reason: tuple[str, ...]
    summary: str
    whitelisted_events: int = 0

    @property
    def first_hit(self) -> Mapping[str, Any]:
        return self.hits[0]

    @property
    def document_id(self) -> str:
        return str(self.first_hit.get("_id"))

    @property
    def index(self) -> str | None:
        return self.first_hit.get("_index")

    @property
    def event_ids(self) -> list[str]:
        return [str(hit.get("_id")) for hit in self.hits]


def build_alert(
    use_case: RareChildUseCase,
    candidate: Candidate,
    hits: Sequence[Mapping[str, Any]],
    *,
    event_time: Any,
    host_of: Any,
) -> Alert | None:
    """The alert of ``candidate`` from its in-scope ``hits`` (oldest first); None when all are whitelisted.

    :param event_time: gives an event's time text (for first and last), or None
    :param host_of: gives an event's host text, or None
    """
    kept = []
    whitelisted = 0
    texts_of_first: tuple[tuple[str, ...], tuple[str, ...], str] | None = None
    # The texts depend on an event only through its placeholder fields: fill them once per distinct value.
    event_paths = sorted(
        {path for template in _templates(use_case) for path in placeholder_paths(template)} - _OVERLAY
    )
    filled: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...], str]] = {}
    for hit in hits:
        source = hit.get("_source") or {}
        key = tuple(repr(lookup(source, path)) for path in event_paths)
        texts = filled.get(key)
        if texts is None:
            texts = filled[key] = alert_texts(use_case, candidate, hit)
        if not use_case.whitelist and texts_of_first is not None:
            kept.append(hit)
            continue
        if use_case.whitelist and matches(
            use_case.whitelist, _whitelist_universe(use_case, candidate, hit, texts)
        ):
            whitelisted += 1
            continue
        if texts_of_first is None:
            texts_of_first = texts
        kept.append(hit)
    if not kept or texts_of_first is None:
        return None
    times = [time for time in (event_time(hit) for hit in kept) if time is not None]
    hosts = sorted({host for host in (host_of(hit) for hit in kept) if host is not None})
    outlier_type, reason, summary = texts_of_first
    return Alert(
        candidate=candidate,
        hits=tuple(kept),
        hosts=tuple(hosts),
        first_time=min(times) if times else None,
        last_time=max(times) if times else None,
        outlier_type=outlier_type,
        reason=reason,
        summary=summary,
        whitelisted_events=whitelisted,
    )


_OVERLAY = frozenset({"aggregator", "term", "score", "explanation", "model_name", "model_type"})


def _templates(use_case: RareChildUseCase) -> tuple[str, str, str]:
    return (use_case.outlier_type, use_case.outlier_reason, use_case.outlier_summary)


def alert_texts(
    use_case: RareChildUseCase, candidate: Candidate, hit: Mapping[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The use case's ``outlier_type``, ``outlier_reason`` and ``outlier_summary`` filled for one event."""
    fields = dict(hit.get("_source") or {})
    fields.update(
        aggregator=candidate.parent,
        term=candidate.child,
        score=round(candidate.score, 2),
        explanation=candidate.explanation(),
        model_name=use_case.model_name,
        model_type=MODEL_TYPE,
    )
    return (
        _split(fill_placeholders(use_case.outlier_type, fields)),
        _split(fill_placeholders(use_case.outlier_reason, fields)),
        textwrap.fill(fill_placeholders(use_case.outlier_summary, fields), width=SUMMARY_WIDTH),
    )


def _whitelist_universe(
    use_case: RareChildUseCase,
    candidate: Candidate,
    hit: Mapping[str, Any],
    texts: tuple[tuple[str, ...], tuple[str, ...], str],
) -> set[str]:
    universe = event_strings(hit)
    outlier_type, reason, summary = texts
    universe.update(outlier_type)
    universe.update(reason)
    universe.update({summary, use_case.model_name, MODEL_TYPE, candidate.parent, candidate.child})
    universe.update(value for _, value in use_case.extra_options)
    return {text.strip() for text in universe}


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))
