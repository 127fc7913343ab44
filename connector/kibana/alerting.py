"""The Kibana Webhook connector for the service and the hourly rule that calls it, rendered from the assets.

For clusters without Watcher: Kibana's alerting framework runs the schedule. Both are versioned assets in
``kibana_saved_objects/``; rendering fills in where the service listens and which index and use case run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.errors import ConfigError
from connector.scheduling import (
    KIBANA_CONNECTOR_ASSET,
    KIBANA_RULE_ASSET,
    ServiceCredentials,
    ServiceEndpoint,
    detection_body,
    fill_placeholders,
    load_asset,
    placeholders_left,
)

# Fixed ids, so that running the installer again updates the same connector and rule. UUIDs because
# Kibana's generated ids are UUIDs and some versions accept nothing else for these objects.
DEFAULT_CONNECTOR_ID = "5f2c6d0e-3b8a-4c1f-9a7e-2d4b6c8e0f13"
DEFAULT_RULE_ID = "8a1e4b7c-6d2f-4e9a-b3c5-7f0d1e2a3b4c"
DEFAULT_RULE_INDEX = "osquery-*"


def render_connector(*, endpoint: ServiceEndpoint, credentials: ServiceCredentials) -> dict[str, Any]:
    """The ``.webhook`` connector for the service, credentials in ``secrets`` (print only a redacted copy).

    :raises ConfigError: when the asset is missing, unparsable, or keeps a placeholder.
    """
    connector = fill_placeholders(
        load_asset(KIBANA_CONNECTOR_ASSET),
        {
            "SERVICE_URL": endpoint.base_url,
            "SERVICE_USER": credentials.user,
            "SERVICE_PASSWORD": credentials.password,
        },
        source=KIBANA_CONNECTOR_ASSET,
    )
    _no_placeholders_left(connector, KIBANA_CONNECTOR_ASSET)
    return connector


def render_rule(
    *, connector_id: str, index: str | None = None, use_case: str | None = None
) -> dict[str, Any]:
    """The hourly Elasticsearch-query rule whose action calls the connector with the detection body.

    :raises ConfigError: when the asset is missing, unparsable, or keeps a placeholder.
    """
    rule = fill_placeholders(
        load_asset(KIBANA_RULE_ASSET),
        {"CONNECTOR_ID": connector_id, "SOURCE_INDEX": index or DEFAULT_RULE_INDEX},
        source=KIBANA_RULE_ASSET,
    )
    for action in rule.get("actions") or []:
        params = action.get("params") if isinstance(action, dict) else None
        if isinstance(params, dict) and isinstance(params.get("body"), str):
            params["body"] = detection_body(
                params["body"], index=index, use_case=use_case, source=KIBANA_RULE_ASSET
            )
    _no_placeholders_left(rule, KIBANA_RULE_ASSET)
    return rule


def _no_placeholders_left(document: Any, source: Path) -> None:
    left = placeholders_left(document)
    if left:
        raise ConfigError(f"placeholders left after filling: {', '.join(left)}", path=source)
