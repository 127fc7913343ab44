"""Writing outliers back to Elasticsearch: one document per outlier in a results index, or in place.

Two write modes, both idempotent so that a retried, repeated or concurrent run leaves the same data:

* :attr:`AnnotateMode.RESULTS_INDEX` (default): each outlier becomes one document in the results index,
  a copy of the source event plus an ``outliers`` object, under an ``_id`` derived only from what the
  outlier *is* (use case, source document, aggregator, term). Writing it again overwrites the same document.
* :attr:`AnnotateMode.IN_PLACE` (opt-in): ee-outliers' own behaviour (docs/model.md, "Writing in place"):
  the source event gets the ``outlier`` tag and an ``outliers`` object of parallel arrays, through a
  partial update guarded by ``if_seq_no``/``if_primary_term``; a summary already there is not written again.

Failures of single documents never raise and are never dropped: they are counted and listed in the
:class:`WriteReport`. Only an unreachable, timing-out or credential-refusing Elasticsearch raises (as the
project's own errors), because then nothing more can be written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, SSLError, TransportError, helpers

from connector.config import DEFAULT_TIMESTAMP_FIELD, RareChildUseCase, UseCase
from connector.errors import (
    ConnectorError,
    ElasticsearchAuthError,
    ElasticsearchTimeoutError,
    ElasticsearchTlsError,
    ElasticsearchUnavailableError,
)
from connector.explain import Explanation
from connector.model.fields import ABSENT, lookup
from connector.model.outlier import MODEL_TYPE, Outlier, asset_values
from connector.sources.elasticsearch import TimeBudget, tls_failure_message

log = logging.getLogger(__name__)

OUTLIER_TAG = "outlier"
MAX_REPORTED_ERRORS = 20
MAX_REASON_CHARS = 1000
BULK_CHUNK_SIZE = 500
# streaming_bulk re-sends items refused with 429 (queue full) this often, sleeping 1 s, 2 s, 4 s (blocking).
BULK_MAX_RETRIES = 3
BULK_INITIAL_BACKOFF_S = 1
# In place: how often a document whose update lost a race (409) is read again and its update recomputed.
MAX_CONFLICT_RETRIES = 3

TEMPLATE_PRIORITY = 200
# Raise with every change of results_index_template (2: the OsqueryFilter fields Kibana shows, mapped;
# 3: the rarechild alert fields: score, factors, count, event ids, hosts, first and last time).
TEMPLATE_VERSION = 3
DEFAULT_RESULTS_INDEX = "outliers-rare-child"
# Appended to every write-back failure that stops the writing: what the caller may safely do next.
RERUN_IS_SAFE = "writes already done are kept and re-running is safe (they are idempotent)"
# ignore_above counts characters; 8191 characters of UTF-8 (at most 4 bytes each) stay below Lucene's
# 32766-byte limit for one term, so a huge value is stored (in _source) but not indexed, instead of the
# whole document being rejected.
KEYWORD_IGNORE_ABOVE = 8191
# OsqueryFilter.<name> fields of the copied event that the results template maps explicitly.
EVENT_FIELDS_SHOWN_IN_KIBANA = (
    "name",
    "parentname",
    "cmdline",
    "parentcmdline",
    "username",
    "path",
    "sha256",
)


class AnnotateMode(StrEnum):
    """Where outliers are written."""

    RESULTS_INDEX = "results_index"
    IN_PLACE = "in_place"
    NONE = "none"


class WriteOutcome(StrEnum):
    """How a write-back ended, as a whole."""

    COMPLETE = "complete"  # every outlier is stored (written now or already there)
    PARTIAL = "partial"  # some outliers are stored, some writes failed: see the errors
    FAILED = "failed"  # no outlier could be stored
    SKIPPED = "skipped"  # nothing was to be written (annotate "none" or a dry run)


@dataclass(frozen=True, kw_only=True)
class WriteReport:
    """What one :func:`write_outliers` call did.

    Counts are per outlier (per item given), so ``written + unchanged + failed`` equals the number of
    items for a call that sent requests. In results mode one outlier is one document.

    :ivar index: the results index; ``None`` in the in-place and none modes
    :ivar written: outliers whose document was created or changed
    :ivar unchanged: outliers already written identically (nothing sent, or Elasticsearch answered
        ``noop``), repeated in the same call, or skipped in place by ee-outliers' one-write-per-summary rule
    :ivar failed: outliers whose write failed (after bounded retries)
    :ivar errors: the first :data:`MAX_REPORTED_ERRORS` failed requests, each
        ``{"_id", "_index", "status", "type", "reason"}`` (the service log has every one of them)
    """

    mode: AnnotateMode
    index: str | None
    dry_run: bool
    written: int
    unchanged: int
    failed: int
    errors: tuple[dict[str, Any], ...] = ()

    @property
    def outcome(self) -> WriteOutcome:
        """One word for the whole write, so that a partial write cannot pass for a complete one."""
        if self.mode is AnnotateMode.NONE or self.dry_run:
            return WriteOutcome.SKIPPED
        if not self.failed:
            return WriteOutcome.COMPLETE
        return WriteOutcome.PARTIAL if self.written + self.unchanged else WriteOutcome.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "index": self.index,
            "dry_run": self.dry_run,
            "outcome": self.outcome.value,
            "written": self.written,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": [dict(error) for error in self.errors],
        }


# ------------------------------------------------------------------------------------------ documents


def results_document_id(use_case: UseCase, outlier: Outlier) -> str:
    """The results document's ``_id``: sha256 (hex) of use case, source ``_index``/``_id``, aggregator, term.

    Nothing time- or run-dependent goes in, so every run that finds this outlier addresses the same
    document. The parts are JSON-encoded as one array, so no two different inputs share an encoding.
    """
    parts = [
        use_case.section,
        outlier.index,
        outlier.document_id,
        outlier.observation.aggregator,
        outlier.observation.term,
    ]
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def results_document(use_case: UseCase, outlier: Outlier, explanation: Explanation | None) -> dict[str, Any]:
    """The results-index document of one outlier.

    A copy of the source event (``_source``; ``@timestamp`` stays the event time) with ``tags`` gaining
    ``outlier`` and an ``outliers`` object that replaces any ``outliers`` the event had (e.g. from an
    in-place ee-outliers run). Without ``@timestamp`` in the event, the use case's ``timestamp_field``
    value is copied to ``@timestamp`` so that the document still has a time in Kibana.

    ``outliers`` holds the ee-outliers record (type, reason, summary, model_name, model_type,
    elasticsearch_filter, term_count, aggregator, term, decision_frontier, trigger_method, ``assets`` when
    there are any, and the use case's extra options) plus ``use_case``, ``confidence``, ``source_index`` and
    ``source_id``; with an explanation also ``aggregator_total``, ``aggregator_distinct_terms``,
    ``host_count`` and ``first_seen_in_range`` (``None`` when unknown) and ``top_terms``
    (``[{"term", "count"}]``). The random ``non_outlier_values_sample`` of ee-outliers is left out.
    """
    source = outlier.hit.get("_source") or {}
    document = _tagged_event_copy(use_case, source)

    outliers = _record(use_case, outlier)
    outliers.update(
        use_case=use_case.section,
        confidence=_finite(outlier.observation.confidence),
        source_index=outlier.index,
        source_id=outlier.document_id,
    )
    if explanation is not None:
        outliers.update(
            aggregator_total=explanation.aggregator_total,
            aggregator_distinct_terms=explanation.aggregator_distinct_terms,
            host_count=explanation.host_count,
            first_seen_in_range=explanation.first_seen_in_range,
            top_terms=[{"term": term, "count": count} for term, count in explanation.top_terms],
        )
    document["outliers"] = outliers
    return document


def alert_document_id(use_case: RareChildUseCase, record: Mapping[str, Any]) -> str:
    """A rarechild alert's ``_id``: sha256 of use case, first event's ``_index``/``_id``, parent, child.

    A later run that finds the same alert (same first event) rewrites the same document, with its
    updated count; nothing run-dependent goes in.
    """
    parts = [use_case.section, record["_index"], record["_id"], record["aggregator"], record["term"]]
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def alert_document(
    use_case: RareChildUseCase, record: Mapping[str, Any], first_hit: Mapping[str, Any]
) -> dict[str, Any]:
    """The results document of a rarechild alert: its first event, tagged, with the alert record.

    As for terms outliers, the event's ``_source`` is copied (so Kibana shows its fields) and an
    ``outliers`` object holds the record: model, use case, score, factors, count, event ids, hosts,
    first and last time, the texts, and the source event's index and id.
    """
    source = first_hit.get("_source") or {}
    document = _tagged_event_copy(use_case, source)
    outliers: dict[str, Any] = dict(use_case.extra_options)
    assets = asset_values(use_case, source)
    if assets:
        outliers["assets"] = assets
    outliers.update(
        model_name=use_case.model_name,
        model_type="rarechild",
        use_case=use_case.section,
        elasticsearch_filter=use_case.elasticsearch_filter,
        source_index=record["_index"],
        source_id=record["_id"],
        **{key: copy.deepcopy(value) for key, value in record.items() if key not in ("_id", "_index")},
    )
    document["outliers"] = outliers
    return document


def _tagged_event_copy(use_case: UseCase | RareChildUseCase, source: Mapping[str, Any]) -> dict[str, Any]:
    """The event's copy: tagged ``outlier``, with ``@timestamp`` from ``timestamp_field`` when it has none."""
    document = copy.deepcopy(dict(source))
    if "@timestamp" not in document and use_case.timestamp_field != DEFAULT_TIMESTAMP_FIELD:
        event_time = lookup(source, use_case.timestamp_field)
        if event_time is not ABSENT and event_time is not None:
            document["@timestamp"] = copy.deepcopy(event_time)
    tags = []
    for tag in [*_as_list(source.get("tags")), OUTLIER_TAG]:
        if tag not in tags:
            tags.append(tag)
    document["tags"] = tags
    return document


def outlier_record(use_case: UseCase, outlier: Outlier) -> dict[str, Any]:
    """The record ee-outliers writes in place (docs/model.md, "The outlier record"), plus our ``confidence``.

    ``type`` and ``reason`` are lists; every other value is a single value. The random
    ``non_outlier_values_sample`` is left out (quirk Q2).
    """
    record = _record(use_case, outlier)
    record["confidence"] = _finite(outlier.observation.confidence)
    return record


def _record(use_case: UseCase, outlier: Outlier) -> dict[str, Any]:
    # Extra use-case options first: the record's own keys win a name clash.
    record: dict[str, Any] = dict(use_case.extra_options)
    assets = asset_values(use_case, outlier.hit.get("_source") or {})
    if assets:
        record["assets"] = assets
    observation = outlier.observation
    record.update(
        model_name=use_case.model_name,
        model_type=MODEL_TYPE,
        type=list(outlier.outlier_type),
        reason=list(outlier.reason),
        summary=outlier.summary,
        term_count=observation.term_count,
        aggregator=observation.aggregator,
        term=observation.term,
        decision_frontier=_finite(observation.decision_frontier),
        trigger_method=outlier.trigger_method,
        elasticsearch_filter=use_case.elasticsearch_filter,
    )
    return record


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
    tags = list(_as_list(source.get("tags")))
    tag_missing = OUTLIER_TAG not in tags
    if tag_missing:
        tags.append(OUTLIER_TAG)

    existing = source.get("outliers")
    outliers: dict[str, Any] | None = copy.deepcopy(dict(existing)) if isinstance(existing, Mapping) else None
    applied = []
    for record in records:
        if outliers is None:
            outliers = {key: copy.deepcopy(_as_list(value)) for key, value in record.items()}
            outliers["total_outliers"] = 1
            applied.append(True)
            continue
        summaries = _as_list(outliers.get("summary"))
        if record.get("summary") in summaries:
            applied.append(False)
            continue
        for key, value in record.items():
            outliers[key] = [*_as_list(outliers.get(key)), *copy.deepcopy(_as_list(value))]
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _finite(number: float) -> float | None:
    # JSON has no NaN/Infinity: Elasticsearch would refuse the whole document.
    return number if math.isfinite(number) else None


# ------------------------------------------------------------------------------------------ writing


@dataclass
class _Tally:
    written: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, error: dict[str, Any], *, outliers: int = 1) -> None:
        """Count a failed write. Every one is logged (with its id); the report lists the first ones."""
        self.failed += outliers
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)
        log.warning(
            "write of %s/%s failed: %s %s: %s",
            error["_index"],
            error["_id"],
            error["status"],
            error["type"],
            error["reason"],
        )


