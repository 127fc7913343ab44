"""The ECS part of every results document: the process start in ECS names, and ECS alert fields.

Whatever shape the source events have (connector/profiles.py), a results document carries
``process.*``, ``process.parent.*``, ``user.name`` and ``host.name`` as ECS names them, so one Kibana bundle
and one Elastic Security rule serve every source. The finding itself is an ECS alert: ``event.kind:
alert``, ``rule.*``, ``message``, and ``event.risk_score`` / ``event.severity`` derived from the model's
confidence or score. Pure code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from connector.model.fields import ABSENT, lookup
from connector.profiles import DEFAULT_PROFILE, DataProfile, profile_named

RULESET = "rare-child-connector"
# Kibana's default risk scores of its four severities (low 21, medium 47, high 73, critical 99); the
# severity of a risk score is the band it falls in, as event.severity 1 (low) to 4 (critical).
SEVERITY_BANDS = ((40, 1), (60, 2), (80, 3))
SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}


def profile_of(use_case: Any) -> DataProfile:
    """The profile a use case ran with (applied by the engines); the osquery default before that."""
    return profile_named(use_case.profile) if use_case.profile else DEFAULT_PROFILE


def terms_risk_score(confidence: float | None) -> float:
    """21 (low) on the frontier to 73 (high) at full confidence: rarity alone never makes a critical alert."""
    share = 0.0 if confidence is None else min(1.0, max(0.0, confidence))
    return round(21 + 52 * share, 2)


def rarechild_risk_score(score: float, threshold: float) -> float:
    """47 (medium) at the threshold, 73 (high) at twice it, 99 (critical) from three times it."""
    ratio = score / threshold if threshold > 0 else 1.0
    return round(min(99.0, max(21.0, 47 + 26 * (ratio - 1))), 2)


def severity(risk_score: float) -> int:
    """``event.severity`` (1 low ... 4 critical) of a risk score."""
    for below, level in SEVERITY_BANDS:
        if risk_score < below:
            return level
    return 4


def ecs_overlay(
    use_case: Any,
    source: Mapping[str, Any],
    *,
    risk_score: float,
    message: str,
) -> dict[str, Any]:
    """The ECS fields to lay over the event's copy (nested objects, absent source fields left out)."""
    profile = profile_of(use_case)
    overlay: dict[str, Any] = {}
    for ecs_field, path in profile.ecs_fields.items():
        value = lookup(source, path)
        if value is not ABSENT and value is not None:
            _set(overlay, ecs_field, copy.deepcopy(value))
    level = severity(risk_score)
    _set(overlay, "event.kind", "alert")
    _set(overlay, "event.category", ["process"])
    _set(overlay, "event.type", ["start"])
    _set(overlay, "event.risk_score", risk_score)
    _set(overlay, "event.severity", level)
    _set(overlay, "event.dataset", "rare_child_connector.outliers")
    overlay["rule"] = {
        "id": use_case.section,
        "name": use_case.section,
        "description": use_case.outlier_reason,
        "category": use_case.outlier_type,
        "ruleset": RULESET,
    }
    overlay["message"] = message
    return overlay


def add_ecs(
    document: dict[str, Any], use_case: Any, source: Mapping[str, Any], *, risk_score: float, message: str
) -> None:
    """Lay the ECS fields of ``source``'s finding over the results ``document`` (in place)."""
    _lay_over(document, ecs_overlay(use_case, source, risk_score=risk_score, message=message))


def _lay_over(document: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    """Merge ``overlay`` into ``document`` in place: objects merge, every other value replaces."""
    for key, value in overlay.items():
        current = document.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _lay_over(current, value)
        else:
            document[key] = copy.deepcopy(value)


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
