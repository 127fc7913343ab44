"""What connector.results writes, computed without Elasticsearch: ids, results documents, in-place updates
(ee-outliers write-back, docs/model.md), the results index template and error translation."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch

from connector.config import UseCase, load_use_cases
from connector.errors import (
    ConnectorError,
    ElasticsearchAuthError,
    ElasticsearchTimeoutError,
    ElasticsearchUnavailableError,
)
from connector.explain import Explanation
from connector.model.outlier import Observation, Outlier, build_outlier
from connector.results import (
    AnnotateMode,
    InPlacePlan,
    WriteReport,
    outlier_record,
    plan_in_place_update,
    render_results_template,
    results_document,
    results_document_id,
    results_index_template,
    write_outliers,
)
from connector.results.failures import translate_error

ROOT = Path(__file__).resolve().parents[2]
FILTER = 'tags:endpoint AND meta.command.name:"get_all_processes_enriched"'
SEED = f"""
[terms_rare_childname]
es_query_filter={FILTER}
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1
outlier_type=process execution
outlier_reason=rare child process
outlier_summary=rare child process {{OsqueryFilter.name}} for {{OsqueryFilter.parentname}}
run_model=1
test_model=0
"""


def load(tmp_path: Path, text: str) -> UseCase:
    """The first use case of ``text``, written to its own INI file."""
    path = tmp_path / f"use_cases_{hashlib.sha256(text.encode()).hexdigest()[:12]}.ini"
    path.write_text(text, encoding="utf-8")
    return load_use_cases(path).select()


@pytest.fixture
def use_case(tmp_path: Path) -> UseCase:
    return load(tmp_path, SEED)


def make_hit(
    doc_id: str = "evt-1",
    *,
    index: str = "osquery-2026.11",
    child: str = "cmd.exe",
    parent: str = "chrome.exe",
    **extra: Any,
) -> dict[str, Any]:
    source = {
        "@timestamp": "2026-11-01T10:00:00Z",
        "host": {"name": "WS-1"},
        "OsqueryFilter": {"name": child, "parentname": parent},
        **extra,
    }
    return {"_index": index, "_id": doc_id, "_source": source}


def make_outlier(use_case: UseCase, hit: dict[str, Any], **observed: Any) -> Outlier:
    source = hit["_source"]["OsqueryFilter"]
    values = {
        "aggregator": source["parentname"],
        "term": source["name"],
        "term_count": 1,
        "decision_frontier": 1.5525,
        "confidence": 0.356,
    }
    values.update(observed)
    return build_outlier(use_case, hit, Observation(**values))


EXPLANATION = Explanation(
    aggregator_total=621,
    aggregator_distinct_terms=8,
    top_terms=(("chrome.exe", 500), ("cmd.exe", 1)),
    host_count=1,
    first_seen_in_range=True,
)


# ------------------------------------------------------------------------------------------ ids


def test_results_document_id_is_the_sha256_of_its_five_parts(use_case: UseCase) -> None:
    """The id is 64 hex digits, the same for equal inputs, and computable by anyone from the parts."""
    outlier = make_outlier(use_case, make_hit())
    document_id = results_document_id(use_case, outlier)
    assert re.fullmatch(r"[0-9a-f]{64}", document_id)
    assert document_id == results_document_id(use_case, make_outlier(use_case, make_hit()))
    parts = ["terms_rare_childname", "osquery-2026.11", "evt-1", "chrome.exe", "cmd.exe"]
    expected = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    assert document_id == expected


@pytest.mark.parametrize(
    "change",
    [
        {"index": "osquery-2026.12"},
        {"doc_id": "evt-2"},
        {"parent": "explorer.exe"},
        {"child": "powershell.exe"},
    ],
    ids=["source index", "source id", "aggregator", "term"],
)
def test_results_document_id_changes_with_each_identifying_input(use_case: UseCase, change: dict) -> None:
    """Each of source _index, source _id, aggregator and term gives a different document."""
    base = results_document_id(use_case, make_outlier(use_case, make_hit()))
    assert results_document_id(use_case, make_outlier(use_case, make_hit(**change))) != base


def test_results_document_id_changes_with_the_use_case(tmp_path: Path, use_case: UseCase) -> None:
    """The same event flagged by two use cases is two results documents."""
    other = load(tmp_path, SEED.replace("[terms_rare_childname]", "[terms_rare_child_copy]"))
    hit = make_hit()
    assert results_document_id(use_case, make_outlier(use_case, hit)) != results_document_id(
        other, make_outlier(other, hit)
    )


def test_results_document_id_ignores_run_dependent_values(use_case: UseCase) -> None:
    """Counts, frontier, confidence and event content may change between runs: same outlier, same id."""
    base = results_document_id(use_case, make_outlier(use_case, make_hit()))
    changed = make_outlier(
        use_case, make_hit(user={"name": "bob"}), term_count=2, decision_frontier=9.0, confidence=0.9
    )
    assert results_document_id(use_case, changed) == base


def test_results_document_id_parts_cannot_run_into_each_other(use_case: UseCase) -> None:
    """("ab", "c") and ("a", "bc") as (aggregator, term) are different outliers."""
    first = make_outlier(use_case, make_hit(), aggregator="ab", term="c")
    second = make_outlier(use_case, make_hit(), aggregator="a", term="bc")
    assert results_document_id(use_case, first) != results_document_id(use_case, second)


# ------------------------------------------------------------------------------------------ results document


def test_results_document_is_the_event_plus_tags_and_the_outliers_object(use_case: UseCase) -> None:
    """Exact content with an explanation; the event's own fields and event time are kept."""
    hit = make_hit(tags=["endpoint"], outliers={"summary": ["old"], "total_outliers": 1})
    source_before = copy.deepcopy(hit["_source"])
    document = results_document(use_case, make_outlier(use_case, hit), EXPLANATION)
    assert document == {
        "@timestamp": "2026-11-01T10:00:00Z",
        "host": {"name": "WS-1"},
        "OsqueryFilter": {"name": "cmd.exe", "parentname": "chrome.exe"},
        "tags": ["endpoint", "outlier"],
        "outliers": {
            "model_name": "rare_childname",
            "model_type": "terms",
            "use_case": "terms_rare_childname",
            "type": ["process execution"],
            "reason": ["rare child process"],
            "summary": "rare child process cmd.exe for chrome.exe",
            "term_count": 1,
            "aggregator": "chrome.exe",
            "term": "cmd.exe",
            "decision_frontier": 1.5525,
            "trigger_method": "pct_of_avg_value",
            "confidence": 0.356,
            "elasticsearch_filter": FILTER,
            "source_index": "osquery-2026.11",
            "source_id": "evt-1",
            "aggregator_total": 621,
            "aggregator_distinct_terms": 8,
            "host_count": 1,
            "first_seen_in_range": True,
            "top_terms": [{"term": "chrome.exe", "count": 500}, {"term": "cmd.exe", "count": 1}],
        },
        # ECS, whatever the source's shape (the osquery profile here): the process start and the alert
        "process": {"name": "cmd.exe", "parent": {"name": "chrome.exe"}},
        "event": {
            "kind": "alert",
            "category": ["process"],
            "type": ["start"],
            "risk_score": 39.51,  # 21 + 52 x confidence 0.356
            "severity": 1,
            "dataset": "rare_child_connector.outliers",
        },
        "rule": {
            "id": "terms_rare_childname",
            "name": "terms_rare_childname",
            "description": "rare child process",
            "category": "process execution",
            "ruleset": "rare-child-connector",
        },
        "message": "rare child process cmd.exe for chrome.exe",
    }
    assert hit["_source"] == source_before, "the hit must not be changed"


