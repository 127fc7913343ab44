"""How far each (use case, index) has been analysed, stored in Elasticsearch with a lease.

One document per use case section and index expression. A call takes the lease first (optimistic
concurrency: ``op_type=create`` for the first document, ``if_seq_no``/``if_primary_term`` afterwards), so
of two overlapping calls only one analyses; the other gets :class:`CheckpointBusyError` and analyses
nothing. The holder moves ``analysed_to`` forward after each span whose detection and write-back are
complete, with the sequence number of its own last write, so a call whose lease expired (its worker was
killed, say) can never move a checkpoint that another call has taken over.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch

from connector.errors import CheckpointBusyError, CheckpointConflictError, ConnectorError
from connector.progress.indices import ensure_index
from connector.sources.elasticsearch import TimeBudget, call_elasticsearch
from connector.timerange import isoformat_z

log = logging.getLogger(__name__)

#: Explicit mappings: the index is created on first use, never with dynamic guesses.
CHECKPOINT_MAPPINGS: Mapping[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "use_case": {"type": "keyword"},
        "index": {"type": "keyword"},
        "analysed_from": {"type": "date"},
        "analysed_to": {"type": "date"},
        "spans_analysed": {"type": "long"},
        "updated_at": {"type": "date"},
        "lease": {
            "properties": {"holder": {"type": "keyword"}, "until": {"type": "date"}},
        },
    },
}
LIST_PAGE_SIZE = 1000  # checkpoints listed per search (and read per multi-get)
CHECKPOINT_SETTINGS: Mapping[str, Any] = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}


def checkpoint_id(use_case: str, index: str) -> str:
    """Derived from what the checkpoint is about, so every instance finds the same document."""
    return hashlib.sha256(f"{use_case}\n{index}".encode()).hexdigest()[:40]


def parse_date(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint and the sequence number that the next write must name."""

    id: str
    use_case: str
    index: str
    analysed_from: datetime | None
    analysed_to: datetime | None
    spans_analysed: int
    lease_holder: str | None
    lease_until: datetime | None
    seq_no: int | None = None
    primary_term: int | None = None

    def document(self, *, now: datetime) -> dict[str, Any]:
        def text(moment: datetime | None) -> str | None:
            return None if moment is None else isoformat_z(moment)

        lease = None
        if self.lease_holder is not None and self.lease_until is not None:
            lease = {"holder": self.lease_holder, "until": text(self.lease_until)}
        return {
            "use_case": self.use_case,
            "index": self.index,
            "analysed_from": text(self.analysed_from),
            "analysed_to": text(self.analysed_to),
            "spans_analysed": self.spans_analysed,
            "updated_at": text(now),
            "lease": lease,
        }

    @classmethod
    def from_hit(cls, hit: Mapping[str, Any]) -> Checkpoint:
        source = hit["_source"]
        lease = source.get("lease") or {}
        return cls(
            id=hit["_id"],
            use_case=source["use_case"],
            index=source["index"],
            analysed_from=parse_date(source.get("analysed_from")),
            analysed_to=parse_date(source.get("analysed_to")),
            spans_analysed=int(source.get("spans_analysed") or 0),
            lease_holder=lease.get("holder"),
            lease_until=parse_date(lease.get("until")),
            seq_no=hit.get("_seq_no"),
            primary_term=hit.get("_primary_term"),
        )

    def lag(self, now: datetime) -> timedelta | None:
        return None if self.analysed_to is None else now - self.analysed_to

    def to_dict(self, now: datetime, *, max_lag: timedelta) -> dict[str, Any]:
        """One entry of ``GET /api/v1/checkpoints`` (checkpoints-response.schema.json)."""
        lag = self.lag(now)
        leased = self.lease_until is not None and self.lease_until > now
        return {
            "id": self.id,
            "use_case": self.use_case,
            "index": self.index,
            "analysed_from": None if self.analysed_from is None else isoformat_z(self.analysed_from),
            "analysed_to": None if self.analysed_to is None else isoformat_z(self.analysed_to),
            "spans_analysed": self.spans_analysed,
            "lag_seconds": None if lag is None else int(lag.total_seconds()),
            "behind": lag is None or lag > max_lag,
            "running_until": isoformat_z(self.lease_until) if leased and self.lease_until else None,
        }


