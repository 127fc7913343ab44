"""What Kibana's APIs accept, as offline checks: saved objects for the import, the Webhook connector, the
Elasticsearch-query rule and the Elastic Security detection rule.

One set of rules, used twice: the unit tests check the shipped assets with them (tests/unit/
test_saved_objects.py, test_scheduling_assets.py), and the Kibana stand-in of the installer tests
(tests/integration/test_kibana_client.py) checks every body it receives with them, so a body Kibana would
refuse fails there too. The rules are restated here, not taken from ``connector``, so that the tests do not
trust the module they check. Each function returns the list of problems (empty: Kibana accepts it).

Saved objects are checked as the minimum supported Kibana (8.11) imports them: envelope keys and migration
versions, the attribute keys the search and dashboard schemas allow (they forbid unknown keys), those
Kibana writes for data views and Lens, JSON-encoded attributes, references. The connector and rule bodies
are checked against the create (``POST``) and update (``PUT``) bodies of the actions and alerting APIs.
The detection rule is checked with a JSON Schema restated from Kibana's OpenAPI description of
``POST /api/detection_engine/rules`` (tests/schemas/detection-engine-query-rule.schema.json, which names its
sources); ``PUT`` on the same path takes the same body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

MINIMUM_KIBANA_VERSION = "8.11.0"

# -- saved objects ---------------------------------------------------------------------------------

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
IMPORTABLE_TYPES = {"index-pattern", "search", "visualization", "lens", "dashboard", "tag"}
REQUIRED_ENVELOPE_KEYS = {
    "id",
    "type",
    "attributes",
    "references",
    "coreMigrationVersion",
    "typeMigrationVersion",
}
OPTIONAL_ENVELOPE_KEYS = {"managed"}
TYPE_MIGRATION_VERSION = {  # the migration version each type is imported at
    "index-pattern": "8.0.0",
    "search": "8.0.0",
    "visualization": "8.5.0",
    "lens": "8.9.0",
    "dashboard": "8.9.0",
    "tag": "8.0.0",
}
CORE_MIGRATION_VERSION = "8.8.0"
SEARCH_KEYS = {  # the search type's 8.8.0 base schema (forbids unknown keys)
    "title",
    "description",
    "columns",
    "sort",
    "grid",
    "rowHeight",
    "rowsPerPage",
    "hideChart",
    "breakdownField",
    "kibanaSavedObjectMeta",
    "isTextBasedQuery",
    "usesAdHocDataView",
    "timeRestore",
    "timeRange",
    "refreshInterval",
    "viewMode",
    "hideAggregatedPreview",
    "hits",
    "version",
}
DASHBOARD_KEYS = {  # the dashboard type's schema v1 (8.9.0, unknowns forbidden)
    "title",
    "description",
    "kibanaSavedObjectMeta",
    "timeRestore",
    "timeFrom",
    "timeTo",
    "refreshInterval",
    "controlGroupInput",
    "panelsJSON",
    "optionsJSON",
    "hits",
    "version",
}
DASHBOARD_REFRESH_KEYS = {"pause", "value", "display", "section"}
INDEX_PATTERN_KEYS = {  # data views have no schema: stick to what Kibana writes
    "title",
    "name",
    "timeFieldName",
    "fields",
    "fieldFormatMap",
    "fieldAttrs",
    "runtimeFieldMap",
    "sourceFilters",
    "typeMeta",
    "allowNoIndex",
    "allowHidden",
}
INDEX_PATTERN_JSON_ATTRIBUTES = {
    "fields": list,
    "fieldFormatMap": dict,
    "fieldAttrs": dict,
    "runtimeFieldMap": dict,
    "sourceFilters": list,
    "typeMeta": dict,
}
LENS_KEYS = {"title", "description", "visualizationType", "state"}
LENS_STATE_KEYS = {
    "datasourceStates",
    "visualization",
    "query",
    "filters",
    "internalReferences",
    "adHocDataViews",
}
LENS_VISUALIZATION_TYPES = {
    "lnsXY",
    "lnsDatatable",
    "lnsMetric",
    "lnsPie",
    "lnsHeatmap",
    "lnsGauge",
    "lnsTagcloud",
    "lnsLegacyMetric",
}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def encoded_attribute_paths(saved_object: Mapping[str, Any]) -> list[tuple[str, type]]:
    """(dotted attribute path, JSON type it must decode to) of every JSON-encoded attribute the object has."""
    attributes = saved_object["attributes"]
    paths: list[tuple[str, type]] = []
    if saved_object["type"] == "index-pattern":
        paths += [(name, kind) for name, kind in INDEX_PATTERN_JSON_ATTRIBUTES.items() if name in attributes]
    if "kibanaSavedObjectMeta" in attributes:
        paths.append(("kibanaSavedObjectMeta.searchSourceJSON", dict))
    if saved_object["type"] == "dashboard":
        paths += [("panelsJSON", list), ("optionsJSON", dict)]
    return paths


def attribute_at(attributes: Mapping[str, Any], path: str) -> Any:
    value: Any = attributes
    for part in path.split("."):
        value = value[part]
    return value


def saved_object_problems(saved_object: Any) -> list[str]:
    """Why Kibana's import (the minimum supported version) would refuse or break on this object."""
    if not isinstance(saved_object, Mapping):
        return ["not a JSON object"]
    keys = set(saved_object)
    problems = [f"missing envelope key {key!r}" for key in sorted(REQUIRED_ENVELOPE_KEYS - keys)]
    problems += [
        f"unknown envelope key {key!r}"
        for key in sorted(keys - REQUIRED_ENVELOPE_KEYS - OPTIONAL_ENVELOPE_KEYS)
    ]
    if problems:
        return problems
    if saved_object.get("managed", False) is not False:
        problems.append("managed is not false")
    if saved_object["type"] not in IMPORTABLE_TYPES:
        return [*problems, f"unsupported_type {saved_object['type']!r}"]
    if not isinstance(saved_object["id"], str) or not saved_object["id"] or "/" in saved_object["id"]:
        problems.append(f"id {saved_object['id']!r} is not a non-empty string without '/'")
    for key in ("coreMigrationVersion", "typeMigrationVersion"):
        version = saved_object[key]
        if not isinstance(version, str) or not SEMVER.match(version):
            problems.append(f"{key} {version!r} is not a semver version")
        elif version_tuple(version)[0] >= 10:
            problems.append(f"{key} {version!r} is a model version, not a migration version")
        elif version_tuple(version) > version_tuple(MINIMUM_KIBANA_VERSION):
            problems.append(f"{key} {version} belongs to a more recent version of Kibana")
    problems += _reference_problems(saved_object["references"])
    attributes = saved_object["attributes"]
    if not isinstance(attributes, Mapping):
        return [*problems, "attributes is not an object"]
    problems += _attribute_problems(saved_object["type"], attributes)
    for path, kind in encoded_attribute_paths(saved_object):
        try:
            text = attribute_at(attributes, path)
        except (KeyError, TypeError):
            problems.append(f"{path} is missing")
            continue
        if not isinstance(text, str):
            problems.append(f"{path} is not a JSON-encoded string")
            continue
        try:
            decoded = json.loads(text)
        except ValueError:
            problems.append(f"{path} is not valid JSON")
            continue
        if not isinstance(decoded, kind):
            problems.append(f"{path} does not decode to a JSON {'array' if kind is list else 'object'}")
    return problems


