"""The Elastic Security detection rule: the asset, its rendering, and the check against Kibana's schema.

The rule body is validated with the JSON Schema restated from Kibana's OpenAPI description of
``POST /api/detection_engine/rules`` (tests/schemas/detection-engine-query-rule.schema.json), both Kibana's
own definition and this project's requirements on top; the negative cases show that the check refuses what
Kibana refuses (a wrong severity, a risk score above 100, an unknown key) and what this project must not
install (a rule without its query). The fields the rule reads are the ECS contract of the results documents.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from connector.cli.commands import main
from connector.errors import ConfigError
from connector.kibana.client import KibanaClient, KibanaConnection
from connector.kibana.security_rule import (
    DEFAULT_SECURITY_RULE_ID,
    LOOKBACK_SECONDS,
    interval_seconds,
    render_security_rule,
)
from connector.scheduling import SECURITY_RULE_ASSET, load_asset, placeholders_left
from tests.kibana_api import DETECTION_RULE_SCHEMA_PATH, detection_rule_problems

#: The asset's content at its ``version``: a changed rule needs a raised ``version`` (Kibana shows it, and an
#: installed rule is only replaced knowingly), then the new digest here.
SECURITY_RULE_LOCK = {
    "version": 1,
    "sha256": "720bb1a186c61e07a8792ee802a4153a042e539df85558a10392cd2f33636f45",
}

#: The ECS fields every results document carries (the contract of the results documents, issue 11).
RESULTS_CONTRACT_FIELDS = {
    "@timestamp",
    "event.kind",
    "event.category",
    "event.risk_score",
    "event.severity",
    "rule.name",
    "rule.id",
    "rule.ruleset",
    "rule.description",
    "message",
    "host.name",
    "user.name",
    "process.name",
    "process.executable",
    "process.command_line",
    "process.hash.sha256",
    "process.parent.name",
    "process.parent.command_line",
    "outliers.detected_at",
}


def canonical_sha256(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the asset ----------------------------------------------------------------------------------------


def test_the_asset_is_locked_to_its_version():
    """A changed rule without a raised version fails here: raise ``version`` in the asset, then the lock."""
    asset = load_asset(SECURITY_RULE_ASSET)
    assert asset["version"] == SECURITY_RULE_LOCK["version"]
    assert canonical_sha256(asset) == SECURITY_RULE_LOCK["sha256"], (
        f"{SECURITY_RULE_ASSET.name} changed without a version bump (locked version {asset['version']})"
    )


def test_the_asset_leaves_only_the_deployment_to_fill_in():
    """Placeholders for where the findings are and the schedule; everything else is reviewed data."""
    assert placeholders_left(load_asset(SECURITY_RULE_ASSET)) == [
        "FROM",
        "INTERVAL",
        "RESULTS_INDEX",
        "RULE_ID",
    ]


# -- rendering ----------------------------------------------------------------------------------------


def test_the_rendered_rule_is_a_query_rule_kibana_accepts():
    """Kibana's own definition and this project's requirements both hold for the default rule."""
    rule = render_security_rule()
    assert detection_rule_problems(rule, kibana_only=True) == []
    assert detection_rule_problems(rule) == []


def test_the_rule_alerts_on_each_finding_with_its_own_severity_score_name_and_time():
    """event.kind:alert over the results index; the finding's fields override severity, risk score, rule
    name and time; the alert flyout highlights the explanation and the process fields."""
    rule = render_security_rule()
    assert (rule["type"], rule["language"], rule["query"]) == ("query", "kuery", "event.kind:alert")
    assert rule["index"] == ["outliers-rare-child*"]
    assert rule["rule_id"] == DEFAULT_SECURITY_RULE_ID
    assert rule["rule_name_override"] == "rule.name"
    assert rule["timestamp_override"] == "outliers.detected_at"
    assert rule["risk_score_mapping"] == [{"field": "event.risk_score", "operator": "equals", "value": ""}]
    assert [(item["field"], item["value"], item["severity"]) for item in rule["severity_mapping"]] == [
        ("event.severity", "1", "low"),
        ("event.severity", "2", "medium"),
        ("event.severity", "3", "high"),
        ("event.severity", "4", "critical"),
    ]
    assert rule["investigation_fields"]["field_names"][0] == "message"
    assert (rule["interval"], rule["from"], rule["to"]) == ("5m", f"now-{300 + LOOKBACK_SECONDS}s", "now")
    assert rule["enabled"] is True


def test_every_field_the_rule_reads_is_in_the_results_contract():
    """The rule reads only fields every results document carries (a typo would silently never match)."""
    rule = render_security_rule()
    read = {rule["rule_name_override"], rule["timestamp_override"], "event.kind"}
    read |= {item["field"] for item in rule["risk_score_mapping"] + rule["severity_mapping"]}
    read |= set(rule["investigation_fields"]["field_names"])
    assert read <= RESULTS_CONTRACT_FIELDS, read - RESULTS_CONTRACT_FIELDS


@pytest.mark.parametrize(
    ("results_index", "pattern"),
    [("soc-findings", "soc-findings*"), ("soc-findings*", "soc-findings*")],
    ids=["name", "pattern"],
)
def test_rendering_fills_in_index_rule_id_schedule_and_state(results_index, pattern):
    """The options reach the body, and the look-back follows the interval."""
    rule = render_security_rule(
        results_index=results_index, rule_id="soc-rare-child", interval="1h", enabled=False
    )
    assert rule["index"] == [pattern]
    assert rule["rule_id"] == "soc-rare-child"
    assert (rule["interval"], rule["from"]) == ("1h", f"now-{3600 + LOOKBACK_SECONDS}s")
    assert rule["enabled"] is False
    assert placeholders_left(rule) == []
    assert detection_rule_problems(rule) == []


@pytest.mark.parametrize(
    ("options", "option", "reason"),
    [
        ({"results_index": "Outliers"}, "--results-index", "is not an index name"),
        ({"results_index": "a,b"}, "--results-index", "is not an index name"),
        ({"results_index": "remote:outliers"}, "--results-index", "is not an index name"),
        ({"rule_id": "rare child"}, "--rule-id", "is not an id"),
        ({"interval": "5"}, "--interval", "is not <number><s|m|h|d>"),
        ({"interval": "0m"}, "--interval", "is not <number><s|m|h|d>"),
        ({"interval": "30s"}, "--interval", "must be at least 1m"),
    ],
    ids=["uppercase", "comma", "remote", "space-in-id", "no-unit", "zero", "below-1m"],
)
def test_unusable_options_are_refused_naming_the_option(options, option, reason):
    with pytest.raises(ConfigError) as raised:
        render_security_rule(**options)
    assert raised.value.option == option
    assert reason in raised.value.message


def test_intervals_are_read_as_kibana_schedules_them():
    assert [interval_seconds(value) for value in ("1m", "90s", "5m", "2h", "1d")] == [
        60,
        90,
        300,
        7200,
        86400,
    ]


# -- the schema check ---------------------------------------------------------------------------------


def test_the_schema_is_valid_and_names_its_source():
    """A Draft 2020-12 schema whose header says where in elastic/kibana its facts come from, and on what
    terms."""
    schema = json.loads(DETECTION_RULE_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["x-source"]["repository"] == "elastic/kibana"
    assert any(path.endswith("create_rule_route.schema.yaml") for path in schema["x-source"]["paths"])
    assert "Elastic License 2.0" in schema["description"] and "restated" in schema["description"]
    assert schema["$defs"]["kibana"]["additionalProperties"] is False


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda rule: rule.pop(key)


def _setting(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(rule: dict[str, Any]) -> None:
        node: Any = rule
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            _setting(("severity",), "severe"),
            "$.severity: 'severe' is not one of ['low', 'medium', 'high', 'critical']",
        ),
        (_setting(("risk_score",), 101), "$.risk_score: 101 is greater than the maximum of 100"),
        (_setting(("risk_score",), 47.5), "$.risk_score: 47.5 is not of type 'integer'"),
        (_setting(("madeUp",), "hi"), "$: Additional properties are not allowed ('madeUp' was unexpected)"),
        (_setting(("type",), "eql"), "$.type: 'query' was expected"),
        (_setting(("language",), "eql"), "$.language: 'eql' is not one of ['kuery', 'lucene']"),
        (
            _setting(("severity_mapping", 3, "severity"), "urgent"),
            "$.severity_mapping[3].severity: 'urgent' is not one of ['low', 'medium', 'high', 'critical']",
        ),
        (
            _setting(("risk_score_mapping", 0, "operator"), "is"),
            "$.risk_score_mapping[0].operator: 'equals' was expected",
        ),
        (
            _setting(("severity_mapping", 0, "value"), 1),
            "$.severity_mapping[0].value: 1 is not of type 'string'",
        ),
        (_setting(("max_signals",), 0), "$.max_signals: 0 is less than the minimum of 1"),
        (
            _setting(("investigation_fields",), ["message"]),
            "$.investigation_fields: ['message'] is not of type 'object'",
        ),
        (_without("description"), "$: 'description' is a required property"),
    ],
    ids=[
        "wrong-severity",
        "risk-score-101",
        "risk-score-float",
        "unknown-key",
        "other-rule-type",
        "eql-language",
        "wrong-mapped-severity",
        "mapping-operator",
        "mapping-value-number",
        "no-signals",
        "investigation-fields-8.10-form",
        "no-description",
    ],
)
def test_kibanas_schema_refuses_what_kibana_refuses(change, problem):
    """Each change breaks Kibana's own definition: the check reports it with its path."""
    rule = copy.deepcopy(render_security_rule())
    change(rule)
    assert problem in detection_rule_problems(rule, kibana_only=True)
    assert problem in detection_rule_problems(rule)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_without("query"), "$: 'query' is a required property"),
        (_without("rule_id"), "$: 'rule_id' is a required property"),
        (_without("timestamp_override"), "$: 'timestamp_override' is a required property"),
        (_setting(("interval",), "hourly"), "$.interval: 'hourly' does not match '^[1-9][0-9]*[smhd]$'"),
    ],
    ids=["no-query", "no-rule-id", "no-timestamp-override", "interval-words"],
)
def test_the_project_check_refuses_a_rule_kibana_would_take_but_that_is_not_ours(change, problem):
    """Kibana defaults a query rule's query to match everything and generates a rule_id: valid for Kibana,
    but a rule that alerts on every document or cannot be updated again; the project's check refuses it."""
    rule = copy.deepcopy(render_security_rule())
    change(rule)
    assert detection_rule_problems(rule, kibana_only=True) == []
    assert detection_rule_problems(rule) == [problem]


# -- the command's dry run ----------------------------------------------------------------------------


def test_the_dry_run_prints_exactly_the_rendered_rule_and_it_validates(monkeypatch):
    """--dry-run: the JSON body on stdout, nothing sent (the URL is a port nobody listens on)."""
    monkeypatch.setenv("KIBANA_API_KEY", "a-key-that-must-not-be-printed")
    args = ["setup", "security-rule", "--kibana-url", "http://127.0.0.1:9", "--results-index", "soc-findings"]
    result = CliRunner().invoke(main, [*args, "--interval", "10m", "--disabled", "--dry-run"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == render_security_rule(results_index="soc-findings", interval="10m", enabled=False)
    assert detection_rule_problems(shown) == []
    assert "a-key-that-must-not-be-printed" not in result.output


def test_a_rule_without_rule_id_is_refused_before_anything_is_sent():
    """Without a rule_id Kibana would make one up, and the next run would create a second rule."""
    rule = render_security_rule()
    del rule["rule_id"]
    client = KibanaClient(KibanaConnection.from_env({}, url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="has no rule_id"):
        client.put_detection_rule(rule)
