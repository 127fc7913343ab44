"""The service's JSON Schemas (files in ``schemas/``), compiled once, and request validation.

Each ``<name>.schema.json`` is checked against Draft 2020-12 and compiled with the draft's format
checker when the app is built. :meth:`SchemaSet.validate` reports *every* violation, sorted by
location, each with a ``$.``-style JSON path, as a :class:`~connector.errors.RequestValidationError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from connector.errors import ConfigError, RequestValidationError

SCHEMA_SUFFIX = ".schema.json"
_MAX_MESSAGE_CHARS = 300
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SchemaSet:
    """Schema documents by name (file name without ``.schema.json``) and their compiled validators."""

    documents: Mapping[str, Mapping[str, Any]]
    validators: Mapping[str, Draft202012Validator]

    def validate(self, name: str, instance: Any) -> None:
        """Validate ``instance`` against schema ``name``.

        :raises RequestValidationError: listing every violation as ``{"path", "message"}``, sorted by path.
        """
        details = violations(self.validators[name], instance)
        if details:
            count = f"{len(details)} problem{'s' if len(details) > 1 else ''}"
            first = f"{details[0]['path']}: {details[0]['message']}"
            raise RequestValidationError(
                f"the request body does not match the {name} schema ({count}; first: {first})",
                details=details,
            )


def load_schemas() -> SchemaSet:
    """Read, check and compile every schema file shipped in ``connector/service/schemas``.

    :raises ConfigError: when a file is not JSON or not a valid Draft 2020-12 schema (a packaging bug).
    """
    folder = resources.files("connector.service").joinpath("schemas")
    documents: dict[str, Mapping[str, Any]] = {}
    validators: dict[str, Draft202012Validator] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(SCHEMA_SUFFIX):
            continue
        name = entry.name.removesuffix(SCHEMA_SUFFIX)
        try:
            document = json.loads(entry.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(document)
        except (ValueError, ValidationError) as error:
            raise ConfigError(f"invalid JSON Schema: {error}", path=str(entry)) from None
        documents[name] = document
        validators[name] = Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)
    if not documents:
        raise ConfigError("no *.schema.json files found; the package is incomplete", path=str(folder))
    return SchemaSet(documents, validators)


def violations(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    """Every violation of ``instance`` as ``{"path": "$.a.b", "message": ...}``, sorted by path, message."""
    details: list[dict[str, str]] = []
    for error in validator.iter_errors(instance):
        details.extend(_describe(error))
    return sorted(details, key=lambda item: (item["path"], item["message"]))


def json_path(parts: Iterable[str | int]) -> str:
    """``["range", "from"]`` -> ``$.range.from``; indices and unusual keys use brackets."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _describe(error: ValidationError) -> list[dict[str, str]]:
    location = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Point at each unknown field itself, and say which fields are allowed there.
        allowed = sorted(error.schema.get("properties", {}))
        known = set(allowed)
        return [
            {
                "path": json_path([*location, key]),
                "message": f"unknown field {key!r}; allowed here: {', '.join(allowed)}",
            }
            for key in sorted(error.instance)
            if key not in known
        ]
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [key for key in error.validator_value if key not in error.instance]
        return [
            {"path": json_path([*location, key]), "message": "required field is missing"} for key in missing
        ]
    if error.validator == "not" and isinstance(error.instance, dict):
        # "since_checkpoint cannot go with range or baseline": name the fields that clash.
        excluded = [
            key for branch in error.validator_value.get("anyOf", []) for key in branch.get("required", [])
        ]
        present = [key for key in excluded if key in error.instance]
        if present:
            return [
                {
                    "path": json_path([*location, key]),
                    "message": "cannot be combined with since_checkpoint; give one of the two forms",
                }
                for key in present
            ]
    message = error.message
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return [{"path": json_path(location), "message": message}]