def test_results_document_without_explanation_has_no_explanation_fields(use_case: UseCase) -> None:
    """No explanation: the five explanation keys are absent (not zero)."""
    outliers = results_document(use_case, make_outlier(use_case, make_hit()), None)["outliers"]
    assert set(outliers).isdisjoint(
        {"aggregator_total", "aggregator_distinct_terms", "host_count", "first_seen_in_range", "top_terms"}
    )
    assert outliers["source_id"] == "evt-1"


def test_results_document_unknown_explanation_values_are_null(use_case: UseCase) -> None:
    """host_count / first_seen_in_range unknown (None) are written as null, the keys stay."""
    explanation = Explanation(aggregator_total=3, aggregator_distinct_terms=2, top_terms=())
    outliers = results_document(use_case, make_outlier(use_case, make_hit()), explanation)["outliers"]
    assert (outliers["host_count"], outliers["first_seen_in_range"], outliers["top_terms"]) == (
        None,
        None,
        [],
    )


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, ["outlier"]),
        ("endpoint", ["endpoint", "outlier"]),
        (["outlier", "endpoint"], ["outlier", "endpoint"]),
        (["a", "a"], ["a", "outlier"]),
    ],
    ids=["missing", "a string", "already tagged", "duplicates"],
)
def test_results_document_tags(use_case: UseCase, tags: Any, expected: list[str]) -> None:
    """tags = the event's tags plus "outlier", without duplicates."""
    hit = make_hit() if tags is None else make_hit(tags=tags)
    assert results_document(use_case, make_outlier(use_case, hit), None)["tags"] == expected


