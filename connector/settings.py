"""Deployment settings of the webhook service, read from environment variables in one place.

:meth:`Settings.from_env` is the only code that reads ``CONNECTOR_*`` variables. Every bad value
becomes a :class:`~connector.errors.ConfigError` that names the variable and says what is allowed,
so ``connector serve`` (and gunicorn's workers) refuse to start instead of running half configured.
Secrets are wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from connector.errors import ConfigError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_INDICES = ("osquery-*",)
DEFAULT_RESULTS_INDEX = "outliers-rare-child"
# Scheduled detection's progress (docs/scheduling.md, "Checkpoints"): where it is kept, how many hourly
# spans one call may analyse, and from what lag a use case counts as behind.
DEFAULT_CHECKPOINT_INDEX = "rare-child-connector-checkpoints"
DEFAULT_SUMMARY_INDEX = "rare-child-connector-summary"
DEFAULT_CATCH_UP_MAX_SPANS = 24
DEFAULT_CHECKPOINT_MAX_LAG_HOURS = 3
DEFAULT_MAX_BODY_BYTES = 65536
DEFAULT_MAX_RANGE_DAYS = 400
DEFAULT_ES_TIMEOUT_SECONDS = 30.0
DEFAULT_DETECT_TIMEOUT_SECONDS = 90.0
MAX_DETECT_TIMEOUT_SECONDS = 3600.0
# gunicorn kills a worker whose request runs longer than its `timeout`, and the caller then gets no
# answer at all; the worker timeout is the detection deadline plus this margin, so a 504 always wins.
WORKER_TIMEOUT_MARGIN_SECONDS = 30
# The Elasticsearch client retries a request that failed to connect (or lost its connection) this often,
# immediately. It never retries a timeout, nor a 429 or 504: those would multiply the waiting, and
# the bulk helper already retries 429s with a backoff.
ES_MAX_RETRIES = 3
ES_RETRY_ON_STATUS = (502, 503)
# With CONNECTOR_ES_SNIFF the client asks the cluster for its nodes at most this often (before a request),
# and again whenever a node fails.
ES_SNIFF_INTERVAL_SECONDS = 60.0
# Open connections a worker's client keeps per node (the client's own default, made explicit). A request
# beyond them waits for a free one, without a timeout: the readiness probe has its own client for that
# reason (:meth:`ElasticsearchConnection.probe_client`).
ES_CONNECTIONS_PER_NODE = 10
# The readiness probe's own pool: probes are few and each waits at most half a second.
PROBE_CONNECTIONS_PER_NODE = 4
# Composite aggregation page (CONNECTOR_ES_COMPOSITE_PAGE_SIZE): big pages, because each page re-runs the
# query. The default is also the largest allowed; smaller pages only make a detection send more requests.
DEFAULT_COMPOSITE_PAGE_SIZE = 10_000
MIN_TOKEN_LENGTH = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class LogFormat(StrEnum):
    """How the service writes its log lines: ECS JSON for shipping, or text for a terminal."""

    JSON = "json"
    TEXT = "text"


def parse_log_format(value: str | None) -> LogFormat:
    """``CONNECTOR_LOG_FORMAT``: empty means JSON. Also read by the gunicorn config file.

    :raises ConfigError: naming the variable and the allowed values.
    """
    text = (value or "").strip().lower() or LogFormat.JSON.value
    try:
        return LogFormat(text)
    except ValueError:
        allowed = ", ".join(member.value for member in LogFormat)
        raise _error("CONNECTOR_LOG_FORMAT", f"{text!r} is not one of {allowed}") from None

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Elasticsearch index names: lowercase, none of \ / ? " < > | , # : or whitespace. Allowed patterns may
# add the only wildcard Elasticsearch knows, "*"; no "?" or "[...]" (fnmatch would treat them as wildcards).
_INDEX_PATTERN = re.compile(r"[a-z0-9._+*-]+")
_INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]*")
# Bearer tokens are sent in a header: visible ASCII (RFC 6750 token68 plus a few safe extras), no spaces.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=:-]+")


class Secret:
    """A secret string (password, token, API key) that does not show up in reprs, logs or tracebacks.

    Call :meth:`reveal` at the one place that needs the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service needs from its deployment; build it with :meth:`from_env`."""

    es_urls: tuple[str, ...]
    use_case_paths: tuple[str, ...]
    es_api_key: Secret | None = None
    es_username: str | None = None
    es_password: Secret | None = None
    es_ca_certs: str | None = None
    es_verify_certs: bool = True
    es_timeout_seconds: float = DEFAULT_ES_TIMEOUT_SECONDS
    es_sniff: bool = False
    composite_page_size: int = DEFAULT_COMPOSITE_PAGE_SIZE
    detect_timeout_seconds: float = DEFAULT_DETECT_TIMEOUT_SECONDS
    global_config_path: str | None = None
    api_tokens: tuple[Secret, ...] = ()
    basic_user: str | None = None
    basic_password: Secret | None = None
    allow_anonymous: bool = False
    allowed_indices: tuple[str, ...] = DEFAULT_ALLOWED_INDICES
    results_index: str = DEFAULT_RESULTS_INDEX
    checkpoint_index: str = DEFAULT_CHECKPOINT_INDEX
    summary_index: str = DEFAULT_SUMMARY_INDEX
    catch_up_max_spans: int = DEFAULT_CATCH_UP_MAX_SPANS
    checkpoint_max_lag_hours: int = DEFAULT_CHECKPOINT_MAX_LAG_HOURS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_range_days: int = DEFAULT_MAX_RANGE_DAYS
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON

    @property
    def has_service_credentials(self) -> bool:
        return bool(self.api_tokens) or self.basic_user is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read and validate every ``CONNECTOR_*`` variable.

        Empty variables count as unset. Lists are comma-separated.

        :raises ConfigError: naming the variable and the values it allows; also when no service
            credential is configured and ``CONNECTOR_ALLOW_ANONYMOUS`` is not ``true``.
        """
        env = _Environment(environ)

        connection = ElasticsearchConnection.from_env(environ)
        es_api_key, es_username, es_password = connection.api_key, connection.username, connection.password
        es_ca_certs = connection.ca_certs

        use_case_paths = env.list("CONNECTOR_USE_CASES")
        if not use_case_paths:
            raise _error(
                "CONNECTOR_USE_CASES",
                "required; give one or more INI use-case files, separated by ',' (e.g. /etc/rcp/rare.ini)",
            )

        api_tokens = tuple(Secret(token) for token in env.list("CONNECTOR_API_TOKENS"))
        for token in api_tokens:
            _check_token(token)
        basic_user = env.text("CONNECTOR_BASIC_USER")
        basic_password = env.secret("CONNECTOR_BASIC_PASSWORD")
        if (basic_user is None) != (basic_password is None):
            missing = "CONNECTOR_BASIC_PASSWORD" if basic_password is None else "CONNECTOR_BASIC_USER"
            raise _error(missing, "set CONNECTOR_BASIC_USER and CONNECTOR_BASIC_PASSWORD together")
        if basic_user is not None and ":" in basic_user:
            raise _error("CONNECTOR_BASIC_USER", "must not contain ':' (HTTP basic auth splits on it)")
        allow_anonymous = env.boolean("CONNECTOR_ALLOW_ANONYMOUS", default=False)
        has_credentials = bool(api_tokens) or basic_user is not None
        if not has_credentials and not allow_anonymous:
            raise ConfigError(
                "the service refuses to start without credentials: set CONNECTOR_API_TOKENS or "
                "CONNECTOR_BASIC_USER/CONNECTOR_BASIC_PASSWORD, or CONNECTOR_ALLOW_ANONYMOUS=true "
                "to accept unauthenticated requests"
            )
        if has_credentials and allow_anonymous:
            raise _error(
                "CONNECTOR_ALLOW_ANONYMOUS",
                "is true while service credentials are configured; unset one of them "
                "(anonymous access means no credentials at all)",
            )

        allowed_indices = env.list("CONNECTOR_ALLOWED_INDICES") or DEFAULT_ALLOWED_INDICES
        for pattern in allowed_indices:
            _check_allowed_pattern(pattern)
        results_index = env.text("CONNECTOR_RESULTS_INDEX") or DEFAULT_RESULTS_INDEX
        _check_results_index(results_index)
        checkpoint_index = env.text("CONNECTOR_CHECKPOINT_INDEX") or DEFAULT_CHECKPOINT_INDEX
        _check_results_index(checkpoint_index, "CONNECTOR_CHECKPOINT_INDEX")
        summary_index = env.text("CONNECTOR_SUMMARY_INDEX") or DEFAULT_SUMMARY_INDEX
        _check_results_index(summary_index, "CONNECTOR_SUMMARY_INDEX")
        if len({results_index, checkpoint_index, summary_index}) < 3:
            raise _error(
                "CONNECTOR_CHECKPOINT_INDEX",
                "CONNECTOR_RESULTS_INDEX, CONNECTOR_CHECKPOINT_INDEX and CONNECTOR_SUMMARY_INDEX must name "
                "three different indices (each has its own mappings)",
            )
        own_indices = (
            ("CONNECTOR_CHECKPOINT_INDEX", checkpoint_index, DEFAULT_CHECKPOINT_INDEX),
            ("CONNECTOR_SUMMARY_INDEX", summary_index, DEFAULT_SUMMARY_INDEX),
        )
        for option, name, default in own_indices:
            if name.startswith(results_index):
                # The results template, the Kibana data view and the Security rule cover results_index*.
                raise _error(
                    option,
                    f"{name!r} starts with the results index name {results_index!r}, so the results index "
                    "template, the Kibana data view and the Security rule would take it for results; "
                    f"choose a name outside it (default {default})",
                )

        detect_timeout_seconds = parse_detect_timeout(environ.get("CONNECTOR_DETECT_TIMEOUT_SECONDS"))

        log_level = (env.text("CONNECTOR_LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise _error("CONNECTOR_LOG_LEVEL", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")

        return cls(
            es_urls=connection.urls,
            es_api_key=es_api_key,
            es_username=es_username,
            es_password=es_password,
            es_ca_certs=es_ca_certs,
            es_verify_certs=connection.verify_certs,
            es_timeout_seconds=connection.timeout_seconds,
            es_sniff=connection.sniff,
            composite_page_size=env.integer(
                "CONNECTOR_ES_COMPOSITE_PAGE_SIZE",
                default=DEFAULT_COMPOSITE_PAGE_SIZE,
                minimum=1,
                maximum=DEFAULT_COMPOSITE_PAGE_SIZE,
            ),
            detect_timeout_seconds=detect_timeout_seconds,
            use_case_paths=use_case_paths,
            global_config_path=env.text("CONNECTOR_GLOBAL_CONFIG"),
            api_tokens=api_tokens,
            basic_user=basic_user,
            basic_password=basic_password,
            allow_anonymous=allow_anonymous,
            allowed_indices=allowed_indices,
            results_index=results_index,
            checkpoint_index=checkpoint_index,
            summary_index=summary_index,
            catch_up_max_spans=env.integer(
                "CONNECTOR_CATCH_UP_MAX_SPANS", default=DEFAULT_CATCH_UP_MAX_SPANS, minimum=1, maximum=744
            ),
            checkpoint_max_lag_hours=env.integer(
                "CONNECTOR_CHECKPOINT_MAX_LAG_HOURS",
                default=DEFAULT_CHECKPOINT_MAX_LAG_HOURS,
                minimum=1,
                maximum=8784,
            ),
            max_body_bytes=env.integer(
                "CONNECTOR_MAX_BODY_BYTES", default=DEFAULT_MAX_BODY_BYTES, minimum=1024, maximum=10 * 2**20
            ),
            max_range_days=env.integer(
                "CONNECTOR_MAX_RANGE_DAYS", default=DEFAULT_MAX_RANGE_DAYS, minimum=1, maximum=36600
            ),
            log_level=log_level,
            log_format=parse_log_format(environ.get("CONNECTOR_LOG_FORMAT")),
        )

    def es_client(self) -> Elasticsearch:
        """A new Elasticsearch 8.x client for these settings (see :meth:`ElasticsearchConnection.client`)."""
        return self._es_connection().client()

    def es_probe_client(self) -> Elasticsearch:
        """The readiness probe's client (see :meth:`ElasticsearchConnection.probe_client`)."""
        return self._es_connection().probe_client()

    def _es_connection(self) -> ElasticsearchConnection:
        return ElasticsearchConnection(
            urls=self.es_urls,
            api_key=self.es_api_key,
            username=self.es_username,
            password=self.es_password,
            ca_certs=self.es_ca_certs,
            verify_certs=self.es_verify_certs,
            timeout_seconds=self.es_timeout_seconds,
            sniff=self.es_sniff,
        )


@dataclass(frozen=True, kw_only=True)
class ElasticsearchConnection:
    """How to reach Elasticsearch: shared by the service and the command line.

    ``urls``: one or more nodes of one cluster; the client spreads requests over them and moves on to the
    next when one cannot be reached (see :meth:`client`).
    """

    urls: tuple[str, ...]
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout_seconds: float = DEFAULT_ES_TIMEOUT_SECONDS
    sniff: bool = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, url: str | None = None
    ) -> ElasticsearchConnection:
        """The ``CONNECTOR_ES_*`` variables; ``url`` (e.g. from ``--es-url``) wins over CONNECTOR_ES_URL.

        Either may list several nodes of the cluster, separated by ``,``.

        :raises ConfigError: naming the variable and what it allows.
        """
        env = _Environment(environ)
        es_url = url or env.required(
            "CONNECTOR_ES_URL",
            "the Elasticsearch base URL, e.g. https://es.internal:9200, or several nodes' URLs separated "
            "by ',' (e.g. https://es1:9200,https://es2:9200)",
        )
        urls = parse_es_urls(es_url)
        api_key = env.secret("CONNECTOR_ES_API_KEY")
        username = env.text("CONNECTOR_ES_USERNAME")
        password = env.secret("CONNECTOR_ES_PASSWORD")
        if api_key is not None and (username is not None or password is not None):
            raise _error(
                "CONNECTOR_ES_API_KEY",
                "set either an API key or CONNECTOR_ES_USERNAME/CONNECTOR_ES_PASSWORD, not both",
            )
        if (username is None) != (password is None):
            missing = "CONNECTOR_ES_PASSWORD" if password is None else "CONNECTOR_ES_USERNAME"
            raise _error(missing, "set CONNECTOR_ES_USERNAME and CONNECTOR_ES_PASSWORD together")
        ca_certs = env.text("CONNECTOR_ES_CA_CERTS")
        if ca_certs is not None:
            if not Path(ca_certs).is_file():
                raise _error("CONNECTOR_ES_CA_CERTS", f"{ca_certs!r} is not a file; give a PEM CA bundle")
            if not urls[0].lower().startswith("https://"):
                raise _error("CONNECTOR_ES_CA_CERTS", "a CA certificate needs an https:// CONNECTOR_ES_URL")
        return cls(
            urls=urls,
            api_key=api_key,
            username=username,
            password=password,
            ca_certs=ca_certs,
            verify_certs=env.boolean("CONNECTOR_ES_VERIFY_CERTS", default=True),
            timeout_seconds=env.number(
                "CONNECTOR_ES_TIMEOUT_SECONDS", default=DEFAULT_ES_TIMEOUT_SECONDS, minimum=1, maximum=3600
            ),
            sniff=env.boolean("CONNECTOR_ES_SNIFF", default=False),
        )

    def client(self) -> Elasticsearch:
        """A new Elasticsearch 8.x client. It connects lazily, on its first request.

        Every URL is a node of the client's pool: requests go round-robin over the live ones, and a node
        that cannot be reached is marked dead (tried again after a growing timeout) while the request
        goes on to the next (``ES_MAX_RETRIES`` more attempts). With ``sniff`` the client also asks the
        cluster for its other nodes (``GET _nodes/_all/http``) every :data:`ES_SNIFF_INTERVAL_SECONDS`
        and after a node failure, and adds their publish addresses to the pool; that needs those
        addresses to be reachable from the connector (not behind a proxy or load balancer, not Elastic
        Cloud). A ``503`` about unavailable shards is not a node failure
        (:class:`~connector.sources.shards.ShardAwareNode`).

        TLS options are passed only for ``https://`` URLs (the client refuses them otherwise);
        certificate verification stays on unless ``CONNECTOR_ES_VERIFY_CERTS=false``. Retries are set
        explicitly (see :data:`ES_RETRY_ON_STATUS`): a timed-out request is never sent again, so one
        request waits at most about ``timeout_seconds``.
        """
        sniffing: dict[str, object] = {}
        if self.sniff:
            sniffing = {
                "sniff_on_node_failure": True,
                "min_delay_between_sniffing": ES_SNIFF_INTERVAL_SECONDS,  # also sniffs before requests
                "sniff_timeout": self.timeout_seconds,
            }
        return self._build(
            connections_per_node=ES_CONNECTIONS_PER_NODE,
            max_retries=ES_MAX_RETRIES,
            retry_on_status=ES_RETRY_ON_STATUS,
            **sniffing,
        )

    def probe_client(self) -> Elasticsearch:
        """A client for the readiness probe only: same nodes, credentials and TLS, its own small pool.

        The detection client's pool blocks a request until a connection is free; with every one of them
        waiting on a frozen node, a probe sharing it would wait too, instead of answering "not ready" fast.
        No retries and no sniffing: the probe must answer within its own short timeout.
        """
        return self._build(connections_per_node=PROBE_CONNECTIONS_PER_NODE, max_retries=0)

    def _build(self, **transport: object) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        from connector.sources.shards import ShardAwareNode

        tls: dict[str, object] = {}
        if self.urls[0].lower().startswith("https://"):
            tls = {"verify_certs": self.verify_certs}
            if self.ca_certs is not None:
                tls["ca_certs"] = self.ca_certs
        basic_auth = None
        if self.username is not None and self.password is not None:
            basic_auth = (self.username, self.password.reveal())
        return Elasticsearch(
            list(self.urls),
            node_class=ShardAwareNode,
            api_key=self.api_key.reveal() if self.api_key is not None else None,
            basic_auth=basic_auth,
            request_timeout=self.timeout_seconds,
            retry_on_timeout=False,
            **transport,  # type: ignore[arg-type]
            **tls,  # type: ignore[arg-type]
        )


