"""Events and counts from Elasticsearch: aggregations for counts, point-in-time for candidates.

The service never scrolls every event. Elasticsearch counts every (aggregator, target) pair
with a paged composite aggregation; only the documents of candidate pairs are fetched, with a
point in time and ``search_after``. Memory grows with the number of distinct pairs.

Every Elasticsearch failure is translated here into the project's errors (both client
exception families: ``ApiError`` for error responses, ``TransportError`` for no response).
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch import ConnectionTimeout as EsConnectionTimeout
from elasticsearch import SSLError as EsSSLError

from connector.config import RareChildUseCase, UseCase
from connector.errors import (
    ElasticsearchAuthError,
    ElasticsearchTimeoutError,
    ElasticsearchTlsError,
    ElasticsearchUnavailableError,
    FieldError,
    IndexUnavailableError,
    QueryRejectedError,
)
from connector.explain import Explanation
from connector.model.fields import event_pairs, text_at
from connector.model.rarechild import GroupCount, PairTally, PathCount, tally_groups
from connector.model.terms import Entry, Pair, PairCounts, entries_of_event
from connector.settings import DEFAULT_COMPOSITE_PAGE_SIZE
from connector.sources.scope import IndexScope
from connector.sources.shards import unavailable_shards
from connector.timerange import epoch_ms, isoformat_z

log = logging.getLogger(__name__)

T = TypeVar("T")

# Big pages: each page re-runs the query (docs/formats.md §1).
COMPOSITE_PAGE_SIZE = DEFAULT_COMPOSITE_PAGE_SIZE
FETCH_PAGE_SIZE = 1_000
CLAUSES_PER_SEARCH = 500  # candidate-pair clauses per fetch query, well below the clause limit
PAIRS_PER_EXPLAIN = 200  # filters buckets per explanation request
TOP_TERMS = 5
PIT_KEEP_ALIVE = "2m"
KEYWORD_SUBFIELDS = ("raw", "keyword")  # preferred sub-fields of a text field, in order
#: One counted key as a composite bucket gives it: (aggregator values, target values, events).
KeyCount = tuple[tuple[Any, ...], tuple[Any, ...], int]
_HIT_KEYS = ("_index", "_id", "_source", "sort", "_seq_no", "_primary_term", "fields")


ES_TIMEOUT_SETTING = "CONNECTOR_ES_TIMEOUT_SECONDS"
DETECT_TIMEOUT_SETTING = "CONNECTOR_DETECT_TIMEOUT_SECONDS"


class TimeBudget:
    """How long Elasticsearch may take: each request, and all requests of one detection together.

    The client's ``request_timeout`` bounds one request only, and one detection sends several (field caps,
    count pages, candidate fetches, explanations, reads and writes of results). Against a slow node each
    may take almost the whole timeout, so without a deadline a detection could outlive the caller's (or
    gunicorn's) patience. Each request gets the smaller of the per-request timeout and the time left; once
    the deadline has passed no request is sent. The client does not retry timeouts (``retry_on_timeout``
    is off), so one request never waits much longer than its timeout.

    :param request_timeout_s: the client's per-request timeout (``None``: as the client is configured)
    :param total_s: the deadline for everything, counted from construction (``None``: no deadline)
    :param clock: seconds from a monotonic clock
    """

    def __init__(
        self,
        request_timeout_s: float | None = None,
        total_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total_s is not None and request_timeout_s is None:
            raise ValueError("a deadline needs the per-request timeout it shortens")
        self.request_timeout_s = request_timeout_s
        self.total_s = total_s
        self._clock = clock
        self._deadline = None if total_s is None else clock() + total_s
        self._last_shortened = False  # the last request got less than request_timeout_s

    def remaining_s(self) -> float | None:
        """Seconds left until the deadline (negative once passed); ``None`` without a deadline."""
        return None if self._deadline is None else self._deadline - self._clock()

    def bind(self, client: Elasticsearch, doing: str) -> Elasticsearch:
        """``client`` with the timeout left for the next request (``client`` itself when that is its own).

        :raises ElasticsearchTimeoutError: the deadline has passed; ``doing`` says what was not done
        """
        remaining = self.remaining_s()
        self._last_shortened = False
        if remaining is None or self.request_timeout_s is None or remaining >= self.request_timeout_s:
            return client
        if remaining <= 0:
            raise self.timeout_error(doing)
        self._last_shortened = True
        return client.options(request_timeout=remaining)

    def timeout_error(self, doing: str) -> ElasticsearchTimeoutError:
        """The error for a request that timed out while ``doing`` something: it names the setting to raise
        (the deadline's when it had shortened that request's timeout or has passed)."""
        remaining = self.remaining_s()
        if remaining is not None and (remaining <= 0 or self._last_shortened):
            return ElasticsearchTimeoutError(
                f"the detection did not finish within {DETECT_TIMEOUT_SETTING}={self.total_s:g} s "
                f"(stopped while {doing}); raise {DETECT_TIMEOUT_SETTING} if detections over this range "
                "need longer, or ask for a shorter range"
            )
        limit = "" if self.request_timeout_s is None else f"={self.request_timeout_s:g} s"
        return ElasticsearchTimeoutError(
            f"Elasticsearch did not answer within {ES_TIMEOUT_SETTING}{limit} while {doing}; "
            f"raise {ES_TIMEOUT_SETTING} if Elasticsearch is just slow, or retry later"
        )


@dataclass(frozen=True)
class ResolvedFields:
    """Configured field paths mapped to the aggregatable fields of the target indices."""

    aggregator: tuple[str, ...]
    target: tuple[str, ...]
    timestamp: str
    host: str | None


@dataclass
class _PairKeys:
    """Original composite key values of pairs whose strings cannot be turned back into a query."""

    by_pair: dict[Pair, list[tuple[tuple[Any, ...], tuple[Any, ...]]]] = field(default_factory=dict)


class ElasticsearchSource:
    """An :class:`~connector.sources.EventSource` over an index pattern and a time window.

    :param start: first instant counted (inclusive)
    :param end: end of the window (exclusive)
    :param budget: how long each request, and all of them together, may take (default: each request
        as the client is configured, no deadline)
    :param allowed_indices: patterns every concrete index read must match (``None``: no restriction,
        as for the command line); the index expression is resolved first (:mod:`connector.sources.scope`)
    :param ingest_time_field: with ``range_start``: the evaluated range is the events *ingested* in
        ``[range_start, end)`` (an event without the field: its timestamp decides), while counts keep
        using the event time; so an event that arrives after its hour was analysed is judged by the
        next span (docs/scheduling.md, "Late events")
    """

    def __init__(
        self,
        client: Elasticsearch,
        *,
        index: str,
        start: datetime,
        end: datetime,
        host_field: str = "host.name",
        composite_page_size: int = COMPOSITE_PAGE_SIZE,
        fetch_page_size: int = FETCH_PAGE_SIZE,
        budget: TimeBudget | None = None,
        allowed_indices: tuple[str, ...] | None = None,
        ingest_time_field: str | None = None,
        range_start: datetime | None = None,
    ) -> None:
        self.client = client
        self.ingest_time_field = ingest_time_field if range_start is not None else None
        self.range_start = range_start
        self.scope = None if allowed_indices is None else IndexScope(index, allowed_indices)
        self.budget = budget or TimeBudget()
        self.index = index
        self.start = start
        self.end = end
        self.host_field = host_field
        self.composite_page_size = composite_page_size
        self.fetch_page_size = fetch_page_size
        self.requests = 0
        self.documents_fetched = 0
        self._fields: ResolvedFields | None = None
        self._path_fields: dict[str, str | None] = {}
        self._caps: Mapping[str, Mapping[str, Any]] = {}
        self._field_caps_response: Mapping[str, Any] | None = None
        self._keys = _PairKeys()

    # -- the EventSource protocol -------------------------------------------------------------

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        counts = PairCounts()
        pages = self._composite_pages(use_case, self.pair_sources(use_case))
        self.fold_key_counts(use_case, counts, (self.key_count(use_case, bucket) for bucket in pages))
        return counts, pages.events

    def pair_sources(self, use_case: UseCase) -> list[dict[str, Any]]:
        """The composite sources of the pair counts: ``a0..`` the aggregator fields, ``t0..`` the targets."""
        fields = self.resolve_fields(use_case)
        names = [f"a{i}" for i in range(len(fields.aggregator))] + [
            f"t{i}" for i in range(len(fields.target))
        ]
        return [
            {name: {"terms": {"field": path}}}
            for name, path in zip(names, fields.aggregator + fields.target, strict=True)
        ]

    def key_count(self, use_case: UseCase, bucket: Mapping[str, Any]) -> KeyCount:
        """A composite bucket of :meth:`pair_sources` as (aggregator values, target values, count)."""
        fields = self.resolve_fields(use_case)
        key = bucket["key"]
        aggregator_values = tuple(key[f"a{i}"] for i in range(len(fields.aggregator)))
        target_values = tuple(key[f"t{i}"] for i in range(len(fields.target)))
        return aggregator_values, target_values, bucket["doc_count"]

    def fold_key_counts(self, use_case: UseCase, counts: PairCounts, key_counts: Iterable[KeyCount]) -> None:
        """Add counted keys to ``counts``, remembering the keys whose pair string cannot be queried back."""
        fields = self.resolve_fields(use_case)
        reconstructible = len(fields.aggregator) == 1 and len(fields.target) == 1
        for aggregator_values, target_values, count in key_counts:
            pair = (_joined(aggregator_values), _joined(target_values))
            counts.add(*pair, count)
            if not (
                reconstructible
                and isinstance(aggregator_values[0], str)
                and isinstance(target_values[0], str)
            ):
                self._keys.by_pair.setdefault(pair, []).append((aggregator_values, target_values))

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        clauses = self._pair_clauses(use_case, sorted(pairs))
        for start in range(0, len(clauses), CLAUSES_PER_SEARCH):
            batch = clauses[start : start + CLAUSES_PER_SEARCH]
            query = self.base_query(use_case, extra=[{"bool": {"should": batch, "minimum_should_match": 1}}])
            for hit in self._fetch(query, use_case):
                self.documents_fetched += 1
                yield from entries_of_event(use_case, hit, pairs)

    def _composite_pages(
        self,
        use_case: UseCase | RareChildUseCase,
        sources: list[dict[str, Any]],
        sub_aggs: Mapping[str, Any] | None = None,
        *,
        start: datetime | None = None,
    ) -> _CompositePages:
        """Every bucket of a composite aggregation over the use case's events (from ``start`` when given)."""
        return _CompositePages(self, use_case, sources, dict(sub_aggs or {}), start)

    def composite_buckets(
        self,
        use_case: UseCase | RareChildUseCase,
        sources: list[dict[str, Any]],
        sub_aggs: Mapping[str, Any] | None = None,
        *,
        start: datetime | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> tuple[list[Mapping[str, Any]], int]:
        """Every bucket of a composite aggregation over the use case's events (from ``start``, or those
        of ``query``), and how many events it counted."""
        pages = _CompositePages(self, use_case, sources, dict(sub_aggs or {}), start, query=query)
        return list(pages), pages.events

    # -- per-hour counts, for the baseline summary (connector/progress/) ---------------------

    def event_time_query(
        self, use_case: UseCase | RareChildUseCase, start: datetime, end: datetime
    ) -> dict[str, Any]:
        """The use case's events (its filter and profile conditions) with ``start <= timestamp < end``:
        event time only, whatever the span."""
        return {
            "bool": {
                "filter": [self._timestamp_range(use_case, start, end), *self._use_case_filters(use_case)]
            }
        }

    def _timestamp_range(
        self, use_case: UseCase | RareChildUseCase, start: datetime, end: datetime
    ) -> dict[str, Any]:
        timestamp = self.resolve_fields(use_case).timestamp
        window = {"gte": isoformat_z(start), "lt": isoformat_z(end), "format": "strict_date_optional_time"}
        return {"range": {timestamp: window}}

    def _hours_histogram(self, use_case: UseCase | RareChildUseCase) -> dict[str, Any]:
        timestamp = self.resolve_fields(use_case).timestamp
        return {"date_histogram": {"field": timestamp, "fixed_interval": "1h", "min_doc_count": 1}}

    def freshness_totals(
        self, use_case: UseCase | RareChildUseCase, baseline_start: datetime, range_start: datetime
    ) -> tuple[int, dict[int, int]]:
        """All events (no filter) of the baseline, and of each hour of the span: the summary's change
        signature, in one round trip (a multi-search).

        The baseline's total is a range on the timestamp alone with no aggregation, which Elasticsearch
        counts from its point index without visiting events; only the span's events are bucketed.
        """
        baseline = {"size": 0, "track_total_hits": True}
        baseline["query"] = self._timestamp_range(use_case, baseline_start, range_start)
        single = _one_hour(range_start, self.end)  # the scheduled case: a count, as for the baseline
        span = {
            "size": 0,
            "track_total_hits": single,
            "query": self._timestamp_range(use_case, range_start, self.end),
            **({} if single else {"aggs": {"hours": self._hours_histogram(use_case)}}),
        }
        header = {"index": self.index, "allow_partial_search_results": False}
        answer = self._call("msearch", searches=[header, baseline, header, span])
        responses = answer.get("responses", [])
        if len(responses) != 2 or any("error" in item for item in responses):
            # One request each: an error is then raised (and translated) as for any single request.
            total = int(self._call("count", index=self.index, query=baseline["query"])["count"])
            return total, self.hourly_events(use_case, range_start, self.end, filtered=False)
        total = int(responses[0]["hits"]["total"]["value"])
        if single:
            span_total = int(responses[1]["hits"]["total"]["value"])
            return total, {epoch_ms(range_start): span_total} if span_total else {}
        buckets = responses[1].get("aggregations", {}).get("hours", {}).get("buckets", [])
        return total, {int(bucket["key"]): int(bucket["doc_count"]) for bucket in buckets}

    def hourly_events(
        self, use_case: UseCase | RareChildUseCase, start: datetime, end: datetime, *, filtered: bool = True
    ) -> dict[int, int]:
        """Events per UTC hour (epoch ms of its start) in ``[start, end)``: one request, no pair keys.

        :param filtered: the use case's events (else every event: the summary's change signature)
        """
        query = (
            self.event_time_query(use_case, start, end)
            if filtered
            else self._timestamp_range(use_case, start, end)
        )
        response = self._call(
            "search",
            index=self.index,
            size=0,
            track_total_hits=False,
            allow_partial_search_results=False,
            query=query,
            aggs={"hours": self._hours_histogram(use_case)},
        )
        buckets = response.get("aggregations", {}).get("hours", {}).get("buckets", [])
        return {int(bucket["key"]): int(bucket["doc_count"]) for bucket in buckets}

    def hourly_buckets(
        self,
        use_case: UseCase | RareChildUseCase,
        start: datetime,
        end: datetime,
        sources: list[dict[str, Any]],
        sub_aggs: Mapping[str, Any] | None = None,
    ) -> tuple[dict[int, int], dict[int, list[Mapping[str, Any]]]]:
        """The use case's events per UTC hour in ``[start, end)``, and the buckets of a composite
        aggregation over ``sources`` per hour; the first page and the event histogram in one request."""
        query = self.event_time_query(use_case, start, end)
        if _one_hour(start, end):  # the scheduled case: the aggregation of a call without a baseline
            buckets, events = self.composite_buckets(use_case, sources, sub_aggs, query=query)
            hour = epoch_ms(start)
            return ({hour: events} if events else {}), ({hour: buckets} if buckets else {})
        timestamp = self.resolve_fields(use_case).timestamp
        hour_sources = [{"hour": {"date_histogram": {"field": timestamp, "fixed_interval": "1h"}}}, *sources]
        pages = _CompositePages(
            self,
            use_case,
            hour_sources,
            dict(sub_aggs or {}),
            query=query,
            beside={"hours": self._hours_histogram(use_case)},
        )
        hours: dict[int, list[Mapping[str, Any]]] = {}
        for bucket in pages:
            hours.setdefault(int(bucket["key"]["hour"]), []).append(bucket)
        events = pages.beside.get("hours", {}).get("buckets", [])
        return {int(bucket["key"]): int(bucket["doc_count"]) for bucket in events}, hours

    def hourly_key_counts(
        self, use_case: UseCase, start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[int, list[KeyCount]]]:
        """The terms model's events and pair counts of ``[start, end)`` per UTC hour."""
        events, buckets = self.hourly_buckets(use_case, start, end, self.pair_sources(use_case))
        counts = {
            hour: [self.key_count(use_case, bucket) for bucket in found] for hour, found in buckets.items()
        }
        return events, counts

    def runs_query(
        self, use_case: UseCase | RareChildUseCase, runs: Sequence[tuple[datetime, datetime]]
    ) -> dict[str, Any]:
        """The use case's events whose timestamp lies in one of ``runs`` (``[start, end)`` each)."""
        ranges = [self._timestamp_range(use_case, start, end) for start, end in runs]
        within = {"bool": {"should": ranges, "minimum_should_match": 1}}
        return {"bool": {"filter": [within, *self._use_case_filters(use_case)]}}

    def key_counts_in(
        self, use_case: UseCase, runs: Sequence[tuple[datetime, datetime]]
    ) -> tuple[list[KeyCount], int]:
        """Pair counts of the events in ``runs`` (:meth:`runs_query`) together, with their number."""
        return self._key_counts(use_case, self.runs_query(use_case, runs))

    def _key_counts(self, use_case: UseCase, query: Mapping[str, Any]) -> tuple[list[KeyCount], int]:
        buckets, events = self.composite_buckets(use_case, self.pair_sources(use_case), query=query)
        return [self.key_count(use_case, bucket) for bucket in buckets], events

    def outside_query(
        self, use_case: UseCase | RareChildUseCase, start: datetime, end: datetime
    ) -> dict[str, Any]:
        """Counted events whose timestamp is outside ``[start, end)``: late events, selected by their
        ingest time (never any without an ingest-time field)."""
        return {
            "bool": {
                "filter": [self.base_query(use_case)],
                "must_not": [self._timestamp_range(use_case, start, end)],
            }
        }

    def key_counts_outside(
        self, use_case: UseCase, start: datetime, end: datetime
    ) -> tuple[list[KeyCount], int]:
        """Pair counts of the events outside ``[start, end)`` (:meth:`outside_query`), with their number."""
        if self.ingest_time_field is None:
            return [], 0
        return self._key_counts(use_case, self.outside_query(use_case, start, end))

    # -- the rarechild model ------------------------------------------------------------------

    def rarechild_tallies(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[PairTally], list[PathCount], int]:
        """:meth:`rarechild_counts` with its groups folded per stored pair, as the model takes them."""
        groups, paths, events = self.rarechild_counts(use_case, range_start)
        return tally_groups(groups), paths, events

    def rarechild_counts(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[GroupCount], list[PathCount], int]:
        """Per (parent, child, host) and per (parent, child, path) counts, in two composite aggregations.

        The paths are counted, not judged: the model decides which are user-writable or outside a system
        binary's directory, with the same code for both sources.

        :param range_start: with a baseline, where the evaluated range begins: each group says how many
            of its events lie in the range and when it was first seen; paths count in-range events only
        """
        (host_sources, host_aggs, _), _ = self.rarechild_aggregations(use_case, range_start)
        pages = self._composite_pages(use_case, host_sources, host_aggs)
        groups = [group_count(bucket) for bucket in pages]
        return groups, self.rarechild_paths(use_case, range_start), pages.events

    def rarechild_paths(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> list[PathCount]:
        """Per (parent, child, path) counts of the range's events; none when the index has no path."""
        _, path_spec = self.rarechild_aggregations(use_case, range_start)
        if path_spec is None:
            return []
        path_sources, _, start = path_spec
        paths: list[PathCount] = []
        for bucket in self._composite_pages(use_case, path_sources, start=start):
            key = bucket["key"]
            path = key.get("x")
            paths.append(
                PathCount(
                    str(key["p"]), str(key["c"]), None if path is None else str(path), bucket["doc_count"]
                )
            )
        return paths

    def rarechild_aggregations(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[
        tuple[list[dict[str, Any]], dict[str, Any], datetime | None],
        tuple[list[dict[str, Any]], dict[str, Any], datetime | None] | None,
    ]:
        """The (composite sources, sub-aggregations, query start) of both counts of :meth:`rarechild_counts`.

        The second is None when the index has no ``path_field``.
        """
        fields = self.resolve_fields(use_case)
        path = self.path_field(use_case)
        host_sources: list[dict[str, Any]] = [
            {"p": {"terms": {"field": fields.aggregator[0]}}},
            {"c": {"terms": {"field": fields.target[0]}}},
        ]
        if fields.host:
            host_sources.append({"h": {"terms": {"field": fields.host, "missing_bucket": True}}})
        host_aggs: dict[str, Any] = {}
        if range_start is not None:
            host_aggs["in_range"] = {"filter": self.in_range_filter(fields.timestamp, start=range_start)}
            host_aggs["first"] = {"min": {"field": fields.timestamp}}
        if path is None:
            return (host_sources, host_aggs, None), None
        path_sources = [
            {"p": {"terms": {"field": fields.aggregator[0]}}},
            {"c": {"terms": {"field": fields.target[0]}}},
            {"x": {"terms": {"field": path, "missing_bucket": True}}},
        ]
        return (host_sources, host_aggs, None), (path_sources, {}, range_start)

    def rarechild_hits(
        self,
        use_case: RareChildUseCase,
        wanted: dict[Pair, frozenset[str] | None],
        range_start: datetime | None = None,
    ) -> dict[Pair, list[dict[str, Any]]]:
        """The in-range events of each stored (parent, child) in ``wanted``, oldest first.

        ``wanted[pair]`` a set of paths: only the events run from one of them (the flagged ones).
        """
        fields = self.resolve_fields(use_case)
        path = self.path_field(use_case)
        found: dict[Pair, list[dict[str, Any]]] = {pair: [] for pair in wanted}
        clauses = self._pair_clauses(use_case, sorted(pair for pair, only in wanted.items() if only is None))
        for (parent, child), only in sorted(wanted.items()):
            if only is None:
                continue
            if path is None or not only:
                continue  # no path field: nothing can be flagged
            clauses.append(
                {
                    "bool": {
                        "filter": [
                            {"term": {fields.aggregator[0]: parent}},
                            {"term": {fields.target[0]: child}},
                            {"terms": {path: sorted(only)}},
                        ]
                    }
                }
            )
        for offset in range(0, len(clauses), CLAUSES_PER_SEARCH):
            batch = clauses[offset : offset + CLAUSES_PER_SEARCH]
            query = self.base_query(
                use_case, extra=[{"bool": {"should": batch, "minimum_should_match": 1}}], start=range_start
            )
            for hit in self._fetch(query, use_case):
                self.documents_fetched += 1
                source = hit.get("_source") or {}
                pairs = event_pairs(source, aggregator=use_case.aggregator, target=use_case.target) or []
                event_path = text_at(source, use_case.path_field)
                for pair in dict.fromkeys(pairs):
                    if pair in found and (wanted[pair] is None or event_path in wanted[pair]):
                        found[pair].append(hit)
        return found

    def path_field(self, use_case: RareChildUseCase) -> str | None:
        """The aggregatable field of ``path_field``, or None when the index has none (path factors off)."""
        if use_case.path_field not in self._path_fields:
            self.resolve_fields(use_case)
            caps = self._caps
            try:
                resolved: str | None = _aggregatable_field(
                    caps,
                    use_case.path_field,
                    option="path_field",
                    section=use_case.section,
                    indices=self.index,
                )
            except FieldError:
                resolved = None
            self._path_fields[use_case.path_field] = resolved
        return self._path_fields[use_case.path_field]

    def in_range_filter(self, timestamp: str, *, start: datetime) -> dict[str, Any]:
        """The events of the evaluated range: from ``start`` on, by ingest time when configured."""
        if self.ingest_time_field is None:
            return {"range": {timestamp: {"gte": isoformat_z(start), "format": "strict_date_optional_time"}}}
        return self._ingested_clause(timestamp, start)

    def _ingested_clause(self, timestamp: str, start: datetime) -> dict[str, Any]:
        ingested = self.ingest_time_field
        assert ingested is not None
        window = {
            "gte": isoformat_z(start),
            "lt": isoformat_z(self.end),
            "format": "strict_date_optional_time",
        }
        return {
            "bool": {
                "should": [
                    {"range": {ingested: window}},
                    {
                        "bool": {
                            "filter": [{"range": {timestamp: window}}],
                            "must_not": [{"exists": {"field": ingested}}],
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }

    def in_range(self, hit: Mapping[str, Any], range_start: datetime) -> bool:
        """Whether a fetched hit belongs to the evaluated range (see :meth:`in_range_filter`)."""
        first_ms = int(range_start.timestamp() * 1000)
        end_ms = int(self.end.timestamp() * 1000)
        values = (hit.get("fields") or {}).get(self.ingest_time_field or "", [])
        if self.ingest_time_field is not None and values:
            return first_ms <= int(float(values[0])) < end_ms
        sort = hit.get("sort") or [0]
        return int(sort[0]) >= first_ms

    # -- field resolution ---------------------------------------------------------------------

    def field_names(self) -> frozenset[str]:
        """Every field the target indices map (what a data profile is detected from)."""
        return frozenset(self._field_caps().get("fields", {}))

    def _field_caps(self) -> Mapping[str, Any]:
        """The field capabilities of the target indices, asked once per detection."""
        if self._field_caps_response is None:
            self._admit_indices()
            self._field_caps_response = self._call(
                "field_caps", index=self.index, fields="*", allow_no_indices=True
            )
        return self._field_caps_response

    def resolve_fields(self, use_case: UseCase) -> ResolvedFields:
        """Map each configured path to an aggregatable field (a text field uses its keyword sub-field)."""
        if self._fields is not None:
            return self._fields
        response = self._field_caps()
        indices = response.get("indices", [])
        if not indices:
            raise FieldError(
                f"the index pattern {self.index!r} matches no index that the connector's Elasticsearch "
                "credentials may read; check the index name and the role's index patterns, or wait for data",
                details=[{"index": self.index}],
            )
        caps: Mapping[str, Mapping[str, Any]] = response.get("fields", {})
        self._caps = caps
        where = ", ".join(indices[:5]) + (" ..." if len(indices) > 5 else "")

        def resolve(path: str, option: str) -> str:
            return _aggregatable_field(caps, path, option=option, section=use_case.section, indices=where)

        timestamp = _existing_field(caps, use_case.timestamp_field)
        if timestamp is None or not ({"date", "date_nanos"} & set(caps[timestamp])):
            raise FieldError(
                f"[{use_case.section}] timestamp_field {use_case.timestamp_field!r} is not a date field "
                f"in {where}; set timestamp_field to the events' time field",
                details=[{"field": use_case.timestamp_field, "indices": indices[:20]}],
            )
        try:
            host = resolve(use_case.host_field, "host_field")
        except FieldError:
            host = None  # host counts are an explanation, not a requirement
        self._fields = ResolvedFields(
            aggregator=tuple(resolve(path, "aggregator") for path in use_case.aggregator),
            target=tuple(resolve(path, "target") for path in use_case.target),
            timestamp=timestamp,
            host=host,
        )
        return self._fields

    def _admit_indices(self) -> None:
        """Resolve the expression to concrete indices and refuse any outside the allowed patterns.

        Names that do not exist resolve to nothing here; field caps then says so as before.
        """
        if self.scope is None:
            return
        resolved = self._call(
            "indices.resolve_index", name=self.index, ignore_unavailable=True, allow_no_indices=True
        )
        self.scope.admit(resolved)

    def _checked(self, hit: Mapping[str, Any]) -> dict[str, Any]:
        """The kept keys of a hit whose index is admitted (refused before it is reported or written)."""
        if self.scope is not None:
            self.scope.check_hit(hit)
        return {key: hit[key] for key in _HIT_KEYS if key in hit}

    # -- queries ------------------------------------------------------------------------------

    def base_query(
        self, use_case: UseCase, *, extra: Sequence[Mapping[str, Any]] = (), start: datetime | None = None
    ) -> dict[str, Any]:
        """The use case's filter within the window; absolute times so caches and pages agree."""
        fields = self.resolve_fields(use_case)
        window: Mapping[str, Any] = {
            "range": {
                fields.timestamp: {
                    "gte": isoformat_z(start or self.start),
                    "lt": isoformat_z(self.end),
                    "format": "strict_date_optional_time",
                }
            }
        }
        if self.ingest_time_field is not None and self.range_start is not None:
            ingested = self._ingested_clause(fields.timestamp, start or self.range_start)
            # From a start (the range's own events): the ingested ones; else the counted window as well.
            window = ingested if start is not None else {"bool": {"should": [window, ingested]}}
        return {"bool": {"filter": [window, *self._use_case_filters(use_case), *extra]}}

    @staticmethod
    def _use_case_filters(use_case: UseCase | RareChildUseCase) -> list[Mapping[str, Any]]:
        """The use case's own filter and its data profile's conditions (e.g. ECS process starts only)."""
        filters: list[Mapping[str, Any]] = []
        if use_case.es_dsl_filter:
            filters.extend(item["query"] for item in use_case.es_dsl_filter)
        elif use_case.es_query_filter:
            filters.append({"query_string": {"query": use_case.es_query_filter}})
        filters.extend({"term": {name: value}} for name, value in use_case.profile_conditions)
        return filters

    def _pair_clauses(self, use_case: UseCase, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
        fields = self.resolve_fields(use_case)
        simple: dict[str, list[str]] = {}
        clauses: list[dict[str, Any]] = []
        for pair in pairs:
            keys = self._keys.by_pair.get(pair)
            if keys is None:
                simple.setdefault(pair[0], []).append(pair[1])
                continue
            for aggregator_values, target_values in keys:
                terms = [
                    {"term": {path: value}}
                    for path, value in zip(
                        fields.aggregator + fields.target, aggregator_values + target_values, strict=True
                    )
                ]
                clauses.append({"bool": {"filter": terms}})
        for aggregator_value, terms in simple.items():
            clauses.append(
                {
                    "bool": {
                        "filter": [
                            {"term": {fields.aggregator[0]: aggregator_value}},
                            {"terms": {fields.target[0]: terms}},
                        ]
                    }
                }
            )
        return clauses

    def _docvalues(self) -> dict[str, Any]:
        """The ingest time of each fetched hit, as epoch milliseconds (for :meth:`in_range`)."""
        if self.ingest_time_field is None:
            return {}
        return {"docvalue_fields": [{"field": self.ingest_time_field, "format": "epoch_millis"}]}

    def _fetch(self, query: Mapping[str, Any], use_case: UseCase) -> Iterator[dict[str, Any]]:
        """Every hit of ``query``. Candidates are usually few: one plain search returns them all,
        and only a full page needs the point-in-time scan (which starts over, consistently)."""
        response = self._call(
            "search",
            index=self.index,
            size=self.fetch_page_size,
            query=query,
            **self._docvalues(),
            sort=self._sort(use_case),
            track_total_hits=False,
            seq_no_primary_term=True,
            allow_partial_search_results=False,
        )
        hits = response["hits"]["hits"]
        if len(hits) < self.fetch_page_size:
            for hit in hits:
                yield self._checked(hit)
            return
        yield from self._scan(query, use_case)

    def _sort(self, use_case: UseCase) -> list[dict[str, Any]]:
        timestamp = self.resolve_fields(use_case).timestamp
        return [{timestamp: {"order": "asc", "format": "epoch_millis"}}]

    def _scan(self, query: Mapping[str, Any], use_case: UseCase) -> Iterator[dict[str, Any]]:
        """Every hit of ``query`` in a point in time, oldest first, with sequence numbers."""
        pit = self._call("open_point_in_time", index=self.index, keep_alive=PIT_KEEP_ALIVE)["id"]
        try:
            after: list[Any] | None = None
            while True:
                response = self._call(
                    "search",
                    pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                    size=self.fetch_page_size,
                    query=query,
                    sort=self._sort(use_case),
                    search_after=after,
                    **self._docvalues(),
                    track_total_hits=False,
                    seq_no_primary_term=True,
                    allow_partial_search_results=False,
                )
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                if not hits:
                    return
                for hit in hits:
                    yield self._checked(hit)
                if len(hits) < self.fetch_page_size:
                    return
                after = hits[-1]["sort"]
        finally:
            try:
                self.requests += 1
                client = self.budget.bind(self.client, "closing a point in time")
                client.options(ignore_status=404).close_point_in_time(id=pit)
            except (ApiError, TransportError, ElasticsearchTimeoutError) as error:
                # The point in time expires by itself (PIT_KEEP_ALIVE).
                log.warning("could not close point in time: %s", type(error).__name__)

    # -- when nothing was counted -------------------------------------------------------------

    def empty_range_hint(self, use_case: UseCase | RareChildUseCase) -> str:
        """Why a detection counted no event, and where the data is: one request, only then.

        The whole index (no time range, no filter) is looked at: its event count and first and last
        timestamp say whether the range or the filter missed it.
        """
        fields = self.resolve_fields(use_case)
        response = self._call(
            "search",
            index=self.index,
            size=0,
            track_total_hits=True,
            allow_partial_search_results=False,
            aggs={
                "first": {"min": {"field": fields.timestamp, "format": "strict_date_optional_time"}},
                "last": {"max": {"field": fields.timestamp, "format": "strict_date_optional_time"}},
            },
        )
        total = response["hits"]["total"]["value"]
        searched = f"no event of {self.index} in [{isoformat_z(self.start)}, {isoformat_z(self.end)})"
        if not total:
            return f"{searched}: the index holds no events at all; load events or check the index name"
        aggregations = response.get("aggregations", {})
        first = aggregations.get("first", {}).get("value_as_string")
        last = aggregations.get("last", {}).get("value_as_string")
        return (
            f"{searched} matched use case {use_case.section}; the index holds {total:,} events from {first} "
            f"to {last} ({fields.timestamp}): ask for a range inside it, or check the use case's filter"
        )

    # -- explanations -------------------------------------------------------------------------

    def explain(
        self,
        use_case: UseCase,
        pairs: Iterable[Pair],
        counts: PairCounts,
        *,
        range_start: datetime | None = None,
    ) -> dict[Pair, Explanation]:
        """Context for outlier pairs only: aggregator totals, top terms, hosts, first sighting.

        :param range_start: with a baseline, where the reported range begins; the pair is
            "first seen in range" when none of its events lie before it.
        """
        fields = self.resolve_fields(use_case)
        wanted = sorted(set(pairs))
        hosts: dict[Pair, int | None] = {}
        before: dict[Pair, int] = {}
        if wanted and (fields.host or range_start is not None):
            for offset in range(0, len(wanted), PAIRS_PER_EXPLAIN):
                batch = wanted[offset : offset + PAIRS_PER_EXPLAIN]
                filters = {
                    f"p{i}": {
                        "bool": {"should": self._pair_clauses(use_case, [pair]), "minimum_should_match": 1}
                    }
                    for i, pair in enumerate(batch)
                }
                sub_aggs: dict[str, Any] = {}
                if fields.host:
                    sub_aggs["hosts"] = {"cardinality": {"field": fields.host, "precision_threshold": 1000}}
                if range_start is not None:
                    sub_aggs["before"] = {
                        "filter": {
                            "bool": {"must_not": [self.in_range_filter(fields.timestamp, start=range_start)]}
                        }
                        if self.ingest_time_field is not None
                        else {
                            "range": {
                                fields.timestamp: {
                                    "lt": isoformat_z(range_start),
                                    "format": "strict_date_optional_time",
                                }
                            }
                        }
                    }
                response = self._call(
                    "search",
                    index=self.index,
                    size=0,
                    track_total_hits=False,
                    allow_partial_search_results=False,
                    query=self.base_query(use_case),
                    aggs={"pairs": {"filters": {"filters": filters}, "aggs": sub_aggs}},
                )
                buckets = response["aggregations"]["pairs"]["buckets"]
                for i, pair in enumerate(batch):
                    bucket = buckets[f"p{i}"]
                    hosts[pair] = bucket["hosts"]["value"] if fields.host else None
                    if range_start is not None:
                        before[pair] = bucket["before"]["doc_count"]
        explanations = {}
        for pair in wanted:
            terms = counts.by_aggregator.get(pair[0], {})
            top = sorted(terms.items(), key=lambda item: (-item[1], item[0]))[:TOP_TERMS]
            explanations[pair] = Explanation(
                aggregator_total=sum(terms.values()),
                aggregator_distinct_terms=len(terms),
                top_terms=tuple(top),
                host_count=hosts.get(pair),
                first_seen_in_range=(before[pair] == 0) if pair in before else None,
            )
        return explanations

    # -- error translation --------------------------------------------------------------------

    def _call(self, api: str, **kwargs: Any) -> Any:
        """One request through the client method named ``api`` (``search``, ``indices.resolve_index``...),
        with the timeout the budget leaves for it; a timeout names the limit that was reached."""
        self.requests += 1
        doing = f"running a {api.rsplit('.', 1)[-1].replace('_', ' ')} request"
        client = self.budget.bind(self.client, doing)
        try:
            return call_elasticsearch(operator.attrgetter(api)(client), **kwargs)
        except ElasticsearchTimeoutError:
            raise self.budget.timeout_error(doing) from None


class _CompositePages:
    """Iterates the buckets of a paged composite aggregation; ``events`` is the first page's hit total.

    Big pages, because each page re-runs the query. With no pipeline sub-aggregation a short page is the
    last one, which saves a request that would re-run the whole query only to return nothing.
    """

    def __init__(
        self,
        source: ElasticsearchSource,
        use_case: UseCase | RareChildUseCase,
        sources: list[dict[str, Any]],
        sub_aggs: dict[str, Any],
        start: datetime | None = None,
        query: Mapping[str, Any] | None = None,
        beside: Mapping[str, Any] | None = None,
    ) -> None:
        self._query = query
        self._beside = dict(beside or {})
        self.beside: dict[str, Any] = {}  # the first page's answers to ``beside``
        self._source = source
        self._use_case = use_case
        self._sources = sources
        self._sub_aggs = sub_aggs
        self._start = start
        self.events = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        source = self._source
        after: dict[str, Any] | None = None
        first = True
        while True:
            composite: dict[str, Any] = {"size": source.composite_page_size, "sources": self._sources}
            if after is not None:
                composite["after"] = after
            aggregation: dict[str, Any] = {"composite": composite}
            if self._sub_aggs:
                aggregation["aggs"] = self._sub_aggs
            aggs = {"pairs": aggregation, **(self._beside if first else {})}
            response = source._call(
                "search",
                index=source.index,
                size=0,
                track_total_hits=first,
                allow_partial_search_results=False,
                query=self._query or source.base_query(self._use_case, start=self._start),
                aggs=aggs,
            )
            if first:
                self.events = response["hits"]["total"]["value"]
                self.beside = {name: response.get("aggregations", {}).get(name, {}) for name in self._beside}
                first = False
            result = response.get("aggregations", {}).get("pairs", {})
            buckets = result.get("buckets", [])
            yield from buckets
            after = result.get("after_key")
            if not buckets or after is None or len(buckets) < source.composite_page_size:
                return


def call_elasticsearch(method: Callable[..., T], **kwargs: Any) -> T:
    """Call the client, turning its two exception families into the project's errors."""
    try:
        return method(**kwargs)
    except EsConnectionTimeout:
        raise ElasticsearchTimeoutError(
            "Elasticsearch did not answer in time; retry later or raise CONNECTOR_ES_TIMEOUT_SECONDS"
        ) from None
    except EsConnectionError as error:
        if isinstance(error, EsSSLError) or "certificate" in str(error).lower():
            raise ElasticsearchTlsError(tls_failure_message(error)) from None
        raise ElasticsearchUnavailableError("Elasticsearch is unreachable; retry later") from None
    except TransportError as error:
        raise ElasticsearchUnavailableError(
            f"Elasticsearch transport failed ({type(error).__name__})"
        ) from None
    except ApiError as error:
        raise translate_api_error(error) from None


#: What OpenSSL says when the other side answers a TLS handshake in plain text (versions differ).
_NOT_TLS_MARKERS = (
    "wrong version number",
    "record layer failure",
    "packet length too long",
    "unknown protocol",
)


def tls_failure_message(error: Exception) -> str:
    """What the TLS handshake refused, in the verifier's words, and the fix (a node answering in plain
    HTTP is not a certificate problem).

    ``str()`` of the client's TLS error is only "TLS error"; its ``message`` has the reason
    ("certificate verify failed: unable to get local issuer certificate"). Neither holds the URL or a
    credential.
    """
    text = str(getattr(error, "message", "") or error)
    if any(marker in text.lower() for marker in _NOT_TLS_MARKERS):
        return (
            "Elasticsearch does not speak TLS on that port (the TLS handshake got a plain-HTTP answer); "
            "use an http:// CONNECTOR_ES_URL, or enable TLS on Elasticsearch's HTTP layer"
        )
    marker = "certificate verify failed"
    detail = text[text.find(marker) :].split(" (_ssl", 1)[0] if marker in text else ""
    return (
        "TLS verification of Elasticsearch's certificate failed"
        + (f" ({detail})" if detail else "")
        + "; set CONNECTOR_ES_CA_CERTS to the PEM file of the CA that signed Elasticsearch's certificate"
    )


def translate_api_error(error: ApiError) -> Exception:
    status = error.meta.status if error.meta is not None else 0
    reason = elasticsearch_reason(error)
    if status == 400:
        return QueryRejectedError(f"Elasticsearch rejected the query: {reason}", details=[{"reason": reason}])
    if status == 401:
        return ElasticsearchAuthError(
            "Elasticsearch refused the connector's credentials; check CONNECTOR_ES_API_KEY "
            "(or CONNECTOR_ES_USERNAME/CONNECTOR_ES_PASSWORD)"
        )
    if status == 403:
        return ElasticsearchAuthError(
            f"the connector's Elasticsearch credentials lack a privilege: {reason}",
            details=[{"reason": reason}],
        )
    if status == 404:
        return QueryRejectedError(
            f"Elasticsearch could not find what the query names: {reason}", details=[{"reason": reason}]
        )
    if status == 503 and (shards := unavailable_shards(error.body)) is not None:
        return index_unavailable_error(shards)
    return ElasticsearchUnavailableError(f"Elasticsearch answered {status}: {reason}")


def index_unavailable_error(shards: list[dict[str, Any]]) -> IndexUnavailableError:
    """Refusing a detection over indices with unavailable shards (see :mod:`connector.sources.shards`)."""
    names = [
        f"[{shard['index']}][{shard['shard']}]" if "shard" in shard else f"[{shard['index']}] (every shard)"
        for shard in shards
    ]
    listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    which = f"these shards have no active copy: {listed}" if names else "some shards have no active copy"
    return IndexUnavailableError(
        f"Elasticsearch cannot search all of the requested data: {which} (a red index). The detection is "
        "refused rather than counted from part of the events. Bring back the node(s) holding these "
        "shards, or restore them from a snapshot (GET _cluster/allocation/explain says why a shard is "
        "unassigned), then retry.",
        details=shards,
    )


def elasticsearch_reason(error: ApiError) -> str:
    """The most specific reason Elasticsearch gave, in one line.

    A shard failure's root cause ("Failed to parse query [...]") gains the first line of what
    caused it ("Cannot parse '...': Encountered "<EOF>" at line 1, column 27.").
    """
    body = error.body if isinstance(error.body, Mapping) else {}
    details = body.get("error")
    if not isinstance(details, Mapping):
        return str(error.message)
    reason = ""
    for cause in details.get("root_cause") or []:
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason = str(cause["reason"])
            break
    reason = reason or str(details.get("reason") or error.message)
    for failure in details.get("failed_shards") or []:
        caused_by = failure.get("reason", {}).get("caused_by") if isinstance(failure, Mapping) else None
        if isinstance(caused_by, Mapping) and caused_by.get("reason"):
            return f"{reason}: {str(caused_by['reason']).splitlines()[0]}"
    caused_by = details.get("caused_by")
    if isinstance(caused_by, Mapping) and caused_by.get("reason"):
        return f"{reason}: {str(caused_by['reason']).splitlines()[0]}"
    return reason


def group_count(bucket: Mapping[str, Any]) -> GroupCount:
    """A (parent ``p``, child ``c``, host ``h``) composite bucket as the rarechild model's group; its
    ``in_range`` and ``first`` sub-aggregations when asked for (else all its events are in range)."""
    key, count = bucket["key"], bucket["doc_count"]
    first = bucket.get("first", {}).get("value")
    return GroupCount(
        parent=str(key["p"]),
        child=str(key["c"]),
        host=None if key.get("h") is None else str(key["h"]),
        count=count,
        in_range=bucket["in_range"]["doc_count"] if "in_range" in bucket else count,
        first_ms=None if first is None else int(first),
    )


def _one_hour(start: datetime, end: datetime) -> bool:
    """Whether ``[start, end)`` is exactly one UTC hour, from its start."""
    return epoch_ms(start) % 3_600_000 == 0 and epoch_ms(end) - epoch_ms(start) == 3_600_000


def _joined(values: tuple[Any, ...]) -> str:
    return " - ".join(str(value) for value in values)


def _existing_field(caps: Mapping[str, Any], path: str) -> str | None:
    if path in caps:
        return path
    wanted = path.lower()
    for name in caps:
        if name.lower() == wanted:
            return name
    return None


def _aggregatable_field(
    caps: Mapping[str, Any], path: str, *, option: str, section: str, indices: str
) -> str:
    name = _existing_field(caps, path)
    if name is None:
        raise FieldError(
            f"[{section}] {option}: field {path!r} does not exist in {indices}; check the field path",
            details=[{"field": path, "option": option}],
        )
    types = {kind: info for kind, info in caps[name].items() if kind != "unmapped"}
    if len(types) > 1:
        raise FieldError(
            f"[{section}] {option}: field {name!r} has conflicting types across {indices}: "
            f"{', '.join(sorted(types))}; align the mappings or narrow the index pattern",
            details=[{"field": name, "types": sorted(types)}],
        )
    if types and all(info.get("aggregatable") for info in types.values()):
        return name
    for suffix in KEYWORD_SUBFIELDS:
        candidate = caps.get(f"{name}.{suffix}", {})
        if candidate and all(
            info.get("aggregatable") for kind, info in candidate.items() if kind != "unmapped"
        ):
            return f"{name}.{suffix}"
    for other, info in sorted(caps.items()):
        if other.startswith(name + ".") and "keyword" in info and info["keyword"].get("aggregatable"):
            return other
    kind = ", ".join(sorted(types)) or "unmapped"
    raise FieldError(
        f"[{section}] {option}: field {name!r} ({kind}) cannot be aggregated in {indices} and has no keyword "
        "sub-field; map it as keyword or add a .keyword sub-field",
        details=[{"field": name, "types": sorted(types)}],
    )
