"""Creating the progress indices on first use, with explicit mappings (never dynamic guesses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from elasticsearch import ApiError, Elasticsearch

from connector.sources.elasticsearch import TimeBudget, call_elasticsearch, translate_api_error


class _Store(Protocol):
    client: Elasticsearch
    budget: TimeBudget
    requests: int


def ensure_index(store: _Store, index: str, mappings: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Create ``index`` unless it exists; another instance creating it at the same moment is fine."""
    store.requests += 1
    client = store.budget.bind(store.client, f"creating index {index}").options(ignore_status=400)
    answer = call_elasticsearch(client.indices.create, index=index, mappings=mappings, settings=settings)
    if answer.meta.status == 400:
        error = (answer.body or {}).get("error") or {}
        if error.get("type") != "resource_already_exists_exception":
            raise translate_api_error(
                ApiError(message=str(error.get("type")), meta=answer.meta, body=answer.body)
            )
