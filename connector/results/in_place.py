"""ee-outliers' own write-back (docs/model.md, "Writing in place"): the source event is tagged and annotated.

The partial update is computed from the event's current ``_source`` and guarded by ``if_seq_no``/
``if_primary_term``; an update that lost a race is recomputed from a fresh read, a bounded number of times.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.config import UseCase
from connector.explain import Explanation
from connector.model.outlier import Outlier
from connector.results.documents import OUTLIER_TAG, as_list, outlier_record
from connector.results.failures import item_error, write_error
from connector.results.report import Tally
from connector.results.transport import BULK_CHUNK_SIZE, WriteRequests

log = logging.getLogger(__name__)

# In place: how often a document whose update lost a race (409) is read again and its update recomputed.
MAX_CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class InPlacePlan:
    """The partial update for one source event, and which records it applies.

    :ivar doc: the ``doc`` of a partial update, ``None`` when the event needs no change at all
    :ivar applied: per record, in order: True if appended, False if skipped because its summary is
        already in ``outliers.summary`` (ee-outliers' one-write-per-summary rule, quirk Q4)
    """

    doc: dict[str, Any] | None
    applied: tuple[bool, ...]


def plan_in_place_update(source: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> InPlacePlan:
    """Apply ee-outliers' write-back for ``records`` to ``source``, in order (docs/model.md, in place).

    * ``tags`` gains ``outlier`` (created if missing, never duplicated).
    * No ``outliers`` object yet: it becomes the record with every value wrapped in a one-element list
      (lists stay lists) and ``total_outliers: 1``.
    * A record whose summary is already in ``outliers.summary`` is skipped.
    * Otherwise each value is appended to its array (list values extend it) and ``total_outliers`` + 1.

    A partial update merges objects but *replaces* arrays, so the whole arrays are built here from
    ``source``. Unlike ee-outliers, nothing is sent when nothing changes (``doc`` is ``None``); a missing
    ``outlier`` tag is still added when every record was skipped, as ee-outliers' re-write would add it.
    """
    tags = list(as_list(source.get("tags")))
    tag_missing = OUTLIER_TAG not in tags
    if tag_missing:
        tags.append(OUTLIER_TAG)

    existing = source.get("outliers")
    outliers: dict[str, Any] | None = copy.deepcopy(dict(existing)) if isinstance(existing, Mapping) else None
    applied = []
    for record in records:
        if outliers is None:
            outliers = {key: copy.deepcopy(as_list(value)) for key, value in record.items()}
            outliers["total_outliers"] = 1
            applied.append(True)
            continue
        summaries = as_list(outliers.get("summary"))
        if record.get("summary") in summaries:
            applied.append(False)
            continue
        for key, value in record.items():
            outliers[key] = [*as_list(outliers.get(key)), *copy.deepcopy(as_list(value))]
        outliers["total_outliers"] = _total_outliers(outliers.get("total_outliers"), len(summaries)) + 1
        applied.append(True)

    doc: dict[str, Any] = {}
    if tag_missing:
        doc["tags"] = tags
    if any(applied):
        doc["outliers"] = outliers
    return InPlacePlan(doc=doc or None, applied=tuple(applied))


def _total_outliers(value: Any, fallback: int) -> int:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return fallback  # missing or odd: as many as the summaries already there


@dataclass
class _EventUpdate:
    """The outliers of one source event and the state its update is computed from."""

    index: str
    document_id: str
    routing: str | None
    records: list[dict[str, Any]]
    source: Mapping[str, Any] | None = None
    seq_no: int | None = None
    primary_term: int | None = None
    plan: InPlacePlan | None = None

    def update_action(self) -> dict[str, Any]:
        assert self.plan is not None and self.plan.doc is not None
        action: dict[str, Any] = {
            "_op_type": "update",
            "_index": self.index,
            "_id": self.document_id,
            "doc": self.plan.doc,
        }
        if self.seq_no is not None and self.primary_term is not None:
            action.update(if_seq_no=self.seq_no, if_primary_term=self.primary_term)
        if self.routing is not None:
            action["routing"] = self.routing
        return action


def write_in_place(
    requests: WriteRequests,
    items: Sequence[tuple[Outlier, Explanation | None]],
    use_case: UseCase,
    refresh: bool | str,
    tally: Tally,
) -> None:
    pending = _group_by_event(items, use_case, tally)
    for attempt in range(MAX_CONFLICT_RETRIES + 1):
        known = [event for event in pending if event.source is not None]
        pending = known + _read_events(requests, [event for event in pending if event.source is None], tally)
        by_key: dict[tuple[str, str], _EventUpdate] = {}
        actions = []
        for event in pending:
            event.plan = plan_in_place_update(event.source or {}, event.records)
            if event.plan.doc is None:
                tally.unchanged += len(event.records)
                continue
            by_key[(event.index, event.document_id)] = event
            actions.append(event.update_action())

        conflicts = []
        for ok, info in requests.bulk(actions, refresh, "annotating source events"):
            event = _find_event(by_key, info)
            if event is None or event.plan is None:  # cannot happen: every answer names a sent action
                tally.fail(item_error(info))
            elif ok:
                appended = 0 if info.get("result") == "noop" else sum(event.plan.applied)
                tally.written += appended
                tally.unchanged += len(event.records) - appended
            elif info.get("status") == 409 and attempt < MAX_CONFLICT_RETRIES:
                # Another writer changed the event after it was read: read it again and recompute.
                log.info("update of %s/%s lost a race; re-reading it", event.index, event.document_id)
                event.source = None
                conflicts.append(event)
            else:
                tally.fail(item_error(info), outliers=len(event.records))
        pending = conflicts
        if not pending:
            break


def _group_by_event(
    items: Sequence[tuple[Outlier, Explanation | None]], use_case: UseCase, tally: Tally
) -> list[_EventUpdate]:
    """One :class:`_EventUpdate` per source event, its records in the order of ``items``."""
    events: dict[tuple[str, str], _EventUpdate] = {}
    for outlier, _explanation in items:
        hit = outlier.hit
        if not outlier.index or hit.get("_id") is None:
            reason = "the hit has no _index or _id, so its event cannot be updated"
            tally.fail(write_error(outlier.index, hit.get("_id"), None, "invalid_hit", reason))
            continue
        key = (outlier.index, outlier.document_id)
        event = events.get(key)
        if event is None:
            event = _EventUpdate(
                index=outlier.index, document_id=outlier.document_id, routing=hit.get("_routing"), records=[]
            )
            # The hit is used as read state only with its version: the update is then guarded by it.
            if "_source" in hit and hit.get("_seq_no") is not None and hit.get("_primary_term") is not None:
                event.source = hit["_source"]
                event.seq_no = hit["_seq_no"]
                event.primary_term = hit["_primary_term"]
            events[key] = event
        event.records.append(outlier_record(use_case, outlier))
    return list(events.values())


def _find_event(
    by_key: Mapping[tuple[str, str], _EventUpdate], info: Mapping[str, Any]
) -> _EventUpdate | None:
    event = by_key.get((info.get("_index"), info.get("_id")))  # type: ignore[arg-type]
    if event is None:  # addressed through an alias: match on the _id if that is unambiguous
        matches = [
            candidate for (_, document_id), candidate in by_key.items() if document_id == info.get("_id")
        ]
        event = matches[0] if len(matches) == 1 else None
    return event


def _read_events(requests: WriteRequests, events: list[_EventUpdate], tally: Tally) -> list[_EventUpdate]:
    """Fetch the current ``_source``, ``_seq_no`` and ``_primary_term`` of ``events``; the found ones."""
    found: list[_EventUpdate] = []
    for start in range(0, len(events), BULK_CHUNK_SIZE):
        chunk = events[start : start + BULK_CHUNK_SIZE]
        docs = []
        for event in chunk:
            doc: dict[str, Any] = {"_index": event.index, "_id": event.document_id}
            if event.routing is not None:
                doc["routing"] = event.routing
            docs.append(doc)
        response = requests.call(lambda es, docs=docs: es.mget(docs=docs), "reading source events")
        for event, doc in zip(chunk, response.get("docs", []), strict=True):
            if doc.get("found"):
                event.index = doc.get("_index", event.index)
                event.source = doc.get("_source") or {}
                event.seq_no, event.primary_term = doc.get("_seq_no"), doc.get("_primary_term")
                found.append(event)
            elif isinstance(doc.get("error"), Mapping):
                # mget gives per-document errors without a status; a missing index is the common one.
                status = 404 if doc["error"].get("type") == "index_not_found_exception" else None
                tally.fail(item_error({**doc, "status": status}), outliers=len(event.records))
            else:
                reason = "the source event is not in its index any more"
                tally.fail(
                    write_error(event.index, event.document_id, 404, "document_missing", reason),
                    outliers=len(event.records),
                )
    return found