def test_results_document_takes_event_time_from_the_timestamp_field(tmp_path: Path) -> None:
    """An event without @timestamp gets it from the use case's timestamp_field."""
    use_case = load(tmp_path, SEED + "timestamp_field=event.created\n")
    hit = make_hit(event={"created": "2026-11-02T08:00:00Z"})
    del hit["_source"]["@timestamp"]
    assert (
        results_document(use_case, make_outlier(use_case, hit), None)["@timestamp"] == "2026-11-02T08:00:00Z"
    )


def test_results_document_carries_extra_options_and_assets_but_fixed_keys_win(tmp_path: Path) -> None:
    """Arbitrary use-case options are part of ee-outliers' record; one named like a record key loses."""
    use_case = load(tmp_path, SEED + "severity=high\nsummary=not this\n")
    outliers = results_document(use_case, make_outlier(use_case, make_hit()), None)["outliers"]
    assert outliers["severity"] == "high"
    assert outliers["summary"] == "rare child process cmd.exe for chrome.exe"


def test_results_document_never_holds_non_finite_numbers(use_case: UseCase) -> None:
    """JSON has no NaN: such a frontier is written as null instead of failing the document."""
    outlier = make_outlier(use_case, make_hit(), decision_frontier=float("nan"), confidence=float("inf"))
    outliers = results_document(use_case, outlier, None)["outliers"]
    assert (outliers["decision_frontier"], outliers["confidence"]) == (None, None)
    json.dumps(outliers, allow_nan=False)


# ------------------------------------------------------------------------------------------ in place (§7)


def record(use_case: UseCase, **hit_args: Any) -> dict[str, Any]:
    return outlier_record(use_case, make_outlier(use_case, make_hit(**hit_args)))


def test_outlier_record_is_ee_outliers_record_plus_confidence(use_case: UseCase) -> None:
    """The in-place record: ee-outliers' keys (no random sample) and our confidence, nothing else."""
    assert record(use_case) == {
        "model_name": "rare_childname",
        "model_type": "terms",
        "type": ["process execution"],
        "reason": ["rare child process"],
        "summary": "rare child process cmd.exe for chrome.exe",
        "term_count": 1,
        "aggregator": "chrome.exe",
        "term": "cmd.exe",
        "decision_frontier": 1.5525,
        "trigger_method": "pct_of_avg_value",
        "elasticsearch_filter": FILTER,
        "confidence": 0.356,
    }


def test_first_outlier_wraps_every_value_and_sets_total(use_case: UseCase) -> None:
    """No tags, no outliers: tags = ["outlier"]; outliers = record values as one-element lists, total 1."""
    plan = plan_in_place_update({"host": {"name": "WS-1"}}, [record(use_case)])
    assert plan.applied == (True,)
    assert plan.doc == {
        "tags": ["outlier"],
        "outliers": {
            "model_name": ["rare_childname"],
            "model_type": ["terms"],
            "type": ["process execution"],
            "reason": ["rare child process"],
            "summary": ["rare child process cmd.exe for chrome.exe"],
            "term_count": [1],
            "aggregator": ["chrome.exe"],
            "term": ["cmd.exe"],
            "decision_frontier": [1.5525],
            "trigger_method": ["pct_of_avg_value"],
            "elasticsearch_filter": [FILTER],
            "confidence": [0.356],
            "total_outliers": 1,
        },
    }


def test_second_outlier_appends_to_every_array(use_case: UseCase) -> None:
    """An event with another summary: each value appended, lists extended, total + 1, other keys kept."""
    first_outliers = plan_in_place_update({}, [record(use_case)]).doc["outliers"]  # type: ignore[index]
    source = {"tags": ["endpoint", "outlier"], "outliers": {**first_outliers, "legacy_only": ["kept"]}}
    second = record(use_case, child="7zFM.exe")
    plan = plan_in_place_update(source, [second])
    assert plan.applied == (True,)
    assert set(plan.doc) == {"outliers"}, "the tag is already there: tags are not rewritten"
    outliers = plan.doc["outliers"]
    assert outliers["summary"] == [
        "rare child process cmd.exe for chrome.exe",
        "rare child process 7zFM.exe for chrome.exe",
    ]
    assert outliers["term"] == ["cmd.exe", "7zFM.exe"]
    assert outliers["type"] == ["process execution", "process execution"]
    assert outliers["term_count"] == [1, 1]
    assert outliers["legacy_only"] == ["kept"]
    assert outliers["total_outliers"] == 2
    assert source["outliers"]["total_outliers"] == 1, "the fetched source must not be changed"


