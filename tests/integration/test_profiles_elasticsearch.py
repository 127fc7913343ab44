"""Data profiles over the real node: the sample and the real recordings in ECS, Sysmon and Osquery Manager
shape give the osquery form's findings, explained with command line, user, path and hash; results are ECS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, example_service
from elasticsearch import Elasticsearch
from es_data import SAMPLE, create_sample_index, index_ndjson
from test_service_http import assert_valid

from connector.config import load_use_case
from connector.engine import detect_in_elasticsearch
from connector.errors import ConnectorError
from connector.results import (
    AnnotateMode,
    install_results_template,
    results_document_id,
    results_template_name,
)
from connector.results.template import upgrade_results_mappings
from connector.timerange import TimeRange
from scripts.convert_events import convert_lines

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "bench" / "detection"
SHAPES = {"ecs": "elastic-defend.ini", "sysmon": "sysmon.ini", "osquery-manager": "osquery-manager.ini"}
OSQUERY = {"terms_rare_childname": ROOT / "examples/rare_child.ini"}
OSQUERY["rarechild_suspicious_child"] = ROOT / "examples/rarechild.ini"
SAMPLE_RANGE = TimeRange(datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC))
EVERYTHING = TimeRange(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
KEYWORD = {"type": "keyword"}
# As Elastic's integrations map them: keyword, so that the profile's term conditions are exact.
ECS_MAPPINGS = {"properties": {"event": {"properties": {"category": KEYWORD, "type": KEYWORD}}}}


def _index_shape(client: Elasticsearch, source: Path, shape: str, folder: Path) -> str:
    converted = folder / f"{source.stem}-{shape}.ndjson"
    with source.open(encoding="utf-8") as lines, converted.open("w", encoding="utf-8") as out:
        convert_lines(lines, shape, out)
    name = f"{SERVICE_INDEX_PREFIX}profile-{shape}-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=name, mappings=ECS_MAPPINGS, settings={"number_of_replicas": 0})
    index_ndjson(client, name, converted)
    return name


@pytest.fixture(scope="module")
def sample_indices(es_client: Elasticsearch, tmp_path_factory) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("profiles")
    names = {"osquery": f"{SERVICE_INDEX_PREFIX}profile-osquery-{uuid.uuid4().hex[:8]}"}
    create_sample_index(es_client, names["osquery"])
    for shape in SHAPES:
        names[shape] = _index_shape(es_client, SAMPLE, shape, folder)
    yield names
    for name in names.values():
        es_client.indices.delete(index=name)


def _findings(detection) -> list[tuple[str, str, str]]:
    return sorted((o["_id"], o["aggregator"], o["term"]) for o in detection.to_response()["outliers"])


def _detect(client, use_case, index, time_range, **options):
    return detect_in_elasticsearch(
        client, use_case, index=index, time_range=time_range, annotate=AnnotateMode.NONE, **options
    )


@pytest.mark.parametrize("section", list(OSQUERY))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_sample_in_every_shape_gives_the_osquery_findings(es_client, sample_indices, shape, section):
    expected = _detect(es_client, load_use_case(OSQUERY[section]), sample_indices["osquery"], SAMPLE_RANGE)
    use_case = load_use_case(ROOT / "examples" / SHAPES[shape], section)
    detection = _detect(es_client, use_case, sample_indices[shape], SAMPLE_RANGE)
    answer = detection.to_response()
    assert _findings(detection) == _findings(expected) and answer["outliers"]
    assert answer["events_analyzed"] == expected.to_response()["events_analyzed"]
    assert answer["profile"] == {
        "name": "ecs" if shape != "osquery-manager" else shape,
        "chosen": "configured",
    }
    for outlier in answer["outliers"]:
        event = outlier["event"]
        assert all(event[key] for key in ("command_line", "user", "path", "sha256")), outlier["_id"]
    assert [o["event"] for o in answer["outliers"]] == [
        o["event"] for o in expected.to_response()["outliers"]
    ]


def test_a_use_case_without_profile_detects_it_from_the_field_capabilities(
    es_client, sample_indices, tmp_path
):
    ini = tmp_path / "plain.ini"
    ini.write_text(
        "[terms_plain]\nes_query_filter=*\naggregator=process.parent.name\ntarget=process.name\n"
        "target_count_method=within_aggregator\ntrigger_on=low\ntrigger_method=pct_of_avg_value\n"
        "trigger_sensitivity=1\n"
    )
    detection = _detect(es_client, load_use_case(ini), sample_indices["ecs"], SAMPLE_RANGE)
    answer = detection.to_response()
    assert answer["profile"] == {"name": "ecs", "chosen": "detected"}
    assert answer["events_analyzed"] == 5280  # starts only: the index holds as many end events
    osquery = _detect(
        es_client, load_use_case(OSQUERY["terms_rare_childname"]), sample_indices["osquery"], SAMPLE_RANGE
    )
    assert osquery.to_response()["profile"] == {"name": "osquery", "chosen": "detected"}


def test_results_documents_are_ecs_and_the_template_maps_them(es_client, sample_indices):
    results = f"{SERVICE_INDEX_PREFIX}profile-results-{uuid.uuid4().hex[:8]}"
    use_case = load_use_case(ROOT / "examples" / SHAPES["osquery-manager"], "terms_rare_childname")
    install_results_template(es_client, results)
    try:
        first = detect_in_elasticsearch(
            es_client,
            use_case,
            index=sample_indices["osquery-manager"],
            time_range=SAMPLE_RANGE,
            results_index=results,
        )
        written = first.annotation.written
        assert written == len(first.outliers) > 0
        again = detect_in_elasticsearch(
            es_client,
            use_case,
            index=sample_indices["osquery-manager"],
            time_range=SAMPLE_RANGE,
            results_index=results,
        )
        # outliers.detected_at is kept, so a rerun rewrites nothing
        assert (again.annotation.written, again.annotation.unchanged) == (0, written)
        es_client.indices.refresh(index=results)
        outlier = first.outliers[0]
        document = es_client.get(index=results, id=results_document_id(use_case, outlier))["_source"]
        child, parent = outlier.observation.term, outlier.observation.aggregator
        assert (document["process"]["name"], document["process"]["parent"]["name"]) == (child, parent)
        assert document["process"]["command_line"] and document["process"]["hash"]["sha256"]
        assert document["user"]["name"] and document["host"]["name"]
        assert document["event"]["kind"] == "alert" and 1 <= document["event"]["severity"] <= 4
        assert document["rule"]["name"] == "terms_rare_childname" and document["message"]
        assert document["osquery"]["name"] == child  # the event itself, as today
        mapping = es_client.indices.get_mapping(index=results)[results]["mappings"]["properties"]
        assert mapping["outliers"]["properties"]["detected_at"]["type"] == "date"
        assert mapping["event"]["properties"]["severity"]["type"] == "long"
        assert mapping["process"]["properties"]["parent"]["properties"]["name"]["type"] == "keyword"
        alerts = es_client.count(index=results, query={"term": {"event.kind": "alert"}})["count"]
        assert alerts == written
    finally:
        es_client.options(ignore_status=404).indices.delete(index=results)
        es_client.options(ignore_status=404).indices.delete_index_template(
            name=results_template_name(results)
        )


@pytest.fixture(scope="module")
def real_indices(es_client: Elasticsearch, tmp_path_factory) -> Iterator[dict[str, tuple[str, str]]]:
    folder = tmp_path_factory.mktemp("real")
    names = {}
    for recording in sorted(REAL.glob("*.ndjson")):
        osquery = f"{SERVICE_INDEX_PREFIX}profile-real-{uuid.uuid4().hex[:8]}"
        es_client.indices.create(index=osquery, settings={"number_of_replicas": 0})
        index_ndjson(es_client, osquery, recording)
        names[recording.stem] = (osquery, _index_shape(es_client, recording, "ecs", folder))
    yield names
    for pair in names.values():
        for name in pair:
            es_client.indices.delete(index=name)


@pytest.mark.parametrize("section", list(OSQUERY))
def test_the_real_recordings_in_ecs_give_their_osquery_findings(es_client, real_indices, section):
    """Five real recordings, converted by scripts/convert_events.py: identical findings per recording."""
    total = 0
    for recording, (osquery, ecs) in real_indices.items():
        expected = _detect(es_client, load_use_case(OSQUERY[section]), osquery, EVERYTHING)
        use_case = load_use_case(ROOT / "examples" / SHAPES["ecs"], section)
        detection = _detect(es_client, use_case, ecs, EVERYTHING)
        assert _findings(detection) == _findings(expected), recording
        total += len(_findings(expected))
    if section.startswith("rarechild"):
        assert total > 0


def test_setup_template_upgrades_an_index_written_under_an_older_template(es_client):
    """Template 3 indices lack the ECS and detected_at fields: they are added; a conflict is named."""
    base = f"{SERVICE_INDEX_PREFIX}profile-old-{uuid.uuid4().hex[:8]}"
    old, conflicting = base, f"{base}-2024"
    es_client.indices.create(index=old, mappings={"date_detection": False, "properties": {"tags": KEYWORD}})
    es_client.indices.create(
        index=conflicting, mappings={"properties": {"outliers": {"properties": {"detected_at": KEYWORD}}}}
    )
    try:
        with pytest.raises(ConnectorError) as raised:
            upgrade_results_mappings(es_client, base)
        assert conflicting in raised.value.message and "new results index" in raised.value.message
        es_client.indices.delete(index=conflicting)
        assert upgrade_results_mappings(es_client, base) == [old]
        mapping = es_client.indices.get_mapping(index=old)[old]["mappings"]["properties"]
        assert mapping["outliers"]["properties"]["detected_at"]["type"] == "date"
        assert mapping["process"]["properties"]["name"]["type"] == "keyword"
        assert upgrade_results_mappings(es_client, f"{base}-none") == []
    finally:
        es_client.options(ignore_status=404).indices.delete(index=[old, conflicting], ignore_unavailable=True)


@pytest.fixture(scope="module")
def defend_service(es_url, es_client, tmp_path_factory, service_credentials) -> Iterator[RunningService]:
    results = f"{SERVICE_INDEX_PREFIX}profile-results-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("defend-service")
    use_cases = ROOT / "examples" / SHAPES["ecs"]
    with example_service(
        es_url, es_client, workdir, use_cases, service_credentials, results_index=results
    ) as service:
        yield service


@pytest.mark.parametrize("section", list(OSQUERY))
def test_the_webhook_explains_defend_findings_with_command_line_user_path_and_hash(
    defend_service, sample_indices, section
):
    """Over real gunicorn: the Defend-shaped sample, each finding with the four fields, profile said."""
    body = {"range": {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}}
    body |= {"index": sample_indices["ecs"], "use_case": section}
    headers = defend_service.bearer
    response = defend_service.call("POST", "/api/v1/detect", json_body=body, headers=headers)
    assert response.status == 200, response.body
    answer = response.json()
    assert_valid("detect-response", answer)
    assert answer["profile"] == {"name": "ecs", "chosen": "configured"}
    assert answer["outliers"]
    for outlier in answer["outliers"]:
        assert all(outlier["event"][key] for key in ("command_line", "user", "path", "sha256")), outlier
