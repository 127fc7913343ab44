"""Telling a red index apart from a dead node.

When some shards of the searched indices have no active copy (a red index: the nodes holding them are gone
and there is no replica), Elasticsearch answers ``503`` (``no_shard_available_action_exception``, or
"Search rejected due to missing shards [[index][0], ...]"). The official client treats every 5xx answer
as a failed node: it sends the request again (``502``/``503`` are retried, see
:data:`connector.settings.ES_RETRY_ON_STATUS`) and puts the node that answered on a growing dead timeout.
With several hosts configured, one red index would get every healthy node marked dead.

:class:`ShardAwareNode` (the client's node class, set in :meth:`connector.settings.ElasticsearchConnection.
client`) looks at ``503`` answers before the client does: an answer about unavailable shards comes back
at once as an :class:`~elasticsearch.ApiError`, so it is neither retried nor held against the node, and
:func:`connector.sources.elasticsearch.translate_api_error` turns it into
:class:`~connector.errors.IndexUnavailableError` naming the missing shards.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from elastic_transport import Urllib3HttpNode
from elasticsearch import ApiError

log = logging.getLogger(__name__)

#: Error types Elasticsearch uses for a shard with no active copy.
_UNAVAILABLE_TYPES = frozenset({"no_shard_available_action_exception"})
_MISSING_SHARDS = "missing shards"
# "[[osquery-1][0], [osquery-1][3]]" in "Search rejected due to missing shards [...]".
_SHARD = re.compile(r"\[([^\[\],\s]+)\]\[(\d+)\]")
# "index [osquery-1] has no active shard copy" (field capabilities of an index with no shard at all).
_INDEX = re.compile(r"index \[([^\[\]\s]+)\] has no active shard copy")
_MAX_BODY_BYTES = 1 << 20  # an error answer is small; a large 503 body is not one of these


def _errors(error: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """``error`` and every error object nested in it (root causes, causes, failed shards' reasons)."""
    yield error
    for cause in error.get("root_cause") or []:
        if isinstance(cause, Mapping):
            yield from _errors(cause)
    caused_by = error.get("caused_by")
    if isinstance(caused_by, Mapping):
        yield from _errors(caused_by)
    for failure in error.get("failed_shards") or []:
        if isinstance(failure, Mapping) and isinstance(failure.get("reason"), Mapping):
            yield from _errors(failure["reason"])


def unavailable_shards(body: object) -> list[dict[str, Any]] | None:
    """The shards an Elasticsearch error answer says have no active copy, or ``None`` for another error.

    Each entry is ``{"index": name, "shard": number}``, or ``{"index": name}`` when Elasticsearch only
    says that an index has no active shard copy at all. The list may be empty when the answer names no
    shard (the index is still unavailable).
    """
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    unavailable = False
    shards: dict[tuple[str, int | None], dict[str, Any]] = {}
    for item in _errors(error):
        kind, reason = str(item.get("type") or ""), str(item.get("reason") or "")
        if kind in _UNAVAILABLE_TYPES or _MISSING_SHARDS in reason:
            unavailable = True
        for index, shard in _SHARD.findall(reason) if _MISSING_SHARDS in reason else ():
            shards[(index, int(shard))] = {"index": index, "shard": int(shard)}
        for index in _INDEX.findall(reason):
            shards.setdefault((index, None), {"index": index})
    for failure in error.get("failed_shards") or []:
        reason = failure.get("reason") if isinstance(failure, Mapping) else None
        if isinstance(reason, Mapping) and reason.get("type") in _UNAVAILABLE_TYPES:
            index, shard = failure.get("index"), failure.get("shard")
            if isinstance(index, str) and isinstance(shard, int):
                shards[(index, shard)] = {"index": index, "shard": shard}
    if not unavailable:
        return None
    named = {index for index, shard in shards if shard is not None}
    ordered = sorted(shards.items(), key=_order)
    return [entry for (index, shard), entry in ordered if shard is not None or index not in named]


def _order(item: tuple[tuple[str, int | None], dict[str, Any]]) -> tuple[str, int]:
    (index, shard), _ = item
    return index, -1 if shard is None else shard


class ShardAwareNode(Urllib3HttpNode):
    """The client's default HTTP node, except that a ``503`` about unavailable shards raises
    :class:`~elasticsearch.ApiError` right away instead of going back to the client's retry and
    dead-node logic (see the module's docstring)."""

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:  # a NodeApiResponse
        response = super().perform_request(*args, **kwargs)
        if response.meta.status != 503 or not response.body or len(response.body) > _MAX_BODY_BYTES:
            return response
        try:
            body = json.loads(response.body)
        except ValueError:
            return response
        shards = unavailable_shards(body)
        if shards is None:
            return response
        log.warning(
            "Elasticsearch at %s answered 503 for %s: shards without an active copy %s; not retried, "
            "the node stays in the pool",
            self.base_url,
            args[1] if len(args) > 1 else kwargs.get("target", "?"),
            shards,
        )
        error = body["error"]
        raise ApiError(message=str(error.get("type") or "unavailable_shards"), meta=response.meta, body=body)
