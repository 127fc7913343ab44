"""The results index template: typed ``outliers.*`` fields and the event fields the Kibana objects read."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from connector.errors import ConnectorError
from connector.results.failures import call_translated

log = logging.getLogger(__name__)

TEMPLATE_PRIORITY = 200

# Raise with every change of results_index_template (2: the OsqueryFilter fields Kibana shows, mapped;
# 3: the rarechild alert fields: score, factors, count, event ids, hosts, first and last time;
# 4: the normalized ECS fields (process.*, user.name, event.*, rule.*, message) and outliers.detected_at).
TEMPLATE_VERSION = 4

DEFAULT_RESULTS_INDEX = "outliers-rare-child"

# ignore_above counts characters; 8191 characters of UTF-8 (at most 4 bytes each) stay below Lucene's
# 32766-byte limit for one term, so a huge value is stored (in _source) but not indexed, instead of the
# whole document being rejected.
KEYWORD_IGNORE_ABOVE = 8191

# OsqueryFilter.<name> fields of the copied event that the results template maps explicitly.
EVENT_FIELDS_SHOWN_IN_KIBANA = (
    "name",
    "parentname",
    "cmdline",
    "parentcmdline",
    "username",
    "path",
    "sha256",
)


def results_template_name(results_index: str) -> str:
    """The index template's name: the results index name (template names have their own namespace)."""
    return results_index