def write_outliers(
    client: Elasticsearch,
    items: Sequence[tuple[Outlier, Explanation | None]],
    *,
    use_case: UseCase,
    mode: AnnotateMode,
    results_index: str,
    dry_run: bool = False,
    refresh: bool | str = False,
    budget: TimeBudget | None = None,
) -> WriteReport:
    """Write ``items`` (outlier, explanation) back to Elasticsearch and report what happened.

    With ``mode=NONE`` or ``dry_run=True`` no request at all is sent and the report says ``written=0``
    (and 0 unchanged, 0 failed): it counts what *was* written, and nothing was.

    Results mode indexes one document per outlier under :func:`results_document_id`; documents that are
    already there with identical content are not sent again (counted ``unchanged``). In-place mode applies
    :func:`plan_in_place_update` to each source event (several outliers of one event become one update).
    The hits must carry the complete ``_source`` (arrays are rebuilt from it); their ``_seq_no`` and
    ``_primary_term``, when present, guard the update, otherwise the event is read first. An update that
    loses a race (409) is recomputed from a fresh read, at most :data:`MAX_CONFLICT_RETRIES` times.

    :param results_index: the results index (or alias); used in results mode only
    :param refresh: passed to the bulk requests (``"wait_for"``, ``True`` or ``False``)
    :param budget: the time each request, and all together, may take (a detection's deadline covers
        its writes too); default: each request as the client is configured
    :raises ElasticsearchUnavailableError: Elasticsearch cannot be reached, or a read (mget) is answered
        429/502/503 (a bulk request refused as a whole, after the 429 retries, fails its items instead)
    :raises ElasticsearchTimeoutError: a request timed out (writes already done stay; re-running is safe)
    :raises ElasticsearchAuthError: Elasticsearch refused the connector's credentials or privileges
        for a whole request (a per-document refusal is reported in the ``WriteReport`` instead)
    """
    mode = AnnotateMode(mode)
    if mode is AnnotateMode.RESULTS_INDEX:
        documents = [
            (results_document_id(use_case, outlier), results_document(use_case, outlier, explanation))
            for outlier, explanation in items
        ]
        return write_result_documents(
            client,
            documents,
            mode=mode,
            results_index=results_index,
            dry_run=dry_run,
            refresh=refresh,
            budget=budget,
        )

    def write(requests: _Requests, tally: _Tally) -> None:
        _write_in_place(requests, items, use_case, refresh, tally)

    return _write(
        client,
        write,
        mode=mode,
        results_index=results_index,
        dry_run=dry_run,
        items=len(items),
        budget=budget,
    )


