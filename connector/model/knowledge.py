"""Prior knowledge of the rarechild model, as values: classes of processes, rules, names and paths.

The shipped data lives in ``connector/knowledge/rarechild-knowledge.toml`` (read and validated by
``connector.knowledge``); this module only answers questions about it, so the model stays free of I/O.
Names are compared case-insensitively on the file name; paths with shell-like wildcards (``*`` any run
of characters, backslashes included, ``?`` one character), case-insensitively. Both sources only count
paths; this module judges them, so an event is classified alike wherever it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

ANY = "*"
#: Parent classes the model derives from the data rather than from names.
FROM_USER_DIRECTORY = "from_user_directory"
DOUBLE_EXTENSION = "double_extension"
DERIVED_PARENT_CLASSES = frozenset({FROM_USER_DIRECTORY, DOUBLE_EXTENSION})


@dataclass(frozen=True)
class ProcessClass:
    name: str
    description: str
    members: frozenset[str]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """``points`` for a launch from class ``parent`` into class ``child`` (``*``: any process)."""

    parent: str
    child: str
    points: float
    technique: str
    says: str


@dataclass(frozen=True)
class RuleMatch:
    rule: Rule
    parent_class: str
    child_class: str


@dataclass(frozen=True)
class EventPoints:
    """Points of the name and path factors."""

    double_extension: float
    unexpected_parent: float
    system_binary_elsewhere: float
    user_writable: float


@dataclass(frozen=True)
class Knowledge:
    classes: Mapping[str, ProcessClass]
    rules: tuple[Rule, ...]
    decoy_extensions: tuple[str, ...]
    program_extensions: tuple[str, ...]
    user_writable_patterns: tuple[str, ...]
    expected_parents: Mapping[str, frozenset[str]]
    system_homes: Mapping[str, frozenset[str]]
    points: EventPoints
    source: str = field(default="", compare=False)

    @cached_property
    def _classes_by_member(self) -> dict[str, tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for name in sorted(self.classes):
            for member in self.classes[name].members:
                index.setdefault(member, []).append(name)
        return {member: tuple(names) for member, names in index.items()}

    @cached_property
    def _user_writable(self) -> tuple[re.Pattern[str], ...]:
        return tuple(wildcard_regex(pattern) for pattern in self.user_writable_patterns)

    def classes_of(self, name: str) -> tuple[str, ...]:
        """The classes ``name`` belongs to, in name order (``name`` is folded here)."""
        return self._classes_by_member.get(name.lower(), ())

    def best_rule(self, parent_classes: Iterable[str], child_classes: Iterable[str]) -> RuleMatch | None:
        """The matching rule with the most points; ties go to the rule listed first (deterministic)."""
        parents = {*parent_classes, ANY}
        children = {*child_classes, ANY}
        best: RuleMatch | None = None
        for rule in self.rules:
            if (
                rule.parent in parents
                and rule.child in children
                and (best is None or rule.points > best.rule.points)
            ):
                best = RuleMatch(rule, rule.parent, rule.child)
        return best

    def has_double_extension(self, name: str) -> bool:
        """``invoice.pdf.exe``: a decoy extension right before a program extension."""
        folded = name.lower()
        for program in self.program_extensions:
            if folded.endswith(program):
                stem = folded[: -len(program)]
                return any(stem.endswith(decoy) and len(stem) > len(decoy) for decoy in self.decoy_extensions)
        return False

    def is_user_writable(self, path: str | None) -> bool:
        return bool(path) and any(pattern.fullmatch(path) for pattern in self._user_writable)

    @cached_property
    def _homes(self) -> dict[str, tuple[re.Pattern[str], ...]]:
        return {
            name: tuple(wildcard_regex(home_pattern(home)) for home in sorted(homes))
            for name, homes in self.system_homes.items()
        }

    def is_outside_home(self, name: str, path: str | None) -> bool:
        """A known system binary's name run from a directory that is not one of its own."""
        homes = self._homes.get(name.lower())
        if not homes or not path:
            return False
        return not any(home.fullmatch(path) for home in homes)

    def unexpected_parent(self, parent: str, child: str) -> bool:
        expected = self.expected_parents.get(child.lower())
        return expected is not None and parent.lower() not in expected


def home_pattern(home: str) -> str:
    """The wildcard of a program inside ``home`` or below it: ``c:\\windows\\system32\\*``."""
    return home.rstrip("\\") + "\\*"


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """A wildcard as a Python regex: ``*`` any run, ``?`` one character, the rest literal."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
