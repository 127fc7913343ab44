"""The rarechild model's prior knowledge as a file: read TOML, check it, build the model's values.

The shipped file is ``rarechild-knowledge.toml`` beside this module; a use case may name its own with
``knowledge=PATH``. Every problem is a :class:`~connector.errors.ConfigError` naming the file and the
key, so an edited file that breaks stops the service before it serves.
"""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from connector.errors import ConfigError
from connector.model.knowledge import (
    ANY,
    DERIVED_PARENT_CLASSES,
    EventPoints,
    Knowledge,
    ProcessClass,
    Rule,
)

DEFAULT_KNOWLEDGE = Path(__file__).with_name("rarechild-knowledge.toml")


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = json.loads(resources.files(__package__).joinpath("knowledge.schema.json").read_text("utf-8"))
    return Draft202012Validator(schema)


def load_knowledge(path: str | Path | None = None) -> Knowledge:
    """The knowledge in ``path`` (default: the shipped file), checked against knowledge.schema.json."""
    file = Path(path) if path is not None else DEFAULT_KNOWLEDGE
    return _load_cached(str(file.resolve()) if file.exists() else str(file))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> Knowledge:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            "knowledge file not found; give the path of a rarechild knowledge TOML file", path=path
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}", path=path) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=path) from None
    return parse_knowledge(data, path=path)


def parse_knowledge(data: dict[str, Any], *, path: str = "<knowledge>") -> Knowledge:
    """Check ``data`` (a parsed knowledge file) and build its :class:`Knowledge`."""
    errors = sorted(_validator().iter_errors(data), key=lambda error: list(error.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ConfigError(
            f"{where}: {error.message} (see connector/knowledge/knowledge.schema.json)", path=path
        )
    known = {*data["classes"], ANY, *DERIVED_PARENT_CLASSES}
    for number, rule in enumerate(data["rules"], start=1):
        for side in ("parent", "child"):
            if rule[side] not in known or (side == "child" and rule[side] in DERIVED_PARENT_CLASSES):
                raise ConfigError(
                    f"rules[{number}].{side}: unknown class {rule[side]!r}; define [classes.{rule[side]}] "
                    f"or use one of: {', '.join(sorted(known))}",
                    path=path,
                )
    return Knowledge(
        classes={
            name: ProcessClass(
                name=name,
                description=entry["description"],
                members=frozenset(entry["members"]),
                sources=tuple(entry["sources"]),
            )
            for name, entry in data["classes"].items()
        },
        rules=tuple(
            Rule(
                parent=rule["parent"],
                child=rule["child"],
                points=float(rule["points"]),
                technique=rule["technique"],
                says=rule["says"],
            )
            for rule in data["rules"]
        ),
        decoy_extensions=tuple(data["names"]["decoy_extensions"]),
        program_extensions=tuple(data["names"]["program_extensions"]),
        user_writable_patterns=tuple(data["paths"]["user_writable"]),
        expected_parents={
            child: frozenset(parents) for child, parents in data["expected_parents"]["parents"].items()
        },
        system_homes={name: frozenset(homes) for name, homes in data["system_binaries"]["homes"].items()},
        points=EventPoints(**{key: float(value) for key, value in data["points"].items()}),
        source=path,
    )