def _reference_problems(references: Any) -> list[str]:
    if not isinstance(references, list):
        return ["references is not an array"]
    problems, names = [], []
    for reference in references:
        if not isinstance(reference, Mapping) or set(reference) != {"name", "type", "id"}:
            problems.append(f"reference {reference!r} is not exactly {{name, type, id}}")
            continue
        if not all(isinstance(value, str) and value for value in reference.values()):
            problems.append(f"reference {reference!r} holds an empty or non-string value")
        names.append(reference["name"])
    if len(names) != len(set(names)):
        problems.append("reference names are not unique")
    return problems


def _attribute_problems(object_type: str, attributes: Mapping[str, Any]) -> list[str]:
    allowed = {"search": SEARCH_KEYS, "dashboard": DASHBOARD_KEYS, "index-pattern": INDEX_PATTERN_KEYS}
    allowed["lens"] = LENS_KEYS
    problems = []
    if object_type in allowed:
        unknown = sorted(set(attributes) - allowed[object_type])
        problems += [f"{object_type} attribute {key!r} is not in its schema" for key in unknown]
    if not isinstance(attributes.get("title"), str):
        problems.append("title is not a string")
    if object_type in ("search", "dashboard"):
        meta = attributes.get("kibanaSavedObjectMeta")
        if not isinstance(meta, Mapping) or set(meta) != {"searchSourceJSON"}:
            problems.append("kibanaSavedObjectMeta is not exactly {searchSourceJSON}")
    refresh = attributes.get("refreshInterval", {})
    if object_type == "dashboard" and not set(refresh) <= DASHBOARD_REFRESH_KEYS:
        problems.append("refreshInterval has keys outside pause, value, display, section")
    if object_type == "lens":
        state = attributes.get("state")
        if attributes.get("visualizationType") not in LENS_VISUALIZATION_TYPES:
            problems.append(f"visualizationType {attributes.get('visualizationType')!r} is unknown")
        if not isinstance(state, Mapping):
            problems.append("Lens state is not an object")
        else:
            problems += [f"Lens state key {key!r} is unknown" for key in sorted(set(state) - LENS_STATE_KEYS)]
            if not isinstance(state.get("query"), Mapping) or not isinstance(state.get("filters"), list):
                problems.append("Lens state query is not an object or its filters not an array")
    return problems