def write_result_documents(
    client: Elasticsearch,
    documents: Sequence[tuple[str, dict[str, Any]]],
    *,
    mode: AnnotateMode,
    results_index: str,
    dry_run: bool = False,
    refresh: bool | str = False,
    budget: TimeBudget | None = None,
) -> WriteReport:
    """Write ready-made results documents ``(id, source)`` as :func:`write_outliers` writes outliers.

    For models whose results are not one document per event (the rarechild model's alerts); only
    ``results_index`` and ``none`` modes make sense for them.
    """
    mode = AnnotateMode(mode)
    if mode is AnnotateMode.IN_PLACE:
        raise ValueError("ready-made results documents cannot be written in place")

    def write(requests: _Requests, tally: _Tally) -> None:
        _write_results(requests, documents, results_index, refresh, tally)

    return _write(
        client,
        write,
        mode=mode,
        results_index=results_index,
        dry_run=dry_run,
        items=len(documents),
        budget=budget,
    )


def _write(
    client: Elasticsearch,
    write: Callable[[_Requests, _Tally], None],
    *,
    mode: AnnotateMode,
    results_index: str,
    dry_run: bool,
    items: int,
    budget: TimeBudget | None,
) -> WriteReport:
    index = results_index if mode is AnnotateMode.RESULTS_INDEX else None
    tally = _Tally()
    if mode is AnnotateMode.NONE or dry_run or not items:
        log.info("annotate: nothing sent (mode=%s, dry_run=%s, %d outliers)", mode.value, dry_run, items)
    else:
        requests = _Requests(client, budget or TimeBudget())
        try:
            write(requests, tally)
        except ConnectorError as error:
            log.error(
                "annotate aborted (%s) after written=%d unchanged=%d failed=%d of %d outliers",
                error.code,
                tally.written,
                tally.unchanged,
                tally.failed,
                items,
            )
            raise

    report = WriteReport(
        mode=mode,
        index=index,
        dry_run=dry_run,
        written=tally.written,
        unchanged=tally.unchanged,
        failed=tally.failed,
        errors=tuple(tally.errors),
    )
    if mode is not AnnotateMode.NONE and not dry_run and items:
        truncated = len(report.errors) < report.failed
        log.log(
            logging.WARNING if report.failed else logging.INFO,
            "annotate %s: mode=%s index=%s written=%d unchanged=%d failed=%d of %d outliers%s",
            report.outcome.value,
            mode.value,
            index,
            report.written,
            report.unchanged,
            report.failed,
            items,
            f" (the response lists the first {len(report.errors)} failures)" if truncated else "",
        )
    return report