class _Environment:
    """Typed readers over an environment mapping; each error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str, what: str) -> str:
        value = self.text(name)
        if value is None:
            raise _error(name, f"required; set it to {what}")
        return value

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return Secret(value) if value is not None else None

    def list(self, name: str) -> tuple[str, ...]:
        raw = self._environ.get(name, "")
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise _error(name, f"{value!r} is not a boolean; use true/false (or 1/0, yes/no, on/off)")

    def integer(self, name: str, *, default: int, minimum: int, maximum: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise _error(name, f"{value!r} is not a whole number; use {minimum}..{maximum}") from None
        if not minimum <= number <= maximum:
            raise _error(name, f"{number} is out of range; use {minimum}..{maximum}")
        return number

    def number(self, name: str, *, default: float, minimum: float, maximum: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise _error(name, f"{value!r} is not a number; use {minimum:g}..{maximum:g}") from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise _error(name, f"{value} is out of range; use {minimum:g}..{maximum:g}")
        return number


def _error(variable: str, reason: str) -> ConfigError:
    return ConfigError(reason, option=variable)


def parse_detect_timeout(value: str | None) -> float:
    """``CONNECTOR_DETECT_TIMEOUT_SECONDS``: the deadline of one detection, all its requests together.

    Also read by the gunicorn config file, which gives workers :func:`worker_timeout_seconds`.

    :raises ConfigError: naming the variable and the allowed range.
    """
    name = "CONNECTOR_DETECT_TIMEOUT_SECONDS"
    return _Environment({name: value or ""}).number(
        name, default=DEFAULT_DETECT_TIMEOUT_SECONDS, minimum=1, maximum=MAX_DETECT_TIMEOUT_SECONDS
    )


def worker_timeout_seconds(detect_timeout_seconds: float) -> int:
    """gunicorn's worker ``timeout``: after the detection deadline, so a slow detection gets its 504."""
    return math.ceil(detect_timeout_seconds) + WORKER_TIMEOUT_MARGIN_SECONDS