def import_file_problems(ndjson: bytes) -> list[str]:
    """The problems of every object of an import file (an export summary line is skipped, as Kibana does)."""
    problems = []
    for number, line in enumerate(ndjson.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            problems.append(f"line {number} is not JSON")
            continue
        if isinstance(item, Mapping) and "exportedCount" in item:
            continue
        label = f"line {number} ({item.get('type')}:{item.get('id')})" if isinstance(item, Mapping) else ""
        problems += [f"{label or f'line {number}'}: {problem}" for problem in saved_object_problems(item)]
    return problems


# -- the Webhook connector (actions API) ------------------------------------------------------------

WEBHOOK_CONFIG_KEYS = {
    "url",
    "method",
    "headers",
    "hasAuth",
    "authType",
    "certType",
    "ca",
    "verificationMode",
}
WEBHOOK_METHODS = {"post", "put"}
WEBHOOK_AUTH_TYPES = {"webhook-authentication-basic", "webhook-authentication-ssl"}
WEBHOOK_SECRET_KEYS = {"user", "password", "crt", "key", "pfx"}
CONNECTOR_CREATE_KEYS = {"name", "connector_type_id", "config", "secrets"}
CONNECTOR_UPDATE_KEYS = {"name", "config", "secrets"}


def webhook_connector_problems(body: Any, *, create: bool) -> list[str]:
    """Why ``POST`` (``create``) or ``PUT /api/actions/connector/<id>`` would refuse this .webhook body."""
    if not isinstance(body, Mapping):
        return ["the body is not a JSON object"]
    allowed = CONNECTOR_CREATE_KEYS if create else CONNECTOR_UPDATE_KEYS
    required = {"name", "connector_type_id"} if create else {"name"}
    problems = [f"unknown key {key!r}" for key in sorted(set(body) - allowed)]
    problems += [f"missing key {key!r}" for key in sorted(required - set(body))]
    if create and body.get("connector_type_id") != ".webhook":
        problems.append(f"connector_type_id is {body.get('connector_type_id')!r}, not '.webhook'")
    if not isinstance(body.get("name"), str) or not body.get("name"):
        problems.append("name is not a non-empty string")
    config = body.get("config", {})
    secrets = body.get("secrets", {})
    if not isinstance(config, Mapping) or not isinstance(secrets, Mapping):
        return [*problems, "config or secrets is not an object"]
    problems += [f"unknown config key {key!r}" for key in sorted(set(config) - WEBHOOK_CONFIG_KEYS)]
    url = config.get("url")
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        problems.append(f"config.url {url!r} is not an http(s) URL")
    if config.get("method", "post") not in WEBHOOK_METHODS:
        problems.append(f"config.method {config.get('method')!r} is not post or put")
    headers = config.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(value, str) for value in headers.values()):
        problems.append("config.headers is not an object of strings")
    problems += [f"unknown secrets key {key!r}" for key in sorted(set(secrets) - WEBHOOK_SECRET_KEYS)]
    if config.get("hasAuth", True) is not False:
        if config.get("authType", "webhook-authentication-basic") not in WEBHOOK_AUTH_TYPES:
            problems.append(f"config.authType {config.get('authType')!r} is unknown")
        if config.get(
            "authType", "webhook-authentication-basic"
        ) == "webhook-authentication-basic" and not all(
            isinstance(secrets.get(key), str) and secrets.get(key) for key in ("user", "password")
        ):
            problems.append("basic authentication needs secrets.user and secrets.password")
    return problems


