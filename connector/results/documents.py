"""The results documents: what one outlier or one rarechild alert is, as Elasticsearch stores it.

Ids are derived only from what a finding *is* (use case, source event, aggregator, term), never from the
run, so that a retried, repeated or concurrent run rewrites the same document.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from connector.config import DEFAULT_TIMESTAMP_FIELD, RareChildUseCase, UseCase
from connector.explain import Explanation
from connector.model.fields import ABSENT, lookup
from connector.model.outlier import MODEL_TYPE, Outlier, asset_values
from connector.results.ecs import add_ecs, rarechild_risk_score, terms_risk_score

OUTLIER_TAG = "outlier"


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
    document = tagged_event_copy(use_case, source)

    outliers = _record(use_case, outlier)
    outliers.update(
        use_case=use_case.section,
        confidence=finite(outlier.observation.confidence),
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
    add_ecs(
        document,
        use_case,
        source,
        risk_score=terms_risk_score(outliers["confidence"]),
        message=outlier.summary,
    )
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
    document = tagged_event_copy(use_case, source)
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
    risk_score = rarechild_risk_score(record["score"], record["threshold"])
    message = str(record.get("summary") or record.get("explanation") or "")
    add_ecs(document, use_case, source, risk_score=risk_score, message=message)
    return document


def tagged_event_copy(use_case: UseCase | RareChildUseCase, source: Mapping[str, Any]) -> dict[str, Any]:
    """The event's copy: tagged ``outlier``, with ``@timestamp`` from ``timestamp_field`` when it has none."""
    document = copy.deepcopy(dict(source))
    if "@timestamp" not in document and use_case.timestamp_field != DEFAULT_TIMESTAMP_FIELD:
        event_time = lookup(source, use_case.timestamp_field)
        if event_time is not ABSENT and event_time is not None:
            document["@timestamp"] = copy.deepcopy(event_time)
    tags = []
    for tag in [*as_list(source.get("tags")), OUTLIER_TAG]:
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
    record["confidence"] = finite(outlier.observation.confidence)
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
        decision_frontier=finite(observation.decision_frontier),
        trigger_method=outlier.trigger_method,
        elasticsearch_filter=use_case.elasticsearch_filter,
    )
    return record


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def finite(number: float) -> float | None:
    # JSON has no NaN/Infinity: Elasticsearch would refuse the whole document.
    return number if math.isfinite(number) else None


# ------------------------------------------------------------------------------------------ writing