def results_index_template(
    results_index: str, *, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Body of ``PUT _index_template/<name>`` for ``results_index`` and ``results_index-*``.

    No index settings by default: shards, replicas and refresh follow the cluster's defaults (a template
    that forces ``number_of_replicas: 0`` would leave production results without a copy). ``settings``
    lets tests or operators add some.
    """
    keyword = {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}
    event_string = {**keyword, "fields": {"text": {"type": "text"}}}
    template: dict[str, Any] = {
        "mappings": {
            # A copy of each event comes along, so the event part stays dynamic, with two rules:
            # strings become keyword (a text sub-field for word search): Kibana filters, terms
            # visualizations and exact matches like OsqueryFilter.name:"cmd.exe" work on the field's own
            # name, without the ".keyword" suffix of default dynamic mapping. And date-like strings stay
            # strings: date detection would fix a date type that a later non-date value then breaks.
            "date_detection": False,
            "dynamic_templates": [
                {
                    "strings_as_keyword": {
                        "match_mapping_type": "string",
                        "mapping": event_string,
                    }
                },
                # JSON floats would become 32-bit "float" (1.5525 aggregates as 1.5525000095367432).
                {"floats_as_double": {"match_mapping_type": "double", "mapping": {"type": "double"}}},
            ],
            "properties": {
                "@timestamp": {"type": "date"},
                "tags": dict(keyword),
                "host": {"properties": {"name": dict(keyword)}},
                # The normalized ECS fields every results document carries (connector/results/ecs.py),
                # whatever the source's shape: the Kibana objects and the Security rule read only these.
                "process": {
                    "properties": {
                        "name": copy.deepcopy(event_string),
                        "executable": copy.deepcopy(event_string),
                        "command_line": copy.deepcopy(event_string),
                        "hash": {"properties": {"sha256": dict(keyword)}},
                        "parent": {
                            "properties": {
                                "name": copy.deepcopy(event_string),
                                "command_line": copy.deepcopy(event_string),
                            }
                        },
                    }
                },
                "user": {"properties": {"name": copy.deepcopy(event_string)}},
                "event": {
                    "properties": {
                        "kind": dict(keyword),
                        "category": dict(keyword),
                        "type": dict(keyword),
                        "dataset": dict(keyword),
                        "risk_score": {"type": "float"},
                        "severity": {"type": "long"},
                    }
                },
                "rule": {
                    "properties": {
                        name: dict(keyword) for name in ("id", "name", "description", "category", "ruleset")
                    }
                },
                # text, not ECS's match_only_text: that needs the mapper-extras module.
                "message": {"type": "text"},
                # The osquery fields the bundled Kibana objects show (kibana_saved_objects/), mapped
                # explicitly as the dynamic rule above would map them: Kibana then knows them before
                # the first outlier arrives, and a test can check the objects against this template.
                "OsqueryFilter": {
                    "properties": {name: copy.deepcopy(event_string) for name in EVENT_FIELDS_SHOWN_IN_KIBANA}
                },
                "outliers": {
                    "properties": {
                        "model_name": dict(keyword),
                        "model_type": dict(keyword),
                        "use_case": dict(keyword),
                        "type": dict(keyword),
                        "reason": dict(keyword),
                        "summary": {"type": "text", "fields": {"keyword": dict(keyword)}},
                        "term_count": {"type": "long"},
                        "aggregator": dict(keyword),
                        "term": dict(keyword),
                        "decision_frontier": {"type": "double"},
                        "trigger_method": dict(keyword),
                        "confidence": {"type": "double"},
                        "elasticsearch_filter": dict(keyword),
                        "assets": dict(keyword),
                        "source_index": dict(keyword),
                        "source_id": dict(keyword),
                        "aggregator_total": {"type": "long"},
                        "aggregator_distinct_terms": {"type": "long"},
                        "host_count": {"type": "long"},
                        "first_seen_in_range": {"type": "boolean"},
                        "top_terms": {"properties": {"term": dict(keyword), "count": {"type": "long"}}},
                        # rarechild alerts (template version 3)
                        "score": {"type": "double"},
                        "threshold": {"type": "double"},
                        "explanation": {"type": "text", "fields": {"keyword": dict(keyword)}},
                        "factors": {
                            "properties": {
                                "factor": dict(keyword),
                                "points": {"type": "double"},
                                "value": {"type": "double"},
                                "says": {"type": "text"},
                                "technique": dict(keyword),
                            }
                        },
                        "count": {"type": "long"},
                        "event_ids": dict(keyword),
                        "hosts": dict(keyword),
                        "hosts_seen": {"type": "long"},
                        "first_time": {"type": "date"},
                        "last_time": {"type": "date"},
                        "flagged_events_only": {"type": "boolean"},
                        "whitelisted_events": {"type": "long"},
                        # when the connector first wrote the finding (kept on rewrites): the time a
                        # Security rule selects new findings by (template version 4)
                        "detected_at": {"type": "date"},
                    }
                },
            },
        }
    }
    if settings:
        template["settings"] = dict(settings)
    return {
        "index_patterns": [results_index, f"{results_index}-*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {
            "managed_by": "rare-child-connector",
            "description": "Outliers of the rare-child-process connector: one document per outlier.",
        },
        "template": template,
    }


def render_results_template(results_index: str = DEFAULT_RESULTS_INDEX) -> str:
    """The template as the JSON text bundled in ``kibana_saved_objects/results-index-template.json``."""
    return (
        json.dumps(results_index_template(results_index), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def install_results_template(
    client: Elasticsearch, results_index: str, *, settings: Mapping[str, Any] | None = None
) -> None:
    """Create or replace the results index template (applies to indices created afterwards).

    :raises ElasticsearchAuthError: the connector may not manage index templates (privilege
        ``manage_index_templates``)
    :raises ConnectorError: Elasticsearch refused the template, e.g. another template of the same
        priority matches the same names
    """
    body = results_index_template(results_index, settings=settings)
    call_translated(
        lambda: client.indices.put_index_template(
            name=results_template_name(results_index),
            index_patterns=body["index_patterns"],
            priority=body["priority"],
            version=body["version"],
            meta=body["_meta"],
            template=body["template"],
        ),
        f"installing the index template for {results_index}",
    )
    log.info("installed index template %s for %s", results_template_name(results_index), results_index)


def upgrade_results_mappings(client: Elasticsearch, results_index: str) -> list[str]:
    """Add the current template's fields to results indices that already exist; the indices upgraded.

    An index keeps the mapping it was created with, so one written under an older template lacks, for
    example, ``outliers.detected_at`` as a date, and its next document would map it dynamically (as a
    string). Adding fields is allowed; a field an old index maps differently is refused, and the message
    says to let a new index take over.
    """
    properties = results_index_template(results_index)["template"]["mappings"]["properties"]
    existing = call_translated(
        lambda: client.indices.get(
            index=[results_index, f"{results_index}-*"],
            ignore_unavailable=True,
            allow_no_indices=True,
            expand_wildcards="open",
        ),
        f"listing the results indices of {results_index}",
    )
    upgraded = []
    for index in sorted(existing):
        try:
            client.indices.put_mapping(index=index, properties=properties)
        except ApiError as error:
            raise ConnectorError(
                f"results index {index} maps a field differently from template version {TEMPLATE_VERSION} "
                f"({error.message}); write to a new results index (CONNECTOR_RESULTS_INDEX, or roll the "
                f"alias over) and keep the old one for reading"
            ) from None
        upgraded.append(index)
    if upgraded:
        log.info("added template version %d fields to %s", TEMPLATE_VERSION, ", ".join(upgraded))
    return upgraded