def _write_results(
    requests: _Requests,
    items: Sequence[tuple[str, dict[str, Any]]],
    results_index: str,
    refresh: bool | str,
    tally: _Tally,
) -> None:
    documents: dict[str, dict[str, Any]] = {}
    for document_id, document in items:
        if document_id in documents:
            tally.unchanged += 1  # the same outlier twice in one call is still one document
        documents[document_id] = document

    sent = False
    ids = list(documents)
    for start in range(0, len(ids), BULK_CHUNK_SIZE):
        chunk = ids[start : start + BULK_CHUNK_SIZE]
        stored, index_missing = _stored_sources(requests, results_index, chunk)
        if index_missing:
            _create_results_index(requests, results_index)
        to_send = [document_id for document_id in chunk if stored.get(document_id) != documents[document_id]]
        tally.unchanged += len(chunk) - len(to_send)
        if not to_send:
            continue
        sent = True
        actions = [
            {
                "_op_type": "index",
                "_index": results_index,
                "_id": document_id,
                "_source": documents[document_id],
            }
            for document_id in to_send
        ]
        for ok, info in requests.bulk(actions, refresh, "writing outliers to the results index"):
            if ok:
                # An index operation always rewrites ("created"/"updated"); "noop" only comes from updates.
                if info.get("result") == "noop":
                    tally.unchanged += 1
                else:
                    tally.written += 1
            else:
                tally.fail(_item_error(info))

    if refresh and not sent and documents:
        # Everything was already there: still honour the caller's request to make it searchable.
        requests.call(lambda es: es.indices.refresh(index=results_index), "refreshing the results index")