class CheckpointStore:
    """Reads and writes checkpoints in ``index`` (``CONNECTOR_CHECKPOINT_INDEX``)."""

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        *,
        budget: TimeBudget | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.client = client
        self.index = index
        self.budget = budget or TimeBudget()
        self.page_size = page_size
        self.requests = 0

    def ensure_index(self) -> None:
        """Create the index with its mappings unless it exists (another instance may race us: fine)."""
        ensure_index(self, self.index, CHECKPOINT_MAPPINGS, CHECKPOINT_SETTINGS)

    def read(self, use_case: str, index: str) -> Checkpoint | None:
        """The stored checkpoint (realtime get: no refresh needed), or None."""
        self.requests += 1
        client = self.budget.bind(self.client, "reading a checkpoint").options(ignore_status=404)
        hit = call_elasticsearch(client.get, index=self.index, id=checkpoint_id(use_case, index))
        if not hit.get("found"):
            return None
        return Checkpoint.from_hit(hit)

    def all(self) -> list[Checkpoint]:
        """Every checkpoint, by use case and index (an absent index means none yet).

        A search finds the documents, a realtime multi-get reads them: a search alone would show a
        checkpoint as of the index's last refresh, possibly an hour behind what a call just stored.
        """
        ids: list[str] = []
        after: list[Any] | None = None
        while True:  # pages in (use case, index) order: the pair is unique, so search_after is exact
            self.requests += 1
            client = self.budget.bind(self.client, "listing checkpoints").options(ignore_status=404)
            response = call_elasticsearch(
                client.search,
                index=self.index,
                size=self.page_size,
                query={"match_all": {}},
                sort=[{"use_case": "asc"}, {"index": "asc"}],
                source=False,
                **({"search_after": after} if after is not None else {}),
            )
            hits = (response.get("hits") or {}).get("hits") or []
            ids.extend(hit["_id"] for hit in hits)
            if len(hits) < self.page_size:
                break
            after = hits[-1]["sort"]
        found: list[Checkpoint] = []
        for offset in range(0, len(ids), self.page_size):
            self.requests += 1
            client = self.budget.bind(self.client, "reading checkpoints")
            batch = ids[offset : offset + self.page_size]
            documents = call_elasticsearch(client.mget, index=self.index, ids=batch)["docs"]
            found.extend(Checkpoint.from_hit(document) for document in documents if document.get("found"))
        return found

    def acquire(
        self, use_case: str, index: str, *, holder: str, now: datetime, lease: timedelta
    ) -> Checkpoint:
        """Take the lease of this checkpoint (creating the document the first time).

        :raises CheckpointBusyError: another call holds an unexpired lease, or won the race for it
        """
        current = self.read(use_case, index)
        if current is None:
            self.ensure_index()
            current = Checkpoint(
                id=checkpoint_id(use_case, index),
                use_case=use_case,
                index=index,
                analysed_from=None,
                analysed_to=None,
                spans_analysed=0,
                lease_holder=None,
                lease_until=None,
            )
        elif current.lease_until is not None and current.lease_until > now and current.lease_holder != holder:
            raise self._busy(current)
        leased = replace(current, lease_holder=holder, lease_until=now + lease)
        return self._write(leased, now=now, busy_on_conflict=True)

    def advance(self, checkpoint: Checkpoint, *, to: datetime, now: datetime, spans: int = 1) -> Checkpoint:
        """Move ``analysed_to`` after a span whose detection and write-back completed.

        :raises CheckpointConflictError: another call changed the document since our last write
        """
        moved = replace(
            checkpoint,
            analysed_from=checkpoint.analysed_from or (to - timedelta(hours=spans)),
            analysed_to=to,
            spans_analysed=checkpoint.spans_analysed + spans,
        )
        return self._write(moved, now=now, busy_on_conflict=False)

    def release(self, checkpoint: Checkpoint, *, now: datetime) -> None:
        """Give the lease back; if another call has taken over meanwhile, leave its lease alone."""
        try:
            self._write(
                replace(checkpoint, lease_holder=None, lease_until=None), now=now, busy_on_conflict=False
            )
        except CheckpointConflictError:
            log.warning("checkpoint %s was taken over before its lease was released", checkpoint.id)
        except ConnectorError as error:  # the lease then expires by itself; the progress is stored
            log.warning("could not release the lease of checkpoint %s: %s", checkpoint.id, error.code)

    def _write(self, checkpoint: Checkpoint, *, now: datetime, busy_on_conflict: bool) -> Checkpoint:
        concurrency: dict[str, Any]
        if checkpoint.seq_no is None:
            # wait_for: the listing finds checkpoints by a search, and must find one as soon as its
            # first call returns (later changes are read by realtime mget).
            concurrency = {"op_type": "create", "refresh": "wait_for"}
        else:
            concurrency = {"if_seq_no": checkpoint.seq_no, "if_primary_term": checkpoint.primary_term}
        self.requests += 1
        client = self.budget.bind(self.client, "writing a checkpoint").options(ignore_status=409)
        answer = call_elasticsearch(
            client.index,
            index=self.index,
            id=checkpoint.id,
            document=checkpoint.document(now=now),
            **concurrency,
        )
        if answer.meta.status == 409:
            if busy_on_conflict:
                raise self._busy(self.read(checkpoint.use_case, checkpoint.index) or checkpoint)
            raise CheckpointConflictError(
                f"the checkpoint of use case {checkpoint.use_case} over {checkpoint.index} changed while "
                "this call ran (another call took it over after this call's lease expired); what this call "
                "analysed was written under deterministic ids, so nothing is duplicated or lost: the next "
                "call continues from the stored checkpoint (GET /api/v1/checkpoints shows it)",
                details=[{"checkpoint": checkpoint.id}],
            )
        return replace(checkpoint, seq_no=answer["_seq_no"], primary_term=answer["_primary_term"])

    def _busy(self, holder: Checkpoint) -> CheckpointBusyError:
        until = isoformat_z(holder.lease_until) if holder.lease_until else "now"
        return CheckpointBusyError(
            f"another detection of use case {holder.use_case} over {holder.index} is running (it holds the "
            f"checkpoint until {until}); this call analysed nothing. Nothing is lost: retry after it "
            "finishes, or let the next scheduled call catch up",
            details=[{"checkpoint": holder.id, "lease_until": until}],
        )
