"""Indexing NDJSON events into Elasticsearch: for trying the service on sample data, and tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, helpers

from connector.sources.elasticsearch import call_elasticsearch

MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class LoadReport:
    indexed: int
    failed: int
    errors: tuple[str, ...]


def load_events(client: Elasticsearch, hits: Iterable[Mapping[str, Any]], *, index: str) -> LoadReport:
    """Bulk-index ``hits`` into ``index``, keeping each hit's ``_id`` so a reload changes nothing.

    Failed items are counted and the first few described; nothing is silently dropped.
    """

    def bulk() -> LoadReport:
        actions = ({"_index": index, "_id": hit["_id"], "_source": hit["_source"]} for hit in hits)
        indexed = failed = 0
        errors: list[str] = []
        for ok, item in helpers.streaming_bulk(
            client, actions, chunk_size=2000, raise_on_error=False, raise_on_exception=False, max_retries=3
        ):
            if ok:
                indexed += 1
                continue
            failed += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                result = next(iter(item.values()))
                error = result.get("error", {})
                reason = error.get("reason", error) if isinstance(error, Mapping) else error
                errors.append(f"{result.get('_id')}: {reason}")
        return LoadReport(indexed, failed, tuple(errors))

    report = call_elasticsearch(bulk)
    call_elasticsearch(client.indices.refresh, index=index)
    return report
