"""Data profiles: where each source shape keeps a process start's fields.

The models count any two fields; everything that *reads* an event beyond them (the explanation's command
line, user, path and hash, the host, the normalized ECS fields of the results documents, the events a
use case counts at all) asks the profile. Three shapes are known:

* ``osquery``: NVISO's osquery pipeline (``OsqueryFilter.*``), ee-outliers' home ground and the default;
* ``ecs``: Elastic Common Schema process events: Elastic Defend (``logs-endpoint.events.process-*``) and
  Sysmon through Elastic's Windows integration or Winlogbeat. Only process *starts* count
  (``event.category: process`` and ``event.type: start``): Defend also records process ends;
* ``osquery-manager``: Fleet's Osquery Manager results (``logs-osquery_manager.result-*``) of a scheduled
  query over ``processes`` joined with its parent (examples/osquery-manager-processes.sql).

A use case names its profile (``profile=ecs``); without one, the fields the data has decide
(:func:`detect_profile`) and the answer says which profile was detected. Pure code: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from connector.model.fields import lookup

UseCaseT = TypeVar("UseCaseT")

# The event fields an answer's explanation shows: answer key -> ECS field (each profile knows its own).
EXPLAINED_EVENT_FIELDS = {
    "command_line": "process.command_line",
    "parent_command_line": "process.parent.command_line",
    "user": "user.name",
    "path": "process.executable",
    "sha256": "process.hash.sha256",
}


@dataclass(frozen=True, kw_only=True)
class DataProfile:
    """Field paths of one source shape, and the conditions an event must meet to be a process start.

    :ivar conditions: ``(field, value)`` pairs every counted event must carry (an array field: among its
        values); over Elasticsearch they become ``term`` filters, over a file a check per event
    :ivar markers: fields whose presence identifies the shape (all of them must exist)
    :ivar ingest_time: the field that says when an event arrived, when the shape has one
    """

    name: str
    title: str
    process_name: str
    parent_name: str
    command_line: str
    parent_command_line: str
    user: str
    executable: str
    sha256: str
    host: str
    timestamp: str = "@timestamp"
    ingest_time: str | None = None
    conditions: tuple[tuple[str, str], ...] = ()
    markers: tuple[str, ...] = ()

    @property
    def ecs_fields(self) -> dict[str, str]:
        """ECS field -> this shape's field, for the normalized copy in every results document."""
        return {
            "process.name": self.process_name,
            "process.parent.name": self.parent_name,
            "process.command_line": self.command_line,
            "process.parent.command_line": self.parent_command_line,
            "process.executable": self.executable,
            "process.hash.sha256": self.sha256,
            "user.name": self.user,
            "host.name": self.host,
        }

    @property
    def event_fields(self) -> dict[str, str]:
        """The explanation's event fields: answer key -> this shape's field."""
        ecs_fields = self.ecs_fields
        return {key: ecs_fields[ecs_field] for key, ecs_field in EXPLAINED_EVENT_FIELDS.items()}


def meets(source: Mapping[str, Any], conditions: Iterable[tuple[str, str]]) -> bool:
    """Each ``(field, value)``: the field holds the value (an array: among its values), as a term query."""
    for name, wanted in conditions:
        value = lookup(source, name)
        if wanted not in (value if isinstance(value, list) else [value]):
            return False
    return True


OSQUERY = DataProfile(
    name="osquery",
    title="NVISO osquery pipeline (OsqueryFilter.*)",
    process_name="OsqueryFilter.name",
    parent_name="OsqueryFilter.parentname",
    command_line="OsqueryFilter.cmdline",
    parent_command_line="OsqueryFilter.parentcmdline",
    user="OsqueryFilter.username",
    executable="OsqueryFilter.path",
    sha256="OsqueryFilter.sha256",
    host="host.name",
    markers=("OsqueryFilter.name", "OsqueryFilter.parentname"),
)
ECS = DataProfile(
    name="ecs",
    title="ECS process events (Elastic Defend, Sysmon through Elastic's integrations)",
    process_name="process.name",
    parent_name="process.parent.name",
    command_line="process.command_line",
    parent_command_line="process.parent.command_line",
    user="user.name",
    executable="process.executable",
    sha256="process.hash.sha256",
    host="host.name",
    ingest_time="event.ingested",
    conditions=(("event.category", "process"), ("event.type", "start")),
    markers=("process.name", "process.parent.name", "event.category"),
)
OSQUERY_MANAGER = DataProfile(
    name="osquery-manager",
    title="Fleet Osquery Manager results (osquery.*)",
    process_name="osquery.name",
    parent_name="osquery.parent_name",
    command_line="osquery.cmdline",
    parent_command_line="osquery.parent_cmdline",
    user="osquery.username",
    executable="osquery.path",
    sha256="osquery.sha256",
    # Elastic Agent's name: the host name unless the agent was renamed.
    host="agent.name",
    markers=("osquery.name", "osquery.parent_name"),
)
PROFILES: dict[str, DataProfile] = {profile.name: profile for profile in (OSQUERY, ECS, OSQUERY_MANAGER)}
DEFAULT_PROFILE = OSQUERY

# Use-case options a profile fills in when the section leaves them out.
PROFILE_OPTIONS = ("aggregator", "target", "host_field", "path_field", "timestamp_field")


def profile_named(name: str) -> DataProfile:
    """The profile called ``name``; :class:`KeyError` naming the known ones otherwise."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def detect_profile(fields: Iterable[str]) -> DataProfile | None:
    """The first profile (osquery, ecs, osquery-manager) whose marker fields all exist, else None."""
    present = {field.lower() for field in fields}
    for profile in PROFILES.values():
        if all(marker.lower() in present for marker in profile.markers):
            return profile
    return None


@dataclass(frozen=True)
class ProfileChoice:
    """Which profile a detection used and how it was chosen, for the answer."""

    profile: DataProfile
    how: str  # "configured", "detected" or "default" (nothing recognised: the osquery default)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.profile.name, "chosen": self.how}


def choose_profile(use_case: Any, field_names: Callable[[], Iterable[str]]) -> ProfileChoice:
    """The use case's own profile, else the one the data's fields show (read only then), else the default."""
    if use_case.profile is not None:
        return ProfileChoice(profile_named(use_case.profile), "configured")
    detected = detect_profile(field_names())
    if detected is not None:
        return ProfileChoice(detected, "detected")
    return ProfileChoice(DEFAULT_PROFILE, "default")


def apply_profile(use_case: UseCaseT, profile: DataProfile) -> UseCaseT:
    """``use_case`` with the profile's fields wherever the section left them to it, and its conditions."""
    fields = {
        "aggregator": (profile.parent_name,),
        "target": (profile.process_name,),
        "host_field": profile.host,
        "path_field": profile.executable,
        "timestamp_field": profile.timestamp,
    }
    open_options = use_case.profile_options  # type: ignore[attr-defined]
    changes: dict[str, Any] = {
        option: value
        for option, value in fields.items()
        if option in open_options and hasattr(use_case, option)
    }
    changes["profile"] = profile.name
    changes["profile_conditions"] = profile.conditions
    return dataclasses.replace(use_case, **changes)  # type: ignore[type-var]


def profiled(use_case: UseCaseT, field_names: Callable[[], Iterable[str]]) -> tuple[UseCaseT, ProfileChoice]:
    """The use case as a detection runs it (its profile applied), and the profile choice for the answer."""
    choice = choose_profile(use_case, field_names)
    return apply_profile(use_case, choice.profile), choice