def parse_es_urls(value: str) -> tuple[str, ...]:
    """``CONNECTOR_ES_URL`` (or ``--es-url``): one URL, or several separated by ``,`` (spaces allowed).

    All must use the same scheme (the client applies one TLS configuration to every node), and each is
    checked like a single URL; a repeated URL is kept once.

    :raises ConfigError: naming the variable, the URL at fault and what to write instead.
    """
    urls: list[str] = []
    for part in value.split(","):
        url = part.strip()
        if not url:
            raise _error(
                "CONNECTOR_ES_URL",
                f"{value!r} has an empty entry; separate the nodes' URLs with single commas, "
                "e.g. https://es1:9200,https://es2:9200",
            )
        _check_es_url(url)
        if url not in urls:
            urls.append(url)
    schemes = {urlsplit(url).scheme.lower() for url in urls}
    if len(schemes) > 1:
        raise _error(
            "CONNECTOR_ES_URL",
            "mixes http:// and https:// URLs; every node of one cluster is reached the same way, so use "
            "one scheme for all of them",
        )
    return tuple(urls)


def _check_es_url(url: str) -> None:
    name = "CONNECTOR_ES_URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _error(name, f"{url!r} is not a URL ({error}); write e.g. https://es.internal:9200") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _error(
            name, f"{url!r} is not an http:// or https:// URL with a host, e.g. https://es.internal:9200"
        )
    if parts.username is not None or parts.password is not None:
        raise _error(
            name,
            "must not contain credentials; use CONNECTOR_ES_API_KEY or CONNECTOR_ES_USERNAME/PASSWORD",
        )
    if parts.query or parts.fragment:
        raise _error(name, "must not have a query string or fragment; give the base URL only")
    if port == 0:
        raise _error(name, "port 0 is not a port; use e.g. 9200")


