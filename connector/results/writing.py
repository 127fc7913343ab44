"""Writing outliers back: one results document per outlier (or alert), or ee-outliers' in-place update.

Failures of single documents never raise and are never dropped: they are counted and listed in the
:class:`~connector.results.report.WriteReport`. Only an unreachable, timing-out or credential-refusing
Elasticsearch raises (as the project's own errors), because then nothing more can be written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from connector.config import UseCase
from connector.errors import ConnectorError
from connector.explain import Explanation
from connector.model.outlier import Outlier
from connector.results.documents import results_document, results_document_id
from connector.results.failures import item_error
from connector.results.in_place import write_in_place
from connector.results.report import AnnotateMode, Tally, WriteReport
from connector.results.template import results_index_template
from connector.results.transport import BULK_CHUNK_SIZE, WriteRequests
from connector.sources.elasticsearch import TimeBudget
from connector.timerange import isoformat_z

log = logging.getLogger(__name__)


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

    def write(requests: WriteRequests, tally: Tally) -> None:
        write_in_place(requests, items, use_case, refresh, tally)

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

    def write(requests: WriteRequests, tally: Tally) -> None:
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
    write: Callable[[WriteRequests, Tally], None],
    *,
    mode: AnnotateMode,
    results_index: str,
    dry_run: bool,
    items: int,
    budget: TimeBudget | None,
) -> WriteReport:
    index = results_index if mode is AnnotateMode.RESULTS_INDEX else None
    tally = Tally()
    if mode is AnnotateMode.NONE or dry_run or not items:
        log.info("annotate: nothing sent (mode=%s, dry_run=%s, %d outliers)", mode.value, dry_run, items)
    else:
        requests = WriteRequests(client, budget or TimeBudget())
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
    requests: WriteRequests,
    items: Sequence[tuple[str, dict[str, Any]]],
    results_index: str,
    refresh: bool | str,
    tally: Tally,
) -> None:
    documents: dict[str, dict[str, Any]] = {}
    for document_id, document in items:
        if document_id in documents:
            tally.unchanged += 1  # the same outlier twice in one call is still one document
        documents[document_id] = document

    sent = False
    now = isoformat_z(datetime.now(UTC))
    ids = list(documents)
    for start in range(0, len(ids), BULK_CHUNK_SIZE):
        chunk = ids[start : start + BULK_CHUNK_SIZE]
        stored, index_missing = _stored_sources(requests, results_index, chunk)
        if index_missing:
            _create_results_index(requests, results_index)
        for document_id in chunk:
            documents[document_id] = _with_detection_time(
                documents[document_id], stored.get(document_id), now
            )
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
                tally.fail(item_error(info))

    if refresh and not sent and documents:
        # Everything was already there: still honour the caller's request to make it searchable.
        requests.call(lambda es: es.indices.refresh(index=results_index), "refreshing the results index")


def _with_detection_time(document: dict[str, Any], stored: Any, now: str) -> dict[str, Any]:
    """``document`` with ``outliers.detected_at``: the stored one when the finding is already there, else now.

    Kept on rewrites, so an unchanged finding stays unchanged and a rule that selects new findings by this
    time (the Elastic Security rule) sees each one once, however late its event was.
    """
    detected = now
    if isinstance(stored, Mapping) and isinstance(stored.get("outliers"), Mapping):
        detected = stored["outliers"].get("detected_at") or now
    outliers = dict(document.get("outliers") or {})
    outliers["detected_at"] = detected
    return {**document, "outliers": outliers}


def _create_results_index(requests: WriteRequests, results_index: str) -> None:
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


def _stored_sources(requests: WriteRequests, index: str, ids: list[str]) -> tuple[dict[str, Any], bool]:
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
