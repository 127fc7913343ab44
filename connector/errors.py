"""The project's own error hierarchy.

Every error a user can cause or fix is a :class:`ConnectorError`. Each carries a stable
``code`` (for machines), an HTTP ``status`` and a CLI ``exit_code`` (for the edges that turn
errors into responses), and a message that says what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ConnectorError(Exception):
    """Base class: something the caller can understand and act on."""

    code = "connector_error"
    status = 500
    exit_code = 1

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = details or []


class ConfigError(ConnectorError):
    """A use-case or global configuration file is invalid.

    The message always names the file, and the section and option when there is one, so
    a user can go straight to the line to fix.
    """

    code = "invalid_configuration"
    status = 500
    exit_code = 2

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        section: str | None = None,
        option: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.section = section
        self.option = option
        self.reason = reason
        where = []
        if self.path is not None:
            where.append(self.path)
        if section is not None:
            where.append(f"[{section}]")
        if option is not None:
            where.append(option)
        super().__init__(f"{' '.join(where)}: {reason}" if where else reason)


class UnknownUseCaseError(ConnectorError):
    """The requested use case is not in the loaded configuration."""

    code = "unknown_use_case"
    status = 404
    exit_code = 2


class InputError(ConnectorError):
    """An events file (or other input) cannot be read as documented."""

    code = "invalid_input"
    status = 400
    exit_code = 2

    def __init__(self, reason: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = reason
        where = self.path or "input"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}")


class RequestValidationError(ConnectorError):
    """A request body breaks its JSON Schema; ``details`` lists every violation with its path."""

    code = "invalid_request"
    status = 400
    exit_code = 2


class InvalidRangeError(ConnectorError):
    """A time bound is neither ISO-8601 nor Elasticsearch date math, or the range is absurd."""

    code = "invalid_range"
    status = 400
    exit_code = 2


class AuthenticationRequiredError(ConnectorError):
    """No valid service credentials. The message never says which part was wrong."""

    code = "unauthorized"
    status = 401
    exit_code = 2


class IndexNotAllowedError(ConnectorError):
    """The requested index is outside the configured allowed patterns."""

    code = "index_not_allowed"
    status = 403
    exit_code = 2


class CheckpointBusyError(ConnectorError):
    """Another detection holds the checkpoint of this use case and index: this call analysed nothing."""

    code = "checkpoint_busy"
    status = 409
    exit_code = 1


class CheckpointConflictError(ConnectorError):
    """The checkpoint moved while this detection ran: another call took over after its lease expired."""

    code = "checkpoint_conflict"
    status = 409
    exit_code = 1


class FieldError(ConnectorError):
    """A configured field does not exist in the target indices or cannot be aggregated."""

    code = "invalid_field"
    status = 422
    exit_code = 2


class QueryRejectedError(ConnectorError):
    """Elasticsearch refused the query (a bad es_query_filter, for example); carries its reason."""

    code = "query_rejected"
    status = 422
    exit_code = 2


class ElasticsearchAuthError(ConnectorError):
    """Elasticsearch refused the connector's own credentials or privileges."""

    code = "elasticsearch_auth_failed"
    status = 502
    exit_code = 1


class ElasticsearchUnavailableError(ConnectorError):
    """Elasticsearch cannot be reached or is overloaded; retrying later may work."""

    code = "elasticsearch_unavailable"
    status = 503
    exit_code = 1
    retry_after_seconds = 30


class IndexUnavailableError(ConnectorError):
    """Some shards of the searched indices have no active copy (a red index), so any count would miss
    their events: the detection is refused. Elasticsearch itself answered, so no node is at fault and the
    request is not retried; ``details`` names the missing shards (``{"index", "shard"}``). A restarting
    node brings its shards back, so like every 503 it carries a ``Retry-After``; a lost one needs an
    operator (bring the nodes holding them back, or restore the shards), as the message says."""

    code = "index_unavailable"
    status = 503
    exit_code = 1
    retry_after_seconds = 60


class ElasticsearchTlsError(ConnectorError):
    """Elasticsearch's certificate failed verification: a setting to fix, so no ``Retry-After``."""

    code = "elasticsearch_tls_failed"
    status = 502
    exit_code = 1


class ElasticsearchTimeoutError(ConnectorError):
    """Elasticsearch did not answer within the configured time."""

    code = "elasticsearch_timeout"
    status = 504
    exit_code = 1


class WatcherUnavailableError(ConnectorError):
    """The cluster cannot store watches: Watcher is not installed, or the licence does not include it."""

    code = "watcher_unavailable"
    status = 501
    exit_code = 1


class WatchRejectedError(ConnectorError):
    """Elasticsearch refused the rendered watch (a parse error, usually after hand edits of the asset)."""

    code = "watch_rejected"
    status = 502
    exit_code = 1


class KibanaError(ConnectorError):
    """Kibana answered with an error the connector cannot work around; the message carries Kibana's own."""

    code = "kibana_error"
    status = 502
    exit_code = 1


class KibanaUnavailableError(KibanaError):
    """Kibana cannot be reached (refused, timed out, TLS verification failed, not Kibana at that URL)."""

    code = "kibana_unavailable"
    status = 503


class KibanaAuthError(KibanaError):
    """Kibana refused the credentials (401) or the user lacks a privilege (403)."""

    code = "kibana_auth_failed"
    status = 502


class SavedObjectsImportError(KibanaError):
    """Kibana rejected some objects of an import; ``details`` has one entry per failed object."""

    code = "saved_objects_rejected"
    status = 502
    exit_code = 3