# -- the Elasticsearch-query rule (alerting API) -----------------------------------------------------

RULE_CREATE_KEYS = {
    "name",
    "rule_type_id",
    "consumer",
    "schedule",
    "params",
    "tags",
    "actions",
    "enabled",
    "throttle",
    "notify_when",
    "alert_delay",
}
RULE_UPDATE_KEYS = {"name", "schedule", "params", "tags", "actions", "throttle", "notify_when", "alert_delay"}
ES_QUERY_PARAM_KEYS = {
    "searchType",
    "index",
    "timeField",
    "esQuery",
    "size",
    "aggType",
    "aggField",
    "groupBy",
    "termField",
    "termSize",
    "threshold",
    "thresholdComparator",
    "timeWindowSize",
    "timeWindowUnit",
    "excludeHitsFromPreviousRun",
    "sourceFields",
}
THRESHOLD_COMPARATORS = {">", ">=", "<", "<=", "between", "notBetween"}
TIME_UNITS = {"s", "m", "h", "d"}
NOTIFY_WHEN = {"onActionGroupChange", "onActiveAlert", "onThrottleInterval"}
ES_QUERY_ACTION_GROUPS = {"query matched", "recovered"}


def es_query_rule_problems(body: Any, *, create: bool) -> list[str]:
    """Why ``POST`` (``create``) or ``PUT /api/alerting/rule/<id>`` would refuse this .es-query rule body."""
    if not isinstance(body, Mapping):
        return ["the body is not a JSON object"]
    allowed = RULE_CREATE_KEYS if create else RULE_UPDATE_KEYS
    required = (
        {"name", "rule_type_id", "consumer", "schedule", "params"}
        if create
        else {"name", "schedule", "params"}
    )
    problems = [f"unknown key {key!r}" for key in sorted(set(body) - allowed)]
    problems += [f"missing key {key!r}" for key in sorted(required - set(body))]
    if create and body.get("rule_type_id") != ".es-query":
        problems.append(f"rule_type_id is {body.get('rule_type_id')!r}, not '.es-query'")
    if not isinstance(body.get("tags", []), list):
        problems.append("tags is not an array")
    schedule = body.get("schedule")
    if not isinstance(schedule, Mapping) or set(schedule) != {"interval"}:
        problems.append(f"schedule {schedule!r} is not {{interval}}")
    elif not re.fullmatch(r"[1-9]\d*[smhd]", str(schedule["interval"])):
        problems.append(f"schedule.interval {schedule['interval']!r} is not <number><s|m|h|d>")
    problems += _es_query_params_problems(body.get("params"))
    actions = body.get("actions", [])
    if not isinstance(actions, list):
        return [*problems, "actions is not an array"]
    for number, action in enumerate(actions):
        problems += [f"actions[{number}]: {problem}" for problem in _action_problems(action)]
    return problems


