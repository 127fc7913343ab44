"""Elasticsearch failures of the write-back, as the project's errors and as per-document error records.

Messages carry no URL, credential or document, and say what the caller may safely do next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, SSLError, TransportError

from connector.errors import (
    ConnectorError,
    ElasticsearchAuthError,
    ElasticsearchTimeoutError,
    ElasticsearchTlsError,
    ElasticsearchUnavailableError,
)
from connector.sources.elasticsearch import TimeBudget, tls_failure_message

MAX_REASON_CHARS = 1000

# Appended to every write-back failure that stops the writing: what the caller may safely do next.
RERUN_IS_SAFE = "writes already done are kept and re-running is safe (they are idempotent)"


#: What the connector's role must grant (kibana_saved_objects/elasticsearch-role.json), for error messages.
ROLE_HINT = (
    "the connector's role needs read on the source indices, read, create_index and index on the results "
    "index, and index on the source indices for annotate=in_place"
)


def missing_privilege(info: Mapping[str, Any]) -> bool:
    """A bulk item refused by Elasticsearch security (403 ``security_exception``), not by an index block."""
    error = info.get("error")
    refused = isinstance(error, Mapping) and error.get("type") == "security_exception"
    return info.get("status") == 403 and refused


def privilege_error(reason: str, doing: str) -> ElasticsearchAuthError:
    """Elasticsearch's reason names the action and the privileges that grant it; the message says where."""
    return ElasticsearchAuthError(
        f"the connector's Elasticsearch credentials lack a privilege while {doing}: {reason}; {ROLE_HINT}",
        details=[{"reason": reason}],
    )


def call_translated(request: Callable[[], Any], doing: str) -> Any:
    try:
        return request()
    except (ApiError, TransportError) as error:
        raise translate_error(error, doing) from None


def item_error(info: Mapping[str, Any]) -> dict[str, Any]:
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
    return write_error(info.get("_index"), info.get("_id"), info.get("status"), error_type, reason)


def write_error(index: Any, document_id: Any, status: Any, error_type: str, reason: Any) -> dict[str, Any]:
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


def translate_error(
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
        return privilege_error(reason or error_type, doing)
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