def _check_token(token: Secret) -> None:
    # Never echo the token itself in the message.
    value = token.reveal()
    if len(value) < MIN_TOKEN_LENGTH:
        raise _error("CONNECTOR_API_TOKENS", f"each token needs at least {MIN_TOKEN_LENGTH} characters")
    if not _TOKEN.fullmatch(value):
        raise _error(
            "CONNECTOR_API_TOKENS",
            "tokens may contain only letters, digits and . _ ~ + / = : - (no spaces or quotes)",
        )


def _check_allowed_pattern(pattern: str) -> None:
    name = "CONNECTOR_ALLOWED_INDICES"
    if pattern.startswith(("-", "+", "_")) or not _INDEX_PATTERN.fullmatch(pattern):
        raise _error(
            name,
            f"{pattern!r} is not an index pattern; use lowercase index names with '*' wildcards "
            "(e.g. osquery-*), without ':' (remote clusters), '?' or a leading '-', '+' or '_'",
        )


def _check_results_index(index: str, variable: str = "CONNECTOR_RESULTS_INDEX") -> None:
    if not _INDEX_NAME.fullmatch(index) or len(index.encode()) > 255:
        raise _error(
            variable,
            f"{index!r} is not an index name; use lowercase letters, digits and . _ + - "
            "(starting with a letter or digit, no wildcards)",
        )