def _es_query_params_problems(params: Any) -> list[str]:
    if not isinstance(params, Mapping):
        return ["params is not an object"]
    problems = [f"unknown params key {key!r}" for key in sorted(set(params) - ES_QUERY_PARAM_KEYS)]
    if params.get("searchType", "esQuery") != "esQuery":
        problems.append(f"params.searchType {params.get('searchType')!r} is not esQuery")
    index = params.get("index")
    if not isinstance(index, list) or not index or not all(isinstance(item, str) and item for item in index):
        problems.append(f"params.index {index!r} is not a non-empty array of index names")
    if not isinstance(params.get("timeField"), str) or not params.get("timeField"):
        problems.append("params.timeField is not a field name")
    try:
        query = json.loads(params.get("esQuery", ""))
    except (TypeError, ValueError):
        query = None
    if not isinstance(query, Mapping) or "query" not in query:
        problems.append("params.esQuery is not a JSON-encoded object with a query")
    for key in ("size", "timeWindowSize"):
        if not isinstance(params.get(key), int) or isinstance(params.get(key), bool) or params[key] < 0:
            problems.append(f"params.{key} is not a whole number")
    if params.get("timeWindowUnit") not in TIME_UNITS:
        problems.append(f"params.timeWindowUnit {params.get('timeWindowUnit')!r} is not s, m, h or d")
    if params.get("thresholdComparator") not in THRESHOLD_COMPARATORS:
        problems.append(f"params.thresholdComparator {params.get('thresholdComparator')!r} is unknown")
    threshold = params.get("threshold")
    if not isinstance(threshold, list) or not 1 <= len(threshold) <= 2:
        problems.append(f"params.threshold {threshold!r} is not an array of one or two numbers")
    if not isinstance(params.get("excludeHitsFromPreviousRun", False), bool):
        problems.append("params.excludeHitsFromPreviousRun is not a boolean")
    return problems


def _action_problems(action: Any) -> list[str]:
    if not isinstance(action, Mapping):
        return ["not an object"]
    problems = [
        f"unknown key {key!r}" for key in sorted(set(action) - {"id", "group", "params", "frequency", "uuid"})
    ]
    if not isinstance(action.get("id"), str) or not action.get("id"):
        problems.append("id is not a connector id")
    if action.get("group") not in ES_QUERY_ACTION_GROUPS:
        problems.append(f"group {action.get('group')!r} is not an action group of .es-query")
    if not isinstance(action.get("params"), Mapping):
        problems.append("params is not an object")
    frequency = action.get("frequency")
    if frequency is not None:
        if not isinstance(frequency, Mapping) or set(frequency) != {"summary", "notify_when", "throttle"}:
            problems.append(f"frequency {frequency!r} is not {{summary, notify_when, throttle}}")
        elif not isinstance(frequency["summary"], bool) or frequency["notify_when"] not in NOTIFY_WHEN:
            problems.append("frequency.summary is not a boolean or frequency.notify_when is unknown")
    return problems


# -- the detection rule (Elastic Security, detection engine API) ------------------------------------------

DETECTION_RULE_SCHEMA_PATH = Path(__file__).parent / "schemas" / "detection-engine-query-rule.schema.json"
DETECTION_ENGINE_API_VERSION = "2023-10-31"


@cache
def _detection_rule_validators() -> dict[str, Draft202012Validator]:
    schema = json.loads(DETECTION_RULE_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    kibana_only = {key: value for key, value in schema.items() if key != "allOf"}
    kibana_only["$ref"] = "#/$defs/kibana"
    return {"project": Draft202012Validator(schema), "kibana": Draft202012Validator(kibana_only)}


def detection_rule_problems(body: Any, *, kibana_only: bool = False) -> list[str]:
    """Why ``POST``/``PUT /api/detection_engine/rules`` would refuse this query rule body, or (without
    ``kibana_only``) why it is not the rule this project installs; each problem names its JSON path."""
    validator = _detection_rule_validators()["kibana" if kibana_only else "project"]
    errors = sorted(validator.iter_errors(body), key=lambda error: (list(error.absolute_path), error.message))
    return [f"{error.json_path}: {error.message}" for error in errors]