def test_summary_already_on_the_event_writes_nothing(use_case: UseCase) -> None:
    """Quirk Q4: the same summary again (a re-run) changes nothing, so no request is needed."""
    first = record(use_case)
    source = {"tags": ["outlier"], "outliers": plan_in_place_update({}, [first]).doc["outliers"]}  # type: ignore[index]
    plan = plan_in_place_update(source, [first])
    assert plan == InPlacePlan(doc=None, applied=(False,))


def test_summary_already_there_but_tag_removed_restores_only_the_tag(use_case: UseCase) -> None:
    """ee-outliers re-adds the tag on every write; outliers stay as they are."""
    first = record(use_case)
    source = {"tags": "triaged", "outliers": plan_in_place_update({}, [first]).doc["outliers"]}  # type: ignore[index]
    plan = plan_in_place_update(source, [first])
    assert plan == InPlacePlan(doc={"tags": ["triaged", "outlier"]}, applied=(False,))


def test_several_outliers_of_one_event_in_one_call(use_case: UseCase) -> None:
    """All records apply, in order, to one update; a repeated summary in the same call is skipped."""
    first, second = record(use_case), record(use_case, child="7zFM.exe")
    plan = plan_in_place_update({"tags": ["endpoint"]}, [first, second, first])
    assert plan.applied == (True, True, False)
    assert plan.doc["tags"] == ["endpoint", "outlier"]  # type: ignore[index]
    assert plan.doc["outliers"]["total_outliers"] == 2  # type: ignore[index]
    assert plan.doc["outliers"]["term"] == ["cmd.exe", "7zFM.exe"]  # type: ignore[index]


def test_existing_scalar_outliers_values_become_arrays(use_case: UseCase) -> None:
    """An outliers object written by someone else with scalars (and no total) is merged, not broken."""
    source = {"outliers": {"summary": "other thing", "term": "x"}}
    plan = plan_in_place_update(source, [record(use_case)])
    outliers = plan.doc["outliers"]  # type: ignore[index]
    assert outliers["summary"] == ["other thing", "rare child process cmd.exe for chrome.exe"]
    assert outliers["term"] == ["x", "cmd.exe"]
    assert outliers["total_outliers"] == 2


# ---------------------------------------------------------------------------------- report, no-op modes


def test_write_report_to_dict() -> None:
    """The report's JSON shape, as the HTTP response and CLI print it."""
    error = {"_id": "a", "_index": "i", "status": 400, "type": "t", "reason": "r"}
    report = WriteReport(
        mode=AnnotateMode.RESULTS_INDEX,
        index="i",
        dry_run=False,
        written=1,
        unchanged=2,
        failed=1,
        errors=(error,),
    )
    assert report.to_dict() == {
        "mode": "results_index",
        "index": "i",
        "dry_run": False,
        "outcome": "partial",
        "written": 1,
        "unchanged": 2,
        "failed": 1,
        "errors": [error],
    }


@pytest.mark.parametrize(
    ("mode", "dry_run", "index"),
    [
        (AnnotateMode.NONE, False, None),
        (AnnotateMode.RESULTS_INDEX, True, "outliers-rare-child"),
        (AnnotateMode.IN_PLACE, True, None),
    ],
    ids=["none", "results dry run", "in-place dry run"],
)
def test_none_and_dry_run_send_nothing(
    use_case: UseCase, mode: AnnotateMode, dry_run: bool, index: Any
) -> None:
    """The client points at a closed port: any request would raise ElasticsearchUnavailableError."""
    client = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=1)
    items = [(make_outlier(use_case, make_hit()), None)]
    report = write_outliers(
        client, items, use_case=use_case, mode=mode, results_index="outliers-rare-child", dry_run=dry_run
    )
    assert report == WriteReport(mode=mode, index=index, dry_run=dry_run, written=0, unchanged=0, failed=0)


# ------------------------------------------------------------------------------------------ template


def test_template_patterns_priority_and_no_forced_settings() -> None:
    """Both the index and its dated siblings match; replicas are left to the cluster."""
    body = results_index_template("res")
    assert body["index_patterns"] == ["res", "res-*"]
    assert body["priority"] == 200
    assert "settings" not in body["template"]
    assert results_index_template("res", settings={"number_of_replicas": 0})["template"]["settings"] == {
        "number_of_replicas": 0
    }


KEYWORD = {"type": "keyword", "ignore_above": 8191}


