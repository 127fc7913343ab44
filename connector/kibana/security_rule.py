"""The Elastic Security detection rule that turns each finding in the results index into an alert.

A custom query rule (``type: query``) of Kibana's detection engine, which works on a Basic licence, unlike
Watcher and Kibana's Webhook connector. It matches ``event.kind:alert`` in the results index; severity,
risk score and rule name come from each finding's ECS fields, and its time from ``outliers.detected_at``
(written once, kept on rewrites), so a finding is picked up by the run after it is written even when its
event is old. The rule body is the versioned asset ``kibana_saved_objects/security-rule-rare-child.json``;
rendering only fills in where the findings are and how often the rule runs. Nothing here talks to Kibana.
"""

from __future__ import annotations

import re
from typing import Any

from connector.errors import ConfigError
from connector.scheduling import SECURITY_RULE_ASSET, fill_placeholders, load_asset, placeholders_left
from connector.settings import DEFAULT_RESULTS_INDEX

#: Fixed, so that running the installer again updates the same rule (the detection engine's ``rule_id``).
DEFAULT_SECURITY_RULE_ID = "rare-child-connector-findings"
DEFAULT_INTERVAL = "5m"
#: Extra look-back of each run beyond its interval: a run that starts late still sees every finding.
#: Kibana does not alert twice on the same version of a source document, so the overlap costs nothing.
LOOKBACK_SECONDS = 120
#: Kibana's default ``xpack.alerting.rules.minimumScheduleInterval``.
MINIMUM_INTERVAL_SECONDS = 60

_INTERVAL = re.compile(r"([1-9][0-9]*)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE_ID = re.compile(r"[A-Za-z0-9._-]+")
# What Elasticsearch allows in an index name (lowercase, none of \ / ? " < > | , # space, not starting
# with - _ +), and no ':' (remote clusters would need the rule to read through cross-cluster search).
_INDEX = re.compile(r"[a-z0-9.][a-z0-9._+-]*\*?")


def render_security_rule(
    *,
    results_index: str = DEFAULT_RESULTS_INDEX,
    rule_id: str = DEFAULT_SECURITY_RULE_ID,
    interval: str = DEFAULT_INTERVAL,
    enabled: bool = True,
) -> dict[str, Any]:
    """The ``POST /api/detection_engine/rules`` body for the findings in ``results_index*``.

    :raises ConfigError: naming the option when a value is not usable, or naming the asset when it is
        missing, unparsable, or keeps a placeholder.
    """
    rule = fill_placeholders(
        load_asset(SECURITY_RULE_ASSET),
        {
            "RULE_ID": _checked_rule_id(rule_id),
            "RESULTS_INDEX": _index_prefix(results_index),
            "INTERVAL": interval,
            "FROM": f"now-{interval_seconds(interval) + LOOKBACK_SECONDS}s",
        },
        source=SECURITY_RULE_ASSET,
    )
    rule["enabled"] = enabled
    left = placeholders_left(rule)
    if left:
        raise ConfigError(f"placeholders left after filling: {', '.join(left)}", path=SECURITY_RULE_ASSET)
    return rule


def interval_seconds(interval: str) -> int:
    """``5m`` → 300: how often the rule runs, as Kibana's schedule takes it (seconds to days).

    :raises ConfigError: naming ``--interval`` when it is not ``<number><s|m|h|d>`` or is below one minute.
    """
    match = _INTERVAL.fullmatch(interval)
    if match is None:
        raise ConfigError(f"{interval!r} is not <number><s|m|h|d>, e.g. 5m", option="--interval")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < MINIMUM_INTERVAL_SECONDS:
        raise ConfigError("must be at least 1m (Kibana's minimum rule interval)", option="--interval")
    return seconds


def _index_prefix(results_index: str) -> str:
    """The results index without a trailing ``*``: the asset's pattern adds it (rollover indices too)."""
    if not _INDEX.fullmatch(results_index):
        raise ConfigError(
            f"{results_index!r} is not an index name (lowercase letters, digits, '.', '_', '+', '-')",
            option="--results-index",
        )
    return results_index.removesuffix("*")


def _checked_rule_id(rule_id: str) -> str:
    if not _RULE_ID.fullmatch(rule_id):
        raise ConfigError(
            f"{rule_id!r} is not an id; use letters, digits, '.', '_' and '-'", option="--rule-id"
        )
    return rule_id
