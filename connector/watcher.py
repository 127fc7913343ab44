"""The hourly Watcher watch that calls the webhook service: rendered for one deployment, then installed.

``kibana_saved_objects/watch-rare-child.json`` is the reviewed watch. :func:`render_watch` fills in
where the service listens and its basic credentials (Watcher redacts ``auth`` in GET and in the watch
history, which it does not do for headers, so the service's basic credentials are used rather than a
bearer header). :func:`install_watch` stores it with ``PUT _watcher/watch/<id>``.

Watcher is a paid feature and a separate module. A cluster without it (a Basic licence, or a
distribution without the module, such as the integ-test zip the tests run) gets a
:class:`~connector.errors.WatcherUnavailableError` that says so and points to the Kibana connector.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from connector.errors import (
    ConfigError,
    ConnectorError,
    ElasticsearchAuthError,
    ElasticsearchUnavailableError,
    WatcherUnavailableError,
    WatchRejectedError,
)
from connector.scheduling import (
    WATCH_ASSET,
    ServiceCredentials,
    ServiceEndpoint,
    detection_body,
    fill_placeholders,
    load_asset,
    placeholders_left,
    redacted,
    secrets_in,
    secrets_masked_in_client_logs,
)
from connector.sources.elasticsearch import call_elasticsearch, elasticsearch_reason

log = logging.getLogger(__name__)

DEFAULT_WATCH_ID = "rare-child-detect"
WEBHOOK_ACTION = "detect_rare_children"
_WATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# What a node answers for a REST route nobody registered: the Watcher module is not installed.
_NO_HANDLER = "no handler found for uri"
KIBANA_ALTERNATIVE = (
    "Watcher needs a Gold (or higher) subscription or a trial licence, and the x-pack-watcher module; "
    "without it, schedule the call with Kibana alerting instead: `connector setup kibana-connector` "
    "(the Webhook connector needs Gold as well), or call POST /api/v1/detect from cron"
)


def render_watch(
    *,
    endpoint: ServiceEndpoint,
    credentials: ServiceCredentials,
    index: str | None = None,
    use_case: str | None = None,
    template_path: Path = WATCH_ASSET,
) -> dict[str, Any]:
    """The watch with the service's scheme, host, port, path and credentials filled in.

    The result holds the password in clear (Elasticsearch needs it); print only :func:`redacted_watch`.

    :param index: added to the request body (the service's default is used otherwise).
    :param use_case: added to the request body (the service's first use case otherwise).
    :raises ConfigError: when the asset is missing, unparsable, or keeps a placeholder.
    """
    template = load_asset(template_path)
    watch = fill_placeholders(
        template,
        {
            "SERVICE_SCHEME": endpoint.scheme,
            "SERVICE_HOST": endpoint.host,
            "SERVICE_PORT": endpoint.port,
            "SERVICE_PATH_PREFIX": endpoint.path_prefix,
            "SERVICE_USER": credentials.user,
            "SERVICE_PASSWORD": credentials.password,
        },
        source=template_path,
    )
    webhook = _webhook(watch, template_path)
    webhook["body"] = detection_body(webhook["body"], index=index, use_case=use_case, source=template_path)
    left = placeholders_left(watch)
    if left:
        raise ConfigError(f"placeholders left after filling: {', '.join(left)}", path=template_path)
    return watch


def redacted_watch(watch: Mapping[str, Any], credentials: ServiceCredentials) -> dict[str, Any]:
    """The watch as it may be shown: the password masked, everything else as it will be stored."""
    return redacted(dict(watch), (credentials.password,))


def install_watch(
    client: Elasticsearch, watch: Mapping[str, Any], *, watch_id: str = DEFAULT_WATCH_ID, active: bool = True
) -> dict[str, Any]:
    """Store (create or replace) the watch; returns the answer: ``_id``, ``_version``, ``created``.

    :raises WatcherUnavailableError: Watcher is not installed or not licensed (with the Kibana alternative).
    :raises ElasticsearchAuthError: the credentials are refused or lack ``manage_watcher``.
    :raises WatchRejectedError: Elasticsearch could not parse the watch.
    :raises ElasticsearchUnavailableError: no answer from Elasticsearch.

    The body holds the service password; it is masked in the client's DEBUG logs of this request.
    """
    if not _WATCH_ID.fullmatch(watch_id):
        raise ConfigError(
            f"{watch_id!r} is not a watch id; use letters, digits, '.', '_' and '-'", option="--watch-id"
        )

    def put(**kwargs: Any) -> Any:
        try:
            return client.watcher.put_watch(**kwargs)
        except ApiError as error:
            raise watcher_error(error) from None

    with secrets_masked_in_client_logs(secrets_in(watch)):
        response = call_elasticsearch(put, id=watch_id, active=active, **dict(watch))
    return dict(response)


def watcher_error(error: ApiError) -> ConnectorError:
    """Turn Elasticsearch's answer to a Watcher call into an error that says what to do.

    Observed on the integ-test distribution (no Watcher module): ``400`` with the body
    ``{"error": "no handler found for uri [/_watcher/watch/<id>] and method [PUT]"}``. With the module on
    a Basic licence: ``403 security_exception`` "current license is non-compliant for [watcher]".
    """
    status = error.meta.status if error.meta is not None else 0
    reason = elasticsearch_reason(error)
    if status == 400 and _NO_HANDLER in reason:
        return WatcherUnavailableError(
            f"this Elasticsearch cluster has no Watcher API ({reason}). {KIBANA_ALTERNATIVE}",
            details=[{"status": status, "reason": reason}],
        )
    if status == 403 and ("license" in reason.lower() or "licence" in reason.lower()):
        return WatcherUnavailableError(
            f"the cluster's licence does not include Watcher ({reason}). {KIBANA_ALTERNATIVE}",
            details=[{"status": status, "reason": reason}],
        )
    if status == 410 or "api_not_available" in _error_type(error):
        return WatcherUnavailableError(
            f"Watcher is not available on this deployment ({reason}). {KIBANA_ALTERNATIVE}",
            details=[{"status": status, "reason": reason}],
        )
    if status == 401:
        return ElasticsearchAuthError(
            "Elasticsearch refused the credentials; check CONNECTOR_ES_API_KEY or "
            "CONNECTOR_ES_USERNAME/CONNECTOR_ES_PASSWORD"
        )
    if status == 403:
        return ElasticsearchAuthError(
            f"the Elasticsearch user may not manage watches ({reason}); it needs the manage_watcher "
            "cluster privilege",
            details=[{"status": status, "reason": reason}],
        )
    if status == 400:
        return WatchRejectedError(
            f"Elasticsearch refused the watch: {reason}; check the watch asset "
            f"({WATCH_ASSET.name}) against docs/formats.md §6",
            details=[{"status": status, "reason": reason}],
        )
    return ElasticsearchUnavailableError(f"Elasticsearch answered {status} to PUT _watcher/watch: {reason}")


def _error_type(error: ApiError) -> str:
    body = error.body if isinstance(error.body, Mapping) else {}
    details = body.get("error")
    return str(details.get("type", "")) if isinstance(details, Mapping) else ""


def _webhook(watch: Mapping[str, Any], source: Path) -> dict[str, Any]:
    try:
        webhook = watch["actions"][WEBHOOK_ACTION]["webhook"]
    except (KeyError, TypeError):
        raise ConfigError(f"the watch has no webhook action {WEBHOOK_ACTION!r}", path=source) from None
    if not isinstance(webhook, dict) or not isinstance(webhook.get("body"), str):
        raise ConfigError(f"action {WEBHOOK_ACTION!r} needs a webhook with a string body", path=source)
    return webhook