@pytest.mark.parametrize(
    ("field", "mapping"),
    [
        ("model_name", KEYWORD),
        ("model_type", KEYWORD),
        ("use_case", KEYWORD),
        ("type", KEYWORD),
        ("reason", KEYWORD),
        ("aggregator", KEYWORD),
        ("term", KEYWORD),
        ("trigger_method", KEYWORD),
        ("source_index", KEYWORD),
        ("source_id", KEYWORD),
        ("elasticsearch_filter", KEYWORD),
        ("summary", {"type": "text", "fields": {"keyword": KEYWORD}}),
        ("term_count", {"type": "long"}),
        ("aggregator_total", {"type": "long"}),
        ("aggregator_distinct_terms", {"type": "long"}),
        ("host_count", {"type": "long"}),
        ("decision_frontier", {"type": "double"}),
        ("confidence", {"type": "double"}),
        ("first_seen_in_range", {"type": "boolean"}),
        ("top_terms", {"properties": {"term": KEYWORD, "count": {"type": "long"}}}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_template_maps_every_outliers_field_explicitly(field: str, mapping: dict) -> None:
    """No outliers.* field is left to dynamic mapping (which would make floats 32-bit, strings text)."""
    outliers = results_index_template("res")["template"]["mappings"]["properties"]["outliers"]["properties"]
    assert outliers[field] == mapping


def test_template_covers_every_field_a_results_document_has(use_case: UseCase) -> None:
    """Every outliers key the writer produces (seed use case, with explanation) has a template mapping."""
    mapped = results_index_template("res")["template"]["mappings"]["properties"]["outliers"]["properties"]
    written = results_document(use_case, make_outlier(use_case, make_hit()), EXPLANATION)["outliers"]
    assert set(written) <= set(mapped)


def test_template_event_part_maps_strings_as_keyword_and_floats_as_double() -> None:
    """Kibana filters on the event's own field names need keyword; dates are not guessed."""
    mappings = results_index_template("res")["template"]["mappings"]
    assert mappings["date_detection"] is False
    rules = {name: rule for entry in mappings["dynamic_templates"] for name, rule in entry.items()}
    assert rules["strings_as_keyword"]["mapping"]["type"] == "keyword"
    assert rules["floats_as_double"]["mapping"] == {"type": "double"}
    properties = mappings["properties"]
    assert properties["@timestamp"] == {"type": "date"}
    assert properties["tags"] == KEYWORD
    assert properties["host"] == {"properties": {"name": KEYWORD}}


def test_bundled_template_file_is_generated_from_the_function() -> None:
    """kibana_saved_objects/results-index-template.json is exactly results_index_template(...).

    Regenerate with: python -c "from connector.results import render_results_template as r;
    open('kibana_saved_objects/results-index-template.json', 'w').write(r('outliers-rare-child'))"
    """
    path = ROOT / "kibana_saved_objects" / "results-index-template.json"
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == results_index_template("outliers-rare-child")
    assert text == render_results_template("outliers-rare-child")


# ------------------------------------------------------------------------------------------ error translation


def api_error(status: int, error_type: str = "some_exception", reason: str = "why") -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "127.0.0.1", 9200),
    )
    return ApiError(error_type, meta=meta, body={"error": {"type": error_type, "reason": reason}})


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionError("refused"), ElasticsearchUnavailableError),
        (ConnectionTimeout("slow"), ElasticsearchTimeoutError),
        (api_error(401), ElasticsearchAuthError),
        (api_error(403), ElasticsearchAuthError),
        (api_error(408), ElasticsearchTimeoutError),
        (api_error(504), ElasticsearchTimeoutError),
        (api_error(429), ElasticsearchUnavailableError),
        (api_error(503), ElasticsearchUnavailableError),
        (api_error(400), ConnectorError),
    ],
    ids=["connection", "timeout", "401", "403", "408", "504", "429", "503", "400"],
)
def test_elasticsearch_failures_become_project_errors(error: Exception, expected: type) -> None:
    """Both exception families (ApiError, TransportError) map by kind/status to the project's errors."""
    translated = translate_error(error, "writing outliers")  # type: ignore[arg-type]
    assert type(translated) is expected
    assert "writing outliers" in translated.message


def test_refused_request_message_names_the_elasticsearch_reason() -> None:
    """A 400 (e.g. an overlapping template) says what Elasticsearch objected to."""
    translated = translate_error(api_error(400, "illegal_argument_exception", "same priority"), "x")
    assert translated.message == (
        "Elasticsearch refused a request while x: 400 illegal_argument_exception: same priority"
    )
