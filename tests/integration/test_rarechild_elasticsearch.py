"""The rarechild model over a real node: the same alerts and scores as offline, baselines, the webhook.

Each real recording of ``bench/detection/`` and the parity data set are indexed into the node (dynamic
mapping, several shards) and scored both ways; every record must be identical but for ``_index``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_service import SERVICE_INDEX_PREFIX, RunningService, example_service
from elasticsearch import Elasticsearch
from es_data import index_ndjson
from test_service_http import assert_error, assert_valid

from connector.config import RareChildUseCase, load_use_case
from connector.engine import detect_file, detect_in_elasticsearch
from connector.rarechild_engine import run_rarechild
from connector.results import AnnotateMode
from connector.sources.elasticsearch import ElasticsearchSource
from connector.timerange import TimeRange

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rarechild.ini"
REAL = ROOT / "bench" / "detection"
RECORDINGS = sorted(path.stem for path in REAL.glob("*.ndjson"))
PARITY = Path(__file__).parent / "data" / "parity-events.ndjson"
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _without_index(contract: dict) -> dict:
    return {
        **contract,
        "outliers": [{k: v for k, v in o.items() if k != "_index"} for o in contract["outliers"]],
    }


def _elastic(client: Elasticsearch, index: str, use_case: RareChildUseCase) -> dict:
    source = ElasticsearchSource(client, index=index, start=EVERYTHING[0], end=EVERYTHING[1])
    return run_rarechild(source, use_case).to_contract()


@pytest.fixture(scope="module")
def recordings(es_client: Elasticsearch) -> Iterator[dict[str, str]]:
    names = {}
    for stem in RECORDINGS:
        name = f"rcp-rarechild-{stem.replace('_', '-')}"
        es_client.options(ignore_status=404).indices.delete(index=name)
        es_client.indices.create(index=name, settings={"number_of_shards": 3, "number_of_replicas": 0})
        index_ndjson(es_client, name, REAL / f"{stem}.ndjson")
        names[stem] = name
    yield names
    for name in names.values():
        es_client.indices.delete(index=name)


@pytest.mark.parametrize("stem", RECORDINGS)
def test_each_real_recording_gives_the_same_alerts_both_ways(es_client, recordings, stem):
    """Same alerts, scores, factors, counts, ids and hosts from the file and from the node."""
    use_case = load_use_case(EXAMPLE)
    offline = detect_file(config_path=EXAMPLE, events_path=REAL / f"{stem}.ndjson")
    online = _elastic(es_client, recordings[stem], use_case)
    assert _without_index(online) == _without_index(offline)


def test_the_recordings_alert_something_and_the_clean_vm_nothing():
    """A guard for the test above: equality of empty answers would prove nothing."""
    counts = {
        stem: len(detect_file(config_path=EXAMPLE, events_path=REAL / f"{stem}.ndjson")["outliers"])
        for stem in RECORDINGS
    }
    assert counts.pop("msticpy_mde_benign_device") == 0
    assert all(count > 0 for count in counts.values()), counts


def test_parity_data_with_lists_numbers_and_a_low_threshold(es_client, tmp_path):
    """The shapes data set (list values, odd types) at a threshold where many pairs alert."""
    name = f"rcp-rarechild-parity-{uuid.uuid4().hex[:8]}"
    es_client.indices.create(index=name, settings={"number_of_shards": 2, "number_of_replicas": 0})
    try:
        index_ndjson(es_client, name, PARITY)
        config = tmp_path / "parity.ini"
        config.write_text(
            '[rarechild_parity]\nes_dsl_filter={"query": {"match_all": {}}}\n'
            "aggregator=OsqueryFilter.parentname\ntarget=OsqueryFilter.name\nscore_threshold=0\nmax_alerts=1000\n"
        )
        offline = detect_file(config_path=config, events_path=PARITY)
        assert len(offline["outliers"]) > 5
        assert _without_index(_elastic(es_client, name, load_use_case(config))) == _without_index(offline)
    finally:
        es_client.indices.delete(index=name)


def _event(event_id: str, when: str, parent: str, child: str, host: str = "WS-1") -> dict:
    return {
        "_id": event_id,
        "_source": {
            "@timestamp": when,
            "tags": ["endpoint"],
            "meta": {"command": {"name": "get_all_processes_enriched"}},
            "host": {"name": host},
            "OsqueryFilter": {"parentname": parent, "name": child, "path": rf"C:\Windows\System32\{child}"},
        },
    }


def test_a_baseline_tells_new_pairs_from_known_ones(es_client, tmp_path):
    """With a baseline, a pair seen before the range loses the novelty points, a new one gains them."""
    name = f"rcp-rarechild-baseline-{uuid.uuid4().hex[:8]}"
    events = [
        _event("b1", "2024-05-01T09:00:00.000Z", "winword.exe", "cmd.exe"),
        _event("b2", "2024-05-02T09:00:00.000Z", "winword.exe", "cmd.exe"),
        _event("r1", "2024-05-08T09:00:00.000Z", "winword.exe", "cmd.exe"),
        _event("r2", "2024-05-08T10:00:00.000Z", "outlook.exe", "powershell.exe"),
    ]
    path = tmp_path / "events.ndjson"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    es_client.indices.create(index=name, settings={"number_of_shards": 1, "number_of_replicas": 0})
    try:
        index_ndjson(es_client, name, path)
        config = tmp_path / "everything.ini"
        config.write_text(EXAMPLE.read_text().replace("score_threshold=8", "score_threshold=0"))
        use_case = load_use_case(config)
        detection = detect_in_elasticsearch(
            es_client,
            use_case,
            index=name,
            time_range=TimeRange(datetime(2024, 5, 8, tzinfo=UTC), datetime(2024, 5, 9, tzinfo=UTC)),
            baseline_start=datetime(2024, 5, 1, tzinfo=UTC),
            annotate=AnnotateMode.NONE,
            results_index="unused",
        )
        alerts = {(o["aggregator"], o["term"]): o for o in detection.to_contract()["outliers"]}
        novelty = {
            pair: next(f for f in o["factors"] if f["factor"] == "novelty") for pair, o in alerts.items()
        }
        assert novelty[("outlook.exe", "powershell.exe")] == {
            "factor": "novelty",
            "points": 2.0,
            "value": 0.0,
            "says": "first seen in this range (baseline 7 d)",
        }
        assert novelty[("winword.exe", "cmd.exe")]["points"] == 0
        assert novelty[("winword.exe", "cmd.exe")]["says"] == "seen 2 times before this range"
        # only the in-range event alerts; the baseline ones count but are not reported
        assert alerts[("winword.exe", "cmd.exe")]["event_ids"] == ["r1"]
        rare_under = next(
            f for f in alerts[("winword.exe", "cmd.exe")]["factors"] if f["factor"] == "rare_under_parent"
        )
        assert rare_under["says"].startswith("cmd.exe is 3 of the 3 processes winword.exe launched")
    finally:
        es_client.indices.delete(index=name)


# -- the webhook ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rarechild_results() -> str:
    return f"{SERVICE_INDEX_PREFIX}rarechild-results-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def rarechild_service(
    es_url, es_client, tmp_path_factory, service_credentials, rarechild_results
) -> Iterator[RunningService]:
    workdir = tmp_path_factory.mktemp("rarechild-service")
    with example_service(
        es_url, es_client, workdir, EXAMPLE, service_credentials, results_index=rarechild_results
    ) as service:
        yield service


@pytest.fixture(scope="module")
def lsass_index(es_client) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}rarechild-lsass-{uuid.uuid4().hex[:8]}"
    es_client.indices.create(index=name, settings={"number_of_shards": 2, "number_of_replicas": 0})
    index_ndjson(es_client, name, REAL / "otrf_mordor_lsass_campaigns.ndjson")
    yield name
    es_client.indices.delete(index=name)


RANGE = {"from": "2023-08-01T00:00:00Z", "to": "2023-10-01T00:00:00Z"}


def test_webhook_answers_explained_alerts_and_writes_them_once(
    rarechild_service, rarechild_results, lsass_index, es_client
):
    body = {"range": RANGE, "index": lsass_index}
    first = rarechild_service.call("POST", "/api/v1/detect", json_body=body, headers=rarechild_service.bearer)
    assert first.status == 200, first.body
    answer = first.json()
    assert_valid("detect-response", answer)
    offline = detect_file(config_path=EXAMPLE, events_path=REAL / "otrf_mordor_lsass_campaigns.ndjson")
    assert [(o["aggregator"], o["term"], o["score"]) for o in answer["outliers"]] == [
        (o["aggregator"], o["term"], o["score"]) for o in offline["outliers"]
    ]
    assert answer["model"] == "rarechild"
    assert answer["outliers_total"] == len(offline["outliers"]) > 0
    top = answer["outliers"][0]
    assert top["explanation"].startswith(f"{top['aggregator']} → {top['term']}: ")
    assert all(
        top["event"][key] is not None for key in ("command_line", "parent_command_line", "user", "path")
    )
    assert answer["annotation"] | {"errors": []} == {
        "mode": "results_index",
        "index": rarechild_results,
        "dry_run": False,
        "outcome": "complete",
        "written": len(offline["outliers"]),
        "unchanged": 0,
        "failed": 0,
        "errors": [],
    }
    es_client.indices.refresh(index=rarechild_results)
    stored = es_client.search(index=rarechild_results, size=100, query={"match_all": {}})["hits"]
    documents = {hit["_source"]["outliers"]["source_id"]: hit["_source"] for hit in stored["hits"]}
    assert set(documents) == {o["_id"] for o in offline["outliers"]}
    document = documents[top["_id"]]
    assert document["outliers"]["model_type"] == "rarechild"
    assert document["outliers"]["score"] == top["score"]
    assert document["outliers"]["explanation"] == top["explanation"]
    assert document["outliers"]["event_ids"] == top["event_ids"]
    assert "outlier" in document["tags"]
    mapping = es_client.indices.get_mapping(index=rarechild_results)
    fields = mapping[rarechild_results]["mappings"]["properties"]["outliers"]["properties"]
    assert (fields["score"]["type"], fields["count"]["type"], fields["first_time"]["type"]) == (
        "double",
        "long",
        "date",
    )

    again = rarechild_service.call("POST", "/api/v1/detect", json_body=body, headers=rarechild_service.bearer)
    assert again.status == 200
    assert again.json()["annotation"]["unchanged"] == len(offline["outliers"])
    assert again.json()["annotation"]["written"] == 0


def test_webhook_refuses_in_place_for_rarechild(rarechild_service, lsass_index):
    body = {"range": RANGE, "index": lsass_index, "annotate": "in_place"}
    result = rarechild_service.call(
        "POST", "/api/v1/detect", json_body=body, headers=rarechild_service.bearer
    )
    error = assert_error(result, 400, "invalid_request")
    assert "use annotate 'results_index' or 'none'" in error["message"]


def test_use_cases_lists_the_rarechild_options(rarechild_service):
    result = rarechild_service.call("GET", "/api/v1/use-cases", headers=rarechild_service.bearer)
    assert result.status == 200
    assert_valid("use-cases-response", result.json())
    assert result.json()["use_cases"] == [
        {
            "name": "rarechild_suspicious_child",
            "model_name": "suspicious_child",
            "model": "rarechild",
            "default": True,
            "aggregator": ["OsqueryFilter.parentname"],
            "target": ["OsqueryFilter.name"],
            "score_threshold": 8.0,
            "max_alerts": 20,
            "es_index": None,
            "profile": None,  # detected from the data at each detection
        }
    ]


def test_webhook_refuses_an_alias_to_an_index_outside_the_patterns_for_rarechild(
    rarechild_service, es_client, lsass_index
):
    """The rarechild model reads through the same resolution as the terms model: an alias inside the
    allowed patterns to an index outside them is 403 naming that index, before anything is read."""
    secret = f"rcp-secret-{uuid.uuid4().hex[:8]}"
    alias = f"{SERVICE_INDEX_PREFIX}rarechild-alias-{uuid.uuid4().hex[:8]}"
    es_client.indices.create(index=secret, settings={"number_of_shards": 1, "number_of_replicas": 0})
    try:
        index_ndjson(es_client, secret, REAL / "otrf_mordor_lsass_campaigns.ndjson")
        es_client.indices.put_alias(index=secret, name=alias)
        body = {"range": RANGE, "index": alias, "dry_run": True}
        result = rarechild_service.call(
            "POST", "/api/v1/detect", json_body=body, headers=rarechild_service.bearer
        )
        error = assert_error(result, 403, "index_not_allowed")
        assert error["message"].startswith(
            f"index {alias!r} reaches the concrete index {secret!r} through alias {alias!r}"
        )
    finally:
        es_client.options(ignore_status=404).indices.delete(index=secret)