def _create_results_index(requests: _Requests, results_index: str) -> None:
    """Create the results index with the template's mappings (called when it does not exist yet).

    This keeps ``outliers.*`` correctly typed even where nobody installed the template (that needs
    a cluster privilege the service should not hold); creating the index needs only
    ``create_index``, which writing to a new index needs anyway. An existing index is left as is,
    and a refusal is left for the bulk request to report item by item.
    """
    mappings = results_index_template(results_index)["template"]["mappings"]
    response = requests.call(
        lambda es: es.options(ignore_status=(400, 403)).indices.create(
            index=results_index, mappings=mappings
        ),
        "creating the results index",
    )
    if response.meta.status == 200:
        log.info("created results index %s", results_index)


def _stored_sources(requests: _Requests, index: str, ids: list[str]) -> tuple[dict[str, Any], bool]:
    """``_source`` of the documents already stored under ``ids`` (realtime), and whether the index is missing.

    This is an optimisation (skip identical rewrites), so a refused read (no read privilege, closed
    index...) only means that everything is written; an unreachable cluster still raises.
    """
    doing = "reading existing results"
    try:
        response = requests.bound(doing).mget(index=index, ids=ids)
    except ApiError as error:
        log.info("cannot read existing results from %s (%s); writing all", index, error.status_code)
        return {}, False
    except TransportError as error:
        raise requests.translate(error, doing) from None
    docs = response.get("docs", [])
    missing = any(
        isinstance(doc.get("error"), Mapping) and doc["error"].get("type") == "index_not_found_exception"
        for doc in docs
    )
    return {doc["_id"]: doc.get("_source") for doc in docs if doc.get("found")}, missing


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


