"""The outlier record: what ee-outliers writes for one flagged entry, plus our confidence."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connector.config import UseCase
from connector.model.fields import ABSENT, lookup

MODEL_TYPE = "terms"
SUMMARY_WIDTH = 150  # ee-outliers wraps summaries with textwrap.fill at this width (quirk Q1)

_PLACEHOLDER = re.compile(r"\{([^}]*)\}")


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What the model decided about one (aggregator, term) pair in one pass."""

    aggregator: str
    term: str
    term_count: int
    decision_frontier: float
    confidence: float


@dataclass(frozen=True, kw_only=True)
class Outlier:
    """One flagged entry: an event, the pair it was counted under, and the filled texts."""

    hit: Mapping[str, Any]
    observation: Observation
    trigger_method: str
    outlier_type: tuple[str, ...]
    reason: tuple[str, ...]
    summary: str

    @property
    def document_id(self) -> str:
        return str(self.hit.get("_id"))

    @property
    def index(self) -> str | None:
        return self.hit.get("_index")

    def sort_key(self) -> tuple[str, str, str]:
        return (self.document_id, self.observation.aggregator, self.observation.term)


def build_outlier(use_case: UseCase, hit: Mapping[str, Any], observation: Observation) -> Outlier:
    """Fill the use case's templates for ``hit`` as ee-outliers does."""
    fields = dict(hit.get("_source") or {})
    # The overlay wins on name clashes, so {term_count} and {aggregator} always work.
    fields.update(
        term_count=observation.term_count,
        aggregator=observation.aggregator,
        term=observation.term,
        decision_frontier=observation.decision_frontier,
        trigger_method=use_case.trigger_method.value,
        model_name=use_case.model_name,
        model_type=MODEL_TYPE,
    )
    return Outlier(
        hit=hit,
        observation=observation,
        trigger_method=use_case.trigger_method.value,
        outlier_type=_split(fill_placeholders(use_case.outlier_type, fields)),
        reason=_split(fill_placeholders(use_case.outlier_reason, fields)),
        summary=textwrap.fill(fill_placeholders(use_case.outlier_summary, fields), width=SUMMARY_WIDTH),
    )


def placeholder_paths(template: str) -> list[str]:
    """The field paths of a template's ``{path}`` placeholders, in order."""
    return _PLACEHOLDER.findall(template)


def fill_placeholders(template: str, fields: Mapping[str, Any]) -> str:
    """Replace each ``{path}`` with the field's value, in ee-outliers' spelling.

    Arrays of strings are joined with ", "; other arrays become ``complex field <path>``; a
    missing field becomes ``{field <path> not found in event}``. Replacements are applied one
    placeholder after another over the whole text, like upstream's ``str.replace`` loop.
    """
    text = template
    for path in _PLACEHOLDER.findall(template):
        value = lookup(fields, path)
        if value is ABSENT:
            replacement = "{field " + path + " not found in event}"
        elif isinstance(value, list):
            if all(isinstance(item, str) for item in value):
                replacement = ", ".join(value)
            else:
                replacement = "complex field " + path
        else:
            replacement = str(value)
        text = text.replace("{" + path + "}", replacement)
    return text


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def record_values(use_case: UseCase, outlier: Outlier) -> Iterator[Any]:
    """Every value of ee-outliers' outlier record, as seen by the whitelist.

    The random ``non_outlier_values_sample`` is left out (quirk Q2) and so is our confidence,
    which upstream does not have.
    """
    observation = outlier.observation
    yield from outlier.outlier_type
    yield from outlier.reason
    yield outlier.summary
    yield use_case.model_name
    yield MODEL_TYPE
    yield use_case.elasticsearch_filter
    for _, value in use_case.extra_options:
        yield value
    yield from asset_values(use_case, outlier.hit.get("_source") or {})
    yield observation.term_count
    yield observation.aggregator
    yield observation.term
    yield observation.decision_frontier
    yield outlier.trigger_method


def asset_values(use_case: UseCase, source: Mapping[str, Any]) -> list[str]:
    """``"<type>: <value>"`` for each configured asset field the event has (empty ones skipped)."""
    assets = []
    for path, asset_type in use_case.assets:
        value = lookup(source, path)
        if value is ABSENT:
            continue
        for item in value if isinstance(value, list) else [value]:
            if item is None or isinstance(item, Mapping | list) or str(item) == "":
                continue
            assets.append(f"{asset_type}: {item}")
    return assets
