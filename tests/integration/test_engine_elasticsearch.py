"""Detection over the real node: write-back modes, idempotence, baseline and explanations."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from elasticsearch import Elasticsearch
from es_data import ROOT, SAMPLE, create_sample_index, index_ndjson

from connector.config import load_use_cases
from connector.engine import detect_in_elasticsearch
from connector.results import AnnotateMode, install_results_template, results_template_name

EVERYTHING = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC))
PLANTED_ON_LAST_DAY = {("OUTLOOK.EXE", "powershell.exe"), ("explorer.exe", "TightVNCViewerPortable.exe")}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


@pytest.fixture(scope="module")
def seed_use_case():
    return load_use_cases(ROOT / "examples/rare_child.ini").select()


@pytest.fixture
def results_index(es_client: Elasticsearch, index_name: str):
    """A fresh results index name with its template installed (replicas 0 on the one-node cluster)."""
    install_results_template(es_client, index_name, settings={"number_of_replicas": 0})
    yield index_name
    es_client.options(ignore_status=404).indices.delete_index_template(name=results_template_name(index_name))


@pytest.fixture(scope="module")
def sample_index(es_client: Elasticsearch):
    name = "rcp-engine-sample"
    es_client.options(ignore_status=404).indices.delete(index=name)
    create_sample_index(es_client, name)
    yield name
    es_client.indices.delete(index=name)


def _detect(client: Elasticsearch, use_case, index: str, **options):
    """detect_in_elasticsearch over the whole sample period unless a time_range is given."""
    options.setdefault("time_range", Window(*EVERYTHING))
    return detect_in_elasticsearch(client, use_case, index=index, **options)


def _count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return client.count(index=index)["count"]


def test_results_are_written_once_and_reruns_change_nothing(
    es_client, sample_index, seed_use_case, results_index
):
    """First run writes 5 documents; the same run again leaves 5, reporting them unchanged."""
    first = _detect(
        es_client,
        seed_use_case,
        sample_index,
        results_index=results_index,
    )
    assert first.annotation.written == 5 and first.annotation.failed == 0
    assert _count(es_client, results_index) == 5
    again = _detect(
        es_client,
        seed_use_case,
        sample_index,
        results_index=results_index,
    )
    assert (again.annotation.written, again.annotation.unchanged, again.annotation.failed) == (0, 5, 0)
    assert _count(es_client, results_index) == 5
    stored = es_client.search(index=results_index, size=10)["hits"]["hits"]
    assert {(h["_source"]["outliers"]["aggregator"], h["_source"]["outliers"]["term"]) for h in stored} == {
        ("WINWORD.EXE", "cmd.exe"),
        ("OUTLOOK.EXE", "powershell.exe"),
        ("chrome.exe", "cmd.exe"),
        ("chrome.exe", "7zFM.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
    }
    assert all("outlier" in h["_source"]["tags"] for h in stored)


def test_overlapping_concurrent_runs_leave_one_document_per_outlier(
    es_client, sample_index, seed_use_case, results_index
):
    """Four runs at once over overlapping ranges: still exactly one document per outlier."""
    windows = [
        Window(*EVERYTHING),
        Window(datetime(2024, 3, 2, tzinfo=UTC), EVERYTHING[1]),
        Window(*EVERYTHING),
        Window(datetime(2024, 3, 3, tzinfo=UTC), EVERYTHING[1]),
    ]
    failures: list[BaseException] = []

    def detect(window: Window) -> None:
        try:
            detect_in_elasticsearch(
                es_client, seed_use_case, index=sample_index, time_range=window, results_index=results_index
            )
        except BaseException as error:  # reported below, in the test thread
            failures.append(error)

    threads = [threading.Thread(target=detect, args=(window,)) for window in windows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert _count(es_client, results_index) == 5


def test_dry_run_and_none_write_nothing(es_client, sample_index, seed_use_case, index_name):
    """dry_run and annotate=none find the same outliers and create no index."""
    for kwargs in ({"dry_run": True}, {"annotate": AnnotateMode.NONE}):
        detection = _detect(
            es_client,
            seed_use_case,
            sample_index,
            results_index=index_name,
            **kwargs,
        )
        assert len(detection.outliers) == 5
        assert detection.annotation.written == 0
    assert not es_client.indices.exists(index=index_name)


def test_baseline_reports_only_the_range_and_says_first_seen(es_client, sample_index, seed_use_case):
    """Counts over the baseline plus the range; outliers only from the last day; never seen before."""
    last_day = Window(datetime(2024, 3, 6, tzinfo=UTC), EVERYTHING[1])
    detection = detect_in_elasticsearch(
        es_client,
        seed_use_case,
        index=sample_index,
        time_range=last_day,
        baseline_start=EVERYTHING[0],
        annotate=AnnotateMode.NONE,
    )
    body = detection.to_response()
    assert {(o["aggregator"], o["term"]) for o in body["outliers"]} == PLANTED_ON_LAST_DAY
    assert all(o["first_seen_in_range"] is True for o in body["outliers"])
    assert body["events_analyzed"] == 5280  # the counted window: baseline + range
    assert body["baseline"] == {"from": "2024-03-01T00:00:00.000Z"}
    assert body["range"] == {"from": "2024-03-06T00:00:00.000Z", "to": "2024-03-08T00:00:00.000Z"}


def test_explanations_are_exact(es_client, sample_index, seed_use_case):
    """host_count, aggregator totals and top terms agree with a direct count of the sample."""
    detection = _detect(
        es_client,
        seed_use_case,
        sample_index,
        annotate=AnnotateMode.NONE,
    )
    body = detection.to_response()
    by_pair = {(o["aggregator"], o["term"]): o for o in body["outliers"]}
    word = by_pair[("WINWORD.EXE", "cmd.exe")]
    children = es_client.search(
        index=sample_index,
        size=0,
        query={"term": {"OsqueryFilter.parentname.raw": "WINWORD.EXE"}},
        aggs={"c": {"terms": {"field": "OsqueryFilter.name.raw", "size": 50}}},
    )
    buckets = children["aggregations"]["c"]["buckets"]
    assert word["aggregator_total"] == sum(b["doc_count"] for b in buckets)
    assert word["aggregator_distinct_terms"] == len(buckets)
    expected_top = sorted(((b["key"], b["doc_count"]) for b in buckets), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(t["term"], t["count"]) for t in word["top_terms"]] == expected_top
    assert word["host_count"] == 1
    assert word["host"] == "WS-004"
    assert word["event"]["command_line"].startswith("cmd.exe /c")
    assert word["first_seen_in_range"] is None  # no baseline asked
    assert body["outliers_total"] == 5 and body["aggregators"] > 5


def test_max_outliers_caps_the_list_but_not_the_total(es_client, sample_index, seed_use_case):
    """max_outliers=2: two outliers listed, outliers_total still 5."""
    detection = _detect(
        es_client,
        seed_use_case,
        sample_index,
        annotate=AnnotateMode.NONE,
        max_outliers=2,
    )
    body = detection.to_response()
    assert body["outliers_total"] == 5
    assert len(body["outliers"]) == 2


def test_in_place_annotates_source_events_once(es_client, index_name, seed_use_case):
    """in_place tags the source events with the ee-outliers record; a re-run writes nothing."""
    index_ndjson(es_client, index_name, SAMPLE)
    first = _detect(
        es_client,
        seed_use_case,
        index_name,
        annotate=AnnotateMode.IN_PLACE,
    )
    assert (first.annotation.written, first.annotation.failed) == (5, 0)
    es_client.indices.refresh(index=index_name)
    tagged = es_client.search(index=index_name, query={"term": {"tags.keyword": "outlier"}}, size=10)["hits"][
        "hits"
    ]
    assert len(tagged) == 5
    for hit in tagged:
        outliers = hit["_source"]["outliers"]
        assert outliers["total_outliers"] == 1
        assert outliers["summary"] == [
            f"rare child process {outliers['term'][0]} for {outliers['aggregator'][0]}"
        ]
    again = _detect(
        es_client,
        seed_use_case,
        index_name,
        annotate=AnnotateMode.IN_PLACE,
    )
    assert (again.annotation.written, again.annotation.unchanged) == (0, 5)


def test_results_index_gets_typed_mappings_without_a_template(
    es_client, sample_index, seed_use_case, index_name
):
    """With no template installed, the connector creates the results index with the typed mappings."""
    _detect(es_client, seed_use_case, sample_index, results_index=index_name)
    mapping = es_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"][
        "outliers"
    ]
    assert mapping["properties"]["decision_frontier"] == {"type": "double"}
    assert mapping["properties"]["term"]["type"] == "keyword"
    assert mapping["properties"]["term_count"] == {"type": "long"}