def _write_in_place(
    requests: _Requests,
    items: Sequence[tuple[Outlier, Explanation | None]],
    use_case: UseCase,
    refresh: bool | str,
    tally: _Tally,
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
                tally.fail(_item_error(info))
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
                tally.fail(_item_error(info), outliers=len(event.records))
        pending = conflicts
        if not pending:
            break


def _group_by_event(
    items: Sequence[tuple[Outlier, Explanation | None]], use_case: UseCase, tally: _Tally
) -> list[_EventUpdate]:
    """One :class:`_EventUpdate` per source event, its records in the order of ``items``."""
    events: dict[tuple[str, str], _EventUpdate] = {}
    for outlier, _explanation in items:
        hit = outlier.hit
        if not outlier.index or hit.get("_id") is None:
            reason = "the hit has no _index or _id, so its event cannot be updated"
            tally.fail(_error(outlier.index, hit.get("_id"), None, "invalid_hit", reason))
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


def _read_events(requests: _Requests, events: list[_EventUpdate], tally: _Tally) -> list[_EventUpdate]:
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
                tally.fail(_item_error({**doc, "status": status}), outliers=len(event.records))
            else:
                reason = "the source event is not in its index any more"
                tally.fail(
                    _error(event.index, event.document_id, 404, "document_missing", reason),
                    outliers=len(event.records),
                )
    return found


@dataclass(frozen=True)
class _Requests:
    """The client and the time budget that every write-back request is sent under."""

    client: Elasticsearch
    budget: TimeBudget

    def bound(self, doing: str) -> Elasticsearch:
        """The client with the time left for the next request (raises once the deadline has passed)."""
        return self.budget.bind(self.client, doing)

    def call(self, request: Callable[[Elasticsearch], Any], doing: str) -> Any:
        """``request(client)``, its failure translated into the project's errors."""
        try:
            return request(self.bound(doing))
        except (ApiError, TransportError) as error:
            raise self.translate(error, doing) from None

    def bulk(
        self, actions: Sequence[dict[str, Any]], refresh: bool | str, doing: str
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        """``streaming_bulk`` reporting every item as ``(ok, info)``; raises only when nothing can be written.

        One ``streaming_bulk`` per :data:`BULK_CHUNK_SIZE` actions, so each bulk request gets the time left
        when it is sent (a deadline is not stretched by later chunks).
        """
        for start in range(0, len(actions), BULK_CHUNK_SIZE):
            results = helpers.streaming_bulk(
                self.bound(doing),
                actions[start : start + BULK_CHUNK_SIZE],
                chunk_size=BULK_CHUNK_SIZE,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=BULK_MAX_RETRIES,
                initial_backoff=BULK_INITIAL_BACKOFF_S,
                refresh=refresh,
            )
            try:
                for ok, item in results:
                    info = next(iter(item.values()))
                    exception = info.get("exception")
                    # A whole request refused for the credentials: every later request will be refused too.
                    if not ok and isinstance(exception, ApiError) and exception.status_code in (401, 403):
                        raise self.translate(exception, doing) from None
                    # An item refused for a missing privilege: so will every other item for that index.
                    if not ok and _missing_privilege(info):
                        raise _privilege_error(_item_error(info)["reason"], doing)
                    yield ok, info
            except (ApiError, TransportError) as error:
                raise self.translate(error, doing) from None

    def translate(self, error: ApiError | TransportError, doing: str) -> ConnectorError:
        return _translate(error, doing, self.budget)


#: What the connector's role must grant (kibana_saved_objects/elasticsearch-role.json), for error messages.
ROLE_HINT = (
    "the connector's role needs read on the source indices, read, create_index and index on the results "
    "index, and index on the source indices for annotate=in_place"
)


def _missing_privilege(info: Mapping[str, Any]) -> bool:
    """A bulk item refused by Elasticsearch security (403 ``security_exception``), not by an index block."""
    error = info.get("error")
    refused = isinstance(error, Mapping) and error.get("type") == "security_exception"
    return info.get("status") == 403 and refused


def _privilege_error(reason: str, doing: str) -> ElasticsearchAuthError:
    """Elasticsearch's reason names the action and the privileges that grant it; the message says where."""
    return ElasticsearchAuthError(
        f"the connector's Elasticsearch credentials lack a privilege while {doing}: {reason}; {ROLE_HINT}",
        details=[{"reason": reason}],
    )


def _call(request: Callable[[], Any], doing: str) -> Any:
    try:
        return request()
    except (ApiError, TransportError) as error:
        raise _translate(error, doing) from None


def _item_error(info: Mapping[str, Any]) -> dict[str, Any]:
    """``{"_id", "_index", "status", "type", "reason"}`` of a failed bulk item (or mget doc)."""
    error = info.get("error")
    exception = info.get("exception")
    if isinstance(error, Mapping):
        error_type = str(error.get("type", "unknown"))
        reason = error.get("reason")
        caused_by = error.get("caused_by")
        if not reason and isinstance(caused_by, Mapping):
            reason = caused_by.get("reason")
    elif isinstance(exception, ApiError):
        # The helper turned a refused whole request into per-item failures.
        error_type, reason = _api_error_parts(exception)
    else:
        error_type, reason = "unknown", error
    return _error(info.get("_index"), info.get("_id"), info.get("status"), error_type, reason)


def _error(index: Any, document_id: Any, status: Any, error_type: str, reason: Any) -> dict[str, Any]:
    text = "" if reason is None else str(reason)
    return {
        "_id": document_id,
        "_index": index,
        "status": status,
        "type": error_type,
        "reason": text[:MAX_REASON_CHARS],
    }


def _api_error_parts(error: ApiError) -> tuple[str, str]:
    body = error.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        details = body["error"]
        return str(details.get("type", error.message)), str(details.get("reason", ""))
    return str(error.message), ""


def _translate(
    error: ApiError | TransportError, doing: str, budget: TimeBudget | None = None
) -> ConnectorError:
    """The project error for an Elasticsearch failure. Messages carry no URL, credential or document.

    A timeout names the setting whose limit was reached (see :meth:`TimeBudget.timeout_error`).
    """
    if isinstance(error, ConnectionTimeout):
        timeout = (budget or TimeBudget()).timeout_error(doing)
        return ElasticsearchTimeoutError(f"{timeout.message}; {RERUN_IS_SAFE}")
    if isinstance(error, SSLError):
        return ElasticsearchTlsError(tls_failure_message(error))
    if isinstance(error, TransportError):
        return ElasticsearchUnavailableError(
            f"cannot reach Elasticsearch while {doing} ({type(error).__name__}); check the Elasticsearch "
            f"URL, TLS settings and that the cluster is up, then re-run ({RERUN_IS_SAFE})."
        )
    status = error.status_code
    error_type, reason = _api_error_parts(error)
    if status == 403:
        return _privilege_error(reason or error_type, doing)
    if status == 401:
        return ElasticsearchAuthError(
            f"Elasticsearch refused the connector's credentials while {doing} ({status} {error_type}); "
            "check CONNECTOR_ES_API_KEY (or CONNECTOR_ES_USERNAME/CONNECTOR_ES_PASSWORD)."
        )
    if status in (408, 504):
        return ElasticsearchTimeoutError(
            f"Elasticsearch timed out while {doing} ({status} {error_type}); "
            "retry later (writes are idempotent)."
        )
    if status in (429, 502, 503):
        return ElasticsearchUnavailableError(
            f"Elasticsearch is overloaded or unavailable while {doing} ({status} {error_type}); retry later."
        )
    return ConnectorError(f"Elasticsearch refused a request while {doing}: {status} {error_type}: {reason}")


# ------------------------------------------------------------------------------------------ template


def results_template_name(results_index: str) -> str:
    """The index template's name: the results index name (template names have their own namespace)."""
    return results_index


def results_index_template(
    results_index: str, *, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Body of ``PUT _index_template/<name>`` for ``results_index`` and ``results_index-*``.

    No index settings by default: shards, replicas and refresh follow the cluster's defaults (a template
    that forces ``number_of_replicas: 0`` would leave production results without a copy). ``settings``
    lets tests or operators add some.
    """
    keyword = {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}
    event_string = {**keyword, "fields": {"text": {"type": "text"}}}
    template: dict[str, Any] = {
        "mappings": {
            # A copy of each event comes along, so the event part stays dynamic, with two rules:
            # strings become keyword (a text sub-field for word search): Kibana filters, terms
            # visualizations and exact matches like OsqueryFilter.name:"cmd.exe" work on the field's own
            # name, without the ".keyword" suffix of default dynamic mapping. And date-like strings stay
            # strings: date detection would fix a date type that a later non-date value then breaks.
            "date_detection": False,
            "dynamic_templates": [
                {
                    "strings_as_keyword": {
                        "match_mapping_type": "string",
                        "mapping": event_string,
                    }
                },
                # JSON floats would become 32-bit "float" (1.5525 aggregates as 1.5525000095367432).
                {"floats_as_double": {"match_mapping_type": "double", "mapping": {"type": "double"}}},
            ],
            "properties": {
                "@timestamp": {"type": "date"},
                "tags": dict(keyword),
                "host": {"properties": {"name": dict(keyword)}},
                # The osquery fields the bundled Kibana objects show (kibana_saved_objects/), mapped
                # explicitly as the dynamic rule above would map them: Kibana then knows them before
                # the first outlier arrives, and a test can check the objects against this template.
                "OsqueryFilter": {
                    "properties": {name: copy.deepcopy(event_string) for name in EVENT_FIELDS_SHOWN_IN_KIBANA}
                },
                "outliers": {
                    "properties": {
                        "model_name": dict(keyword),
                        "model_type": dict(keyword),
                        "use_case": dict(keyword),
                        "type": dict(keyword),
                        "reason": dict(keyword),
                        "summary": {"type": "text", "fields": {"keyword": dict(keyword)}},
                        "term_count": {"type": "long"},
                        "aggregator": dict(keyword),
                        "term": dict(keyword),
                        "decision_frontier": {"type": "double"},
                        "trigger_method": dict(keyword),
                        "confidence": {"type": "double"},
                        "elasticsearch_filter": dict(keyword),
                        "assets": dict(keyword),
                        "source_index": dict(keyword),
                        "source_id": dict(keyword),
                        "aggregator_total": {"type": "long"},
                        "aggregator_distinct_terms": {"type": "long"},
                        "host_count": {"type": "long"},
                        "first_seen_in_range": {"type": "boolean"},
                        "top_terms": {"properties": {"term": dict(keyword), "count": {"type": "long"}}},
                        # rarechild alerts (template version 3)
                        "score": {"type": "double"},
                        "threshold": {"type": "double"},
                        "explanation": {"type": "text", "fields": {"keyword": dict(keyword)}},
                        "factors": {
                            "properties": {
                                "factor": dict(keyword),
                                "points": {"type": "double"},
                                "value": {"type": "double"},
                                "says": {"type": "text"},
                                "technique": dict(keyword),
                            }
                        },
                        "count": {"type": "long"},
                        "event_ids": dict(keyword),
                        "hosts": dict(keyword),
                        "hosts_seen": {"type": "long"},
                        "first_time": {"type": "date"},
                        "last_time": {"type": "date"},
                        "flagged_events_only": {"type": "boolean"},
                        "whitelisted_events": {"type": "long"},
                    }
                },
            },
        }
    }
    if settings:
        template["settings"] = dict(settings)
    return {
        "index_patterns": [results_index, f"{results_index}-*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {
            "managed_by": "rare-child-connector",
            "description": "Outliers of the rare-child-process connector: one document per outlier.",
        },
        "template": template,
    }


def render_results_template(results_index: str = DEFAULT_RESULTS_INDEX) -> str:
    """The template as the JSON text bundled in ``kibana_saved_objects/results-index-template.json``."""
    return (
        json.dumps(results_index_template(results_index), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def install_results_template(
    client: Elasticsearch, results_index: str, *, settings: Mapping[str, Any] | None = None
) -> None:
    """Create or replace the results index template (applies to indices created afterwards).

    :raises ElasticsearchAuthError: the connector may not manage index templates (privilege
        ``manage_index_templates``)
    :raises ConnectorError: Elasticsearch refused the template, e.g. another template of the same
        priority matches the same names
    """
    body = results_index_template(results_index, settings=settings)
    _call(
        lambda: client.indices.put_index_template(
            name=results_template_name(results_index),
            index_patterns=body["index_patterns"],
            priority=body["priority"],
            version=body["version"],
            meta=body["_meta"],
            template=body["template"],
        ),
        f"installing the index template for {results_index}",
    )
    log.info("installed index template %s for %s", results_template_name(results_index), results_index)
