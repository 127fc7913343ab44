"""The baseline summary: per-hour pair counts of analysed hours, kept in Elasticsearch.

One document per (use case fingerprint, UTC hour), and one rollup per whole day once its 24 hours are
known, under ids derived from what they cover, so rewriting one is idempotent. Each holds its matching
events (``events``), all its events (``total``, filter or not; a rollup also per hour) and its
(aggregator values, target values) keys with their counts, as a compressed blob (``binary``: stored,
never indexed). Summaries are used only while the totals still add up: one ``count`` of the whole
baseline (a range on the timestamp alone, which Elasticsearch answers from its point index without
reading events) must equal the sum of the stored totals; otherwise a per-hour histogram finds the hours
that changed and they are counted again from raw events and rewritten. So late events, deleted events
or a summary that was never written cost a recount, never a wrong count. (Events that arrive and leave
in equal numbers between two calls are the one change the check cannot see.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers

from connector.config import RareChildUseCase, UseCase
from connector.progress.indices import ensure_index
from connector.sources.elasticsearch import KeyCount, ResolvedFields, TimeBudget, call_elasticsearch
from connector.timerange import isoformat_z

log = logging.getLogger(__name__)

SUMMARY_MAPPINGS: Mapping[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "key": {"type": "keyword"},
        "use_case": {"type": "keyword"},
        "index": {"type": "keyword"},
        "hour": {"type": "date"},
        "events": {"type": "long"},
        "total": {"type": "long"},
        "hours": {"type": "short"},
        "hour_totals": {"type": "long"},
        "keys": {"type": "long"},
        "counts": {"type": "binary"},
        "written_at": {"type": "date"},
    },
}
# An explicit refresh interval keeps the index from going search-idle: the hours a call wrote are then
# searchable well before the next hourly call, whose realtime multi-get would otherwise refresh first.
SUMMARY_SETTINGS: Mapping[str, Any] = {
    "number_of_shards": 1,
    "auto_expand_replicas": "0-1",
    "refresh_interval": "1s",
}
MGET_BATCH = 1000
#: Missing or stale hours one call counts hour by hour and stores (the newest first); older ones are
#: counted raw in one aggregation and left for later calls. So a first call with a long baseline over a
#: big index costs about a raw count, not 720 hourly ones, and cannot outgrow its deadline every time.
FILL_HOURS = 168


def summary_key(
    use_case: UseCase | RareChildUseCase, index: str, fields: ResolvedFields, *, model: str = "terms"
) -> str:
    """What the counts depend on: the model, index, filters (the data profile's too) and the resolved
    fields (a mapping change is a new key)."""
    basis: dict[str, Any] = {
        "index": index,
        "filter": use_case.es_query_filter,
        "dsl": [dict(item) for item in use_case.es_dsl_filter or ()],
        "conditions": [list(condition) for condition in use_case.profile_conditions],
        "aggregator": list(fields.aggregator),
        "target": list(fields.target),
        "timestamp": fields.timestamp,
    }
    if model != "terms":  # the terms key predates the other models: it stays as it was
        basis.update(model=model, host=fields.host)
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:40]


def key_text(aggregator: Sequence[Any], target: Sequence[Any]) -> str:
    """A counted key as compact JSON: merging hours adds counts under these strings, and only the
    distinct keys of the result are parsed back (:func:`key_of`)."""
    return json.dumps([list(aggregator), list(target)], separators=(",", ":"), ensure_ascii=False)


def key_of(text: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    aggregator, target = json.loads(text)
    return tuple(aggregator), tuple(target)


@dataclass(frozen=True)
class HourSummary:
    """An hour (or a whole day of 24 hours, a rollup read in one document): matching events, all
    events, the total of each hour, and the counted keys (:func:`key_text`) with their counts and, for
    models that need it, the earliest event of each key (epoch ms)."""

    hour_ms: int
    events: int
    total: int
    keys: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    hours: int = 1
    hour_totals: tuple[int, ...] = ()
    firsts: tuple[int, ...] = ()
    host_names: tuple[str, ...] = ()
    host_masks: tuple[int, ...] = ()

    @property
    def hosts(self) -> tuple[tuple[str, ...], ...]:
        """Each key's hosts (bit ``i`` of its mask is ``host_names[i]``)."""
        return tuple(_names(mask, self.host_names) for mask in self.host_masks)

    def totals(self) -> tuple[int, ...]:
        """The total of each hour covered, first hour first."""
        return self.hour_totals or (self.total,)

    @classmethod
    def of(cls, hour_ms: int, events: int, total: int, key_counts: Iterable[KeyCount]) -> HourSummary:
        rows = [(key_text(aggregator, target), count) for aggregator, target, count in key_counts]
        return cls(hour_ms, events, total, tuple(key for key, _ in rows), tuple(count for _, count in rows))

    @classmethod
    def day(cls, day_ms: int, hours: Sequence[HourSummary]) -> HourSummary:
        """The rollup of a day's 24 consecutive hour summaries."""
        events, total = sum(hour.events for hour in hours), sum(hour.total for hour in hours)
        totals = tuple(hour.total for hour in hours)
        if any(hour.firsts for hour in hours):  # the rarechild model's hours: first events and hosts
            tallies = merge_tallies(hours)
            return cls(
                day_ms,
                events,
                total,
                tuple(tallies),
                tuple(count for count, _, _ in tallies.values()),
                hours=len(hours),
                hour_totals=totals,
                firsts=tuple(first for _, first, _ in tallies.values()),
                **host_columns([hosts for _, _, hosts in tallies.values()]),
            )
        merged = merge_counts(hours)
        return cls(
            day_ms, events, total, tuple(merged), tuple(merged.values()), hours=len(hours), hour_totals=totals
        )


def merge_counts(pieces: Iterable[HourSummary]) -> dict[str, int]:
    """Each key's summed count over ``pieces``."""
    sums: dict[str, int] = {}
    for piece in pieces:
        for text, count in zip(piece.keys, piece.counts, strict=True):
            sums[text] = sums.get(text, 0) + count
    return sums


def merge_tallies(pieces: Iterable[HourSummary]) -> dict[str, tuple[int, int, set[str]]]:
    """Each key's summed count, earliest event and the union of its hosts over ``pieces`` (hours of the
    rarechild model, whose keys are stored pairs: one step per pair and piece, hosts joined as bit masks;
    pieces with the same host list, the usual case, are joined without translating a bit)."""
    index: dict[str, int] = {}
    merged: dict[str, list[int]] = {}
    last: tuple[str, ...] | None = None
    positions: list[int] = []
    same = True
    for piece in pieces:
        if piece.host_names != last:
            last = piece.host_names
            positions = [index.setdefault(name, len(index)) for name in piece.host_names]
            same = positions == list(range(len(positions)))
        for text, count, first, mask in zip(
            piece.keys, piece.counts, piece.firsts, piece.host_masks, strict=True
        ):
            if not same:
                mask = _moved(mask, positions)
            known = merged.get(text)
            if known is None:
                merged[text] = [count, first, mask]
            else:
                known[0] += count
                known[1] = min(known[1], first)
                known[2] |= mask
    names = tuple(index)
    return {text: (count, first, set(_names(mask, names))) for text, (count, first, mask) in merged.items()}


def host_columns(host_sets: Sequence[Iterable[str]]) -> dict[str, tuple[Any, ...]]:
    """Hosts per key as :class:`HourSummary` stores them: the sorted names, and a bit mask per key."""
    sets = [set(hosts) for hosts in host_sets]
    names = tuple(sorted(set().union(*sets)))
    position = {name: i for i, name in enumerate(names)}
    masks = tuple(sum(1 << position[name] for name in hosts) for hosts in sets)
    return {"host_names": names, "host_masks": masks}


def _names(mask: int, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(names[i] for i, bit in enumerate(reversed(bin(mask)[2:])) if bit == "1")


def _moved(mask: int, positions: Sequence[int]) -> int:
    moved = 0
    for i, bit in enumerate(reversed(bin(mask)[2:])):
        if bit == "1":
            moved |= 1 << positions[i]
    return moved


def _encode(summary: HourSummary) -> str:
    rows: dict[str, Any] = {"k": summary.keys, "n": summary.counts}
    if summary.firsts:
        rows["f"] = summary.firsts
    if summary.host_masks:  # each host name once, each key's hosts as a bit mask over them (hex)
        rows["H"] = summary.host_names
        rows["m"] = [format(mask, "x") for mask in summary.host_masks]
    blob = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(zlib.compress(blob.encode())).decode()


def _decode(blob: str) -> dict[str, Any]:
    """The fields of :class:`HourSummary` a stored blob holds."""
    rows = json.loads(zlib.decompress(base64.b64decode(blob)))
    return {
        "keys": tuple(rows["k"]),
        "counts": tuple(rows["n"]),
        "firsts": tuple(rows.get("f", ())),
        "host_names": tuple(rows.get("H", ())),
        "host_masks": tuple(int(mask, 16) for mask in rows.get("m", ())),
    }


class SummaryStore:
    """Reads and writes hour summaries in ``index`` (``CONNECTOR_SUMMARY_INDEX``); ``fill_hours``: how
    many missing hours one call stores (:data:`FILL_HOURS`)."""

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        *,
        budget: TimeBudget | None = None,
        fill_hours: int = FILL_HOURS,
    ) -> None:
        self.client = client
        self.index = index
        self.budget = budget or TimeBudget()
        self.fill_hours = fill_hours
        self.requests = 0
        self._exists: bool | None = None  # learnt from a read: saves a create request per write

    @staticmethod
    def document_id(key: str, hour_ms: int, hours: int = 1) -> str:
        return f"{key}-{hour_ms}" if hours == 1 else f"{key}-d{hours}-{hour_ms}"

    def read(self, key: str, hours: Iterable[int], *, length: int = 1) -> dict[int, HourSummary]:
        """The stored summaries starting at ``hours`` (epoch ms) covering ``length`` hours each (1, or 24
        for day rollups), by realtime multi-get (no refresh needed)."""
        return self.read_spans(key, [(hour, length) for hour in hours]).get(length, {})

    def read_spans(self, key: str, spans: Iterable[tuple[int, int]]) -> dict[int, dict[int, HourSummary]]:
        """The stored summaries of ``spans`` ((start ms, hours) pairs: day rollups and single hours
        together), by hours covered then start, in one realtime multi-get per thousand."""
        wanted = sorted(set(spans))
        found: dict[int, dict[int, HourSummary]] = {}
        for offset in range(0, len(wanted), MGET_BATCH):
            batch = wanted[offset : offset + MGET_BATCH]
            self.requests += 1
            client = self.budget.bind(self.client, "reading the baseline summary").options(ignore_status=404)
            answer = call_elasticsearch(
                client.mget, index=self.index, ids=[self.document_id(key, *span) for span in batch]
            )
            documents = answer.body.get("docs", [])
            # A missing index is a 404, or (mget) an error per document: then the first write creates it
            # with its mappings rather than letting a bulk request create it with dynamic ones.
            self._exists = answer.meta.status != 404 and not any(
                (document.get("error") or {}).get("type") == "index_not_found_exception"
                for document in documents
            )
            for document in documents:
                if not document.get("found"):
                    continue
                source = document["_source"]
                hour_ms = int(
                    datetime.fromisoformat(source["hour"].replace("Z", "+00:00")).timestamp() * 1000
                )
                hours = int(source.get("hours") or 1)
                found.setdefault(hours, {})[hour_ms] = HourSummary(
                    hour_ms,
                    int(source["events"]),
                    int(source["total"]),
                    hours=hours,
                    hour_totals=tuple(source.get("hour_totals") or ()),
                    **_decode(source["counts"]),
                )
        return found

    def write(
        self, key: str, use_case: UseCase | RareChildUseCase, index: str, summaries: Iterable[HourSummary]
    ) -> int:
        """Store hour summaries; returns how many. A failed write only costs a recount next time."""
        now = isoformat_z(datetime.now(UTC))
        actions = [
            {
                "_index": self.index,
                "_id": self.document_id(key, summary.hour_ms, summary.hours),
                "_source": {
                    "key": key,
                    "use_case": use_case.section,
                    "index": index,
                    "hour": isoformat_z(datetime.fromtimestamp(summary.hour_ms / 1000, UTC)),
                    "events": summary.events,
                    "total": summary.total,
                    "hours": summary.hours,
                    "hour_totals": list(summary.totals()),
                    "keys": len(summary.keys),
                    "counts": _encode(summary),
                    "written_at": now,
                },
            }
            for summary in summaries
        ]
        if not actions:
            return 0
        if not self._exists:
            ensure_index(self, self.index, SUMMARY_MAPPINGS, SUMMARY_SETTINGS)
            self._exists = True
        self.requests += 1
        client = self.budget.bind(self.client, "writing the baseline summary")
        written, errors = helpers.bulk(client, actions, raise_on_error=False, chunk_size=500)
        if errors:
            log.warning("%d baseline summary documents were not written (recounted next time)", len(errors))
        return int(written)
