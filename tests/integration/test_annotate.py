"""Writing outliers back to a REAL Elasticsearch node: results index, in place, failures, template.

Every index and template is named with a uuid and deleted afterwards; visibility comes from explicit
refreshes, never from sleeping.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers
from es_data import SEED, seed_use_case

from connector.config import UseCase, load_use_cases
from connector.errors import ConnectorError, ElasticsearchUnavailableError
from connector.explain import Explanation
from connector.model.outlier import Observation, Outlier, build_outlier
from connector.results import (
    AnnotateMode,
    WriteReport,
    install_results_template,
    outlier_record,
    results_document,
    results_document_id,
    results_index_template,
    results_template_name,
    write_outliers,
)
from connector.results.in_place import MAX_CONFLICT_RETRIES

# (child, parent) of the events; each is one outlier in these tests
PAIRS = [
    ("cmd.exe", "chrome.exe"),
    ("7zFM.exe", "chrome.exe"),
    ("powershell.exe", "OUTLOOK.EXE"),
    ("cmd.exe", "WINWORD.EXE"),
    ("TightVNCViewerPortable.exe", "explorer.exe"),
    ("SUMo.exe", "explorer.exe"),
    ("PremierColor.exe", "explorer.exe"),
    ("rundll32.exe", "EXCEL.EXE"),
    ("mshta.exe", "WINWORD.EXE"),
]


@pytest.fixture
def use_case(tmp_path: Path) -> UseCase:
    return seed_use_case(tmp_path)


@pytest.fixture
def new_index(es_client: Elasticsearch) -> Iterator[Callable[[str], str]]:
    """Makes ``rcp-test-<role>-<uuid>`` names; those indices and their templates are deleted afterwards."""
    names: list[str] = []

    def make(role: str) -> str:
        name = f"rcp-test-{role}-{uuid.uuid4().hex}"
        names.append(name)
        return name

    yield make
    for name in names:
        if es_client.indices.exists(index=name):
            es_client.indices.put_settings(index=name, settings={"index.blocks.write": None})
            es_client.indices.delete(index=name)
        es_client.options(ignore_status=404).indices.delete_index_template(name=results_template_name(name))


def index_events(es_client: Elasticsearch, index: str, sources: dict[str, dict[str, Any]]) -> None:
    actions = [{"_index": index, "_id": doc_id, "_source": source} for doc_id, source in sources.items()]
    ok, errors = helpers.bulk(es_client, actions, refresh=True, raise_on_error=False)
    assert (ok, errors) == (len(actions), [])


def event(child: str, parent: str, **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": "2026-11-01T10:00:00Z",
        "tags": ["endpoint"],
        "host": {"name": "WS-1"},
        "OsqueryFilter": {"name": child, "parentname": parent},
        **extra,
    }


def search_hits(es_client: Elasticsearch, index: str, *, versions: bool = True) -> dict[str, dict[str, Any]]:
    """The events as a detection run sees them: real hits, with _seq_no/_primary_term if ``versions``."""
    response = es_client.search(
        index=index, query={"match_all": {}}, size=100, seq_no_primary_term=versions or None
    )
    return {hit["_id"]: hit for hit in response["hits"]["hits"]}


def outlier_of(use_case: UseCase, hit: dict[str, Any], *, term: str | None = None) -> Outlier:
    names = hit["_source"]["OsqueryFilter"]
    observation = Observation(
        aggregator=names["parentname"],
        term=term or names["name"],
        term_count=1,
        decision_frontier=1.5525,
        confidence=0.356,
    )
    return build_outlier(use_case, hit, observation)


def explanation(total: int = 621) -> Explanation:
    return Explanation(
        aggregator_total=total,
        aggregator_distinct_terms=8,
        top_terms=(("chrome.exe", 500), ("cmd.exe", 1)),
        host_count=1,
        first_seen_in_range=True,
    )


@pytest.fixture
def source_outliers(
    es_client: Elasticsearch, use_case: UseCase, new_index: Callable[[str], str]
) -> list[Outlier]:
    """One outlier per PAIRS event, built from real hits of a real source index."""
    source_index = new_index("events")
    index_events(es_client, source_index, {f"evt-{i}": event(*pair) for i, pair in enumerate(PAIRS)})
    hits = search_hits(es_client, source_index)
    return [outlier_of(use_case, hits[f"evt-{i}"]) for i in range(len(PAIRS))]


def stored(es_client: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    es_client.indices.refresh(index=index)
    response = es_client.search(index=index, query={"match_all": {}}, size=1000, version=True)
    return {hit["_id"]: hit for hit in response["hits"]["hits"]}


def write(es_client: Elasticsearch, items: list, use_case: UseCase, **options: Any) -> WriteReport:
    options.setdefault("mode", AnnotateMode.RESULTS_INDEX)
    options.setdefault("results_index", "unused-results-index")
    return write_outliers(es_client, items, use_case=use_case, **options)


# ------------------------------------------------------------------------------------------ results index


def test_results_mode_writes_one_document_per_outlier_and_a_rerun_rewrites_nothing(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """N outliers -> N documents under their deterministic ids; the same run again leaves exactly those
    N documents untouched (version 1) and reports them unchanged."""
    results_index = new_index("results")
    items = [(outlier, explanation()) for outlier in source_outliers[:3]]

    first = write(es_client, items, use_case, results_index=results_index, refresh="wait_for")
    assert first == WriteReport(
        mode=AnnotateMode.RESULTS_INDEX, index=results_index, dry_run=False, written=3, unchanged=0, failed=0
    )
    documents = stored(es_client, results_index)
    expected_ids = {results_document_id(use_case, outlier): outlier for outlier, _ in items}
    assert set(documents) == set(expected_ids)
    for document_id, outlier in expected_ids.items():
        assert documents[document_id]["_source"] == results_document(use_case, outlier, explanation())

    second = write(es_client, items, use_case, results_index=results_index, refresh="wait_for")
    assert (second.written, second.unchanged, second.failed) == (0, 3, 0)
    again = stored(es_client, results_index)
    assert set(again) == set(expected_ids)
    assert {hit["_version"] for hit in again.values()} == {1}


def test_results_mode_rewrites_a_changed_outlier_in_place_of_the_old_document(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """A later run with a different explanation overwrites the one document (version 2), adds none."""
    results_index = new_index("results")
    items = [(outlier, explanation()) for outlier in source_outliers[:2]]
    write(es_client, items, use_case, results_index=results_index)
    changed = [(source_outliers[0], explanation(total=700)), items[1]]

    report = write(es_client, changed, use_case, results_index=results_index, refresh="wait_for")

    assert (report.written, report.unchanged, report.failed) == (1, 1, 0)
    documents = stored(es_client, results_index)
    assert len(documents) == 2
    rewritten = documents[results_document_id(use_case, source_outliers[0])]
    assert (rewritten["_version"], rewritten["_source"]["outliers"]["aggregator_total"]) == (2, 700)


def test_the_same_outlier_twice_in_one_call_is_one_document(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """Duplicates inside one call: one written, the repeat counted unchanged."""
    results_index = new_index("results")
    outlier = source_outliers[0]
    report = write(es_client, [(outlier, None), (outlier, None)], use_case, results_index=results_index)
    assert (report.written, report.unchanged, report.failed) == (1, 1, 0)
    assert list(stored(es_client, results_index)) == [results_document_id(use_case, outlier)]


def test_two_concurrent_writers_of_overlapping_outliers_leave_one_document_each(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """Two runs at once (threads released together, index created by the race) with 3 shared outliers:
    exactly one document per distinct outlier, nothing failed."""
    for _round in range(3):
        results_index = new_index("results")
        first_run = [(outlier, explanation()) for outlier in source_outliers[:6]]
        second_run = [(outlier, explanation()) for outlier in source_outliers[3:]]

        reports = run_concurrently(es_client, use_case, results_index, [first_run, second_run])

        assert [report.failed for report in reports] == [0, 0]
        assert sum(report.written + report.unchanged for report in reports) == 12
        documents = stored(es_client, results_index)
        assert set(documents) == {results_document_id(use_case, outlier) for outlier in source_outliers}
        assert es_client.count(index=results_index)["count"] == len(PAIRS)


def run_concurrently(
    es_client: Elasticsearch, use_case: UseCase, results_index: str, runs: list[list]
) -> list[WriteReport]:
    """Each run in its own thread, all released at the same moment; exceptions re-raised here."""
    start = threading.Barrier(len(runs))
    reports: list[WriteReport] = []
    problems: list[BaseException] = []

    def run(items: list) -> None:
        try:
            start.wait(timeout=30)
            reports.append(write(es_client, items, use_case, results_index=results_index))
        except BaseException as error:  # surfaced below, in the test's thread
            problems.append(error)

    threads = [threading.Thread(target=run, args=(items,)) for items in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert problems == []
    assert len(reports) == len(runs)
    return reports


def test_mapping_conflict_fails_only_the_conflicting_documents_and_names_them(
    es_client: Elasticsearch, use_case: UseCase, new_index: Callable[[str], str]
) -> None:
    """A results index whose outliers.term is a long: the numeric term is written, the other is a
    reported per-item failure (400 document_parsing_exception) and nothing is raised."""
    source_index, results_index = new_index("events"), new_index("results")
    index_events(
        es_client, source_index, {"numeric": event("4242", "cron"), "named": event("cmd.exe", "cron")}
    )
    hits = search_hits(es_client, source_index)
    es_client.indices.create(
        index=results_index, mappings={"properties": {"outliers": {"properties": {"term": {"type": "long"}}}}}
    )
    good, bad = outlier_of(use_case, hits["numeric"]), outlier_of(use_case, hits["named"])

    report = write(es_client, [(good, None), (bad, None)], use_case, results_index=results_index)

    assert (report.written, report.unchanged, report.failed) == (1, 0, 1)
    assert len(report.errors) == 1
    error = report.errors[0]
    assert error["_id"] == results_document_id(use_case, bad)
    assert (error["_index"], error["status"], error["type"]) == (
        results_index,
        400,
        "document_parsing_exception",
    )
    assert "[outliers.term]" in error["reason"] and "long" in error["reason"]
    assert list(stored(es_client, results_index)) == [results_document_id(use_case, good)]
    assert report.to_dict()["errors"] == [error]


def test_strict_results_mapping_rejects_every_document_and_all_are_reported(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dynamic: strict without the fields we write: every item fails with its own id (reported and
    logged), none raised."""
    caplog.set_level(logging.WARNING, logger="connector.results")
    results_index = new_index("results")
    es_client.indices.create(
        index=results_index, mappings={"dynamic": "strict", "properties": {"@timestamp": {"type": "date"}}}
    )
    items = [(outlier, None) for outlier in source_outliers[:3]]

    report = write(es_client, items, use_case, results_index=results_index)

    assert (report.written, report.unchanged, report.failed) == (0, 0, 3)
    assert {error["_id"] for error in report.errors} == {results_document_id(use_case, o) for o, _ in items}
    assert {(error["status"], error["type"]) for error in report.errors} == {
        (400, "strict_dynamic_mapping_exception")
    }
    assert es_client.count(index=results_index)["count"] == 0
    logged = [
        record.getMessage() for record in caplog.records if record.name.startswith("connector.results.")
    ]
    for error in report.errors:
        assert any(
            error["_id"] in message and "strict_dynamic_mapping_exception" in message for message in logged
        )


def test_write_blocked_results_index_reports_each_item(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """index.blocks.write: bulk answers 200 with a 403 cluster_block_exception per item."""
    results_index = new_index("results")
    es_client.indices.create(index=results_index, settings={"index.blocks.write": True})
    items = [(outlier, None) for outlier in source_outliers[:2]]

    report = write(es_client, items, use_case, results_index=results_index)

    assert (report.written, report.unchanged, report.failed) == (0, 0, 2)
    assert {(error["status"], error["type"]) for error in report.errors} == {(403, "cluster_block_exception")}
    assert all("index write" in error["reason"] for error in report.errors)


def test_more_than_twenty_failures_are_all_counted_but_twenty_listed(
    es_client: Elasticsearch, use_case: UseCase, new_index: Callable[[str], str]
) -> None:
    """25 failing items: failed == 25, errors holds the first 20."""
    source_index, results_index = new_index("events"), new_index("results")
    index_events(es_client, source_index, {f"evt-{i}": event(f"child-{i}.exe", "p.exe") for i in range(25)})
    hits = search_hits(es_client, source_index)
    es_client.indices.create(index=results_index, settings={"index.blocks.write": True})
    items = [(outlier_of(use_case, hit), None) for hit in hits.values()]

    report = write(es_client, items, use_case, results_index=results_index)

    assert (report.written, report.failed, len(report.errors)) == (0, 25, 20)


# ------------------------------------------------------------------------------------------ in place


def in_place(es_client: Elasticsearch, items: list, use_case: UseCase, **options: Any) -> WriteReport:
    return write(es_client, items, use_case, mode=AnnotateMode.IN_PLACE, refresh=True, **options)


@pytest.fixture
def source_index(es_client: Elasticsearch, new_index: Callable[[str], str]) -> str:
    """Three events: untagged and unannotated, already annotated by another model, and a plain one."""
    index = new_index("events")
    other_model = {
        "model_name": ["other"],
        "type": ["other type"],
        "summary": ["something else"],
        "term": ["x.exe"],
        "total_outliers": 1,
    }
    index_events(
        es_client,
        index,
        {
            "bare": {
                "@timestamp": "2026-11-01T10:00:00Z",
                "OsqueryFilter": {"name": "cmd.exe", "parentname": "a"},
            },
            "annotated": event("7zFM.exe", "chrome.exe", outliers=other_model),
            "twice": event("rundll32.exe", "EXCEL.EXE"),
        },
    )
    return index


def get_source(es_client: Elasticsearch, index: str, doc_id: str) -> tuple[dict[str, Any], int]:
    document = es_client.get(index=index, id=doc_id)
    return document["_source"], document["_seq_no"]


def test_in_place_applies_ee_outliers_write_back_and_a_rerun_changes_nothing(
    es_client: Elasticsearch, tmp_path: Path, source_index: str
) -> None:
    """§7 on real events: tags gain "outlier", outliers wrapped/appended, total_outliers counts; two
    outliers of one event with different summaries both land, a third with a summary already written
    is skipped (Q4); running again (fresh hits) changes nothing."""
    path = tmp_path / "by_term.ini"
    path.write_text(
        SEED.replace("{OsqueryFilter.name} for {OsqueryFilter.parentname}", "{term} for {aggregator}")
    )
    use_case = load_use_cases(path).select()
    hits = search_hits(es_client, source_index)
    twice = hits["twice"]
    items = [
        (outlier_of(use_case, hits["bare"]), None),
        (outlier_of(use_case, hits["annotated"]), explanation()),
        (outlier_of(use_case, twice), None),
        (outlier_of(use_case, twice, term="second-term"), None),
        (outlier_of(use_case, twice), None),
    ]

    report = in_place(es_client, items, use_case)

    assert report == WriteReport(
        mode=AnnotateMode.IN_PLACE, index=None, dry_run=False, written=4, unchanged=1, failed=0
    )
    bare, _ = get_source(es_client, source_index, "bare")
    assert bare["tags"] == ["outlier"]
    first_record = outlier_record(use_case, items[0][0])
    assert bare["outliers"] == {
        key: value if isinstance(value, list) else [value] for key, value in first_record.items()
    } | {"total_outliers": 1}
    assert bare["outliers"]["summary"] == ["rare child process cmd.exe for a"]

    annotated, _ = get_source(es_client, source_index, "annotated")
    assert annotated["tags"] == ["endpoint", "outlier"]
    assert annotated["outliers"]["total_outliers"] == 2
    assert annotated["outliers"]["summary"] == [
        "something else",
        "rare child process 7zFM.exe for chrome.exe",
    ]
    assert annotated["outliers"]["model_name"] == ["other", "rare_childname"]
    assert annotated["outliers"]["type"] == ["other type", "process execution"]
    assert annotated["outliers"]["term"] == ["x.exe", "7zFM.exe"]
    assert annotated["outliers"]["term_count"] == [1], "a key new to the object starts with the new value"

    both, _ = get_source(es_client, source_index, "twice")
    assert both["tags"] == ["endpoint", "outlier"]
    assert both["outliers"]["total_outliers"] == 2
    assert both["outliers"]["term"] == ["rundll32.exe", "second-term"]
    assert both["outliers"]["summary"] == [
        "rare child process rundll32.exe for EXCEL.EXE",
        "rare child process second-term for EXCEL.EXE",
    ]

    before = {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits}
    fresh = search_hits(es_client, source_index)
    rerun_items = [(outlier_of(use_case, fresh[o.document_id], term=o.observation.term), e) for o, e in items]
    rerun = in_place(es_client, rerun_items, use_case)
    assert (rerun.written, rerun.unchanged, rerun.failed) == (0, 5, 0)
    assert {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits} == before


def test_in_place_rerun_with_stale_hits_rereads_and_still_changes_nothing(
    es_client: Elasticsearch, use_case: UseCase, source_index: str
) -> None:
    """Retrying with the hits of the first run: their seq_no is stale (409), the events are read again,
    the summaries are found already there, and nothing is written twice."""
    hits = search_hits(es_client, source_index)
    items = [(outlier_of(use_case, hit), None) for hit in hits.values()]
    assert in_place(es_client, items, use_case).written == 3
    after_first = {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits}

    retry = in_place(es_client, items, use_case)

    assert (retry.written, retry.unchanged, retry.failed) == (0, 3, 0)
    assert {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits} == after_first
    totals = {doc_id: source["outliers"]["total_outliers"] for doc_id, (source, _) in after_first.items()}
    assert totals == {"bare": 1, "annotated": 2, "twice": 1}


def test_in_place_keeps_a_concurrent_writers_change(
    es_client: Elasticsearch, use_case: UseCase, source_index: str
) -> None:
    """Someone tags the event between our search and our write: the guarded update gets 409, re-reads,
    and the result has both their tag and ours (no lost update)."""
    hits = search_hits(es_client, source_index)
    es_client.update(index=source_index, id="twice", doc={"tags": ["endpoint", "triaged"]}, refresh=True)

    report = in_place(es_client, [(outlier_of(use_case, hits["twice"]), None)], use_case)

    assert (report.written, report.failed) == (1, 0)
    source, _ = get_source(es_client, source_index, "twice")
    assert source["tags"] == ["endpoint", "triaged", "outlier"]
    assert source["outliers"]["total_outliers"] == 1


def test_in_place_without_versions_in_the_hits_reads_the_event_first(
    es_client: Elasticsearch, use_case: UseCase, source_index: str
) -> None:
    """Hits from a search without seq_no_primary_term: the event is fetched (with its version) first."""
    hits = search_hits(es_client, source_index, versions=False)
    assert "_seq_no" not in hits["annotated"]
    es_client.update(index=source_index, id="annotated", doc={"user": {"name": "bob"}}, refresh=True)

    report = in_place(es_client, [(outlier_of(use_case, hits["annotated"]), None)], use_case)

    assert (report.written, report.failed) == (1, 0)
    source, _ = get_source(es_client, source_index, "annotated")
    assert source["user"] == {"name": "bob"}
    assert source["outliers"]["total_outliers"] == 2


class RacingClient:
    """The real client, except that every mget is followed by another writer changing the event read."""

    def __init__(self, client: Elasticsearch, index: str, doc_id: str) -> None:
        self._client, self._index, self._doc_id = client, index, doc_id
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bump(self) -> None:
        self._client.update(index=self._index, id=self._doc_id, doc={"bumped": self.reads})

    def mget(self, **kwargs: Any) -> Any:
        response = self._client.mget(**kwargs)
        self.reads += 1
        self.bump()
        return response


def test_in_place_gives_up_after_bounded_conflict_retries_and_reports_the_failure(
    es_client: Elasticsearch, use_case: UseCase, source_index: str
) -> None:
    """An event that changes after every read: MAX_CONFLICT_RETRIES re-reads, then a reported 409."""
    hits = search_hits(es_client, source_index)
    racing = RacingClient(es_client, source_index, "bare")
    racing.bump()

    report = write_outliers(
        racing,  # type: ignore[arg-type]
        [(outlier_of(use_case, hits["bare"]), None)],
        use_case=use_case,
        mode=AnnotateMode.IN_PLACE,
        results_index="unused",
    )

    assert (report.written, report.failed, racing.reads) == (0, 1, MAX_CONFLICT_RETRIES)
    assert [(error["_id"], error["status"], error["type"]) for error in report.errors] == [
        ("bare", 409, "version_conflict_engine_exception")
    ]
    assert "outliers" not in get_source(es_client, source_index, "bare")[0]


def test_in_place_reports_an_event_deleted_since_detection(
    es_client: Elasticsearch, use_case: UseCase, source_index: str
) -> None:
    """The event is gone (with and without version in the hit): a reported 404, the others written."""
    hits = search_hits(es_client, source_index)
    unversioned = search_hits(es_client, source_index, versions=False)
    es_client.delete(index=source_index, id="bare", refresh=True)
    es_client.delete(index=source_index, id="twice", refresh=True)
    items = [
        (outlier_of(use_case, hits["bare"]), None),
        (outlier_of(use_case, unversioned["twice"]), None),
        (outlier_of(use_case, hits["annotated"]), None),
    ]

    report = in_place(es_client, items, use_case)

    assert (report.written, report.failed) == (1, 2)
    assert sorted((error["_id"], error["status"], error["type"]) for error in report.errors) == [
        ("bare", 404, "document_missing_exception"),
        ("twice", 404, "document_missing"),
    ]


# ------------------------------------------------------------------------------------------ nothing sent


@pytest.mark.parametrize(
    ("mode", "dry_run"),
    [(AnnotateMode.RESULTS_INDEX, True), (AnnotateMode.NONE, False), (AnnotateMode.IN_PLACE, True)],
    ids=["results dry run", "none", "in-place dry run"],
)
def test_dry_run_and_none_write_nothing(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_index: str,
    mode: AnnotateMode,
    dry_run: bool,
) -> None:
    """No results index appears and the source events keep their version."""
    results_index = new_index("results")
    hits = search_hits(es_client, source_index)
    before = {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits}
    items = [(outlier_of(use_case, hit), explanation()) for hit in hits.values()]

    report = write(es_client, items, use_case, mode=mode, results_index=results_index, dry_run=dry_run)

    assert (report.written, report.unchanged, report.failed, report.dry_run) == (0, 0, 0, dry_run)
    assert not es_client.indices.exists(index=results_index)
    assert {doc_id: get_source(es_client, source_index, doc_id) for doc_id in hits} == before


# ------------------------------------------------------------------------------------------ template


def test_template_installs_and_written_documents_get_exactly_its_outliers_mapping(
    es_client: Elasticsearch,
    use_case: UseCase,
    new_index: Callable[[str], str],
    source_outliers: list[Outlier],
) -> None:
    """GET _mapping after a write: outliers.* is the template's (decision_frontier double, no dynamic
    additions); event strings are keyword (+ text), event floats double; a Kibana-style exact filter
    on the event's own field name finds the document."""
    results_index = new_index("results")
    install_results_template(es_client, results_index, settings={"number_of_replicas": 0})
    installed = es_client.indices.get_index_template(name=results_template_name(results_index))
    body = installed["index_templates"][0]["index_template"]
    expected = results_index_template(results_index, settings={"number_of_replicas": 0})
    assert (body["index_patterns"], body["priority"], body["version"]) == (
        expected["index_patterns"],
        expected["priority"],
        expected["version"],
    )
    hit = dict(source_outliers[0].hit)
    hit["_source"] = {**hit["_source"], "cpu_ratio": 0.25}
    outlier = outlier_of(use_case, hit)

    report = write(es_client, [(outlier, explanation())], use_case, results_index=results_index, refresh=True)

    assert (report.written, report.failed) == (1, 0)
    mapping = es_client.indices.get_mapping(index=results_index)[results_index]["mappings"]
    template_mappings = expected["template"]["mappings"]
    assert mapping["properties"]["outliers"] == template_mappings["properties"]["outliers"]
    assert mapping["properties"]["outliers"]["properties"]["decision_frontier"] == {"type": "double"}
    assert mapping["properties"]["OsqueryFilter"]["properties"]["name"] == {
        "type": "keyword",
        "ignore_above": 8191,
        "fields": {"text": {"type": "text"}},
    }
    assert mapping["properties"]["cpu_ratio"] == {"type": "double"}
    assert mapping["properties"]["@timestamp"] == {"type": "date"}
    found = es_client.search(index=results_index, query={"term": {"OsqueryFilter.name": "cmd.exe"}})
    assert found["hits"]["total"]["value"] == 1
    settings = es_client.indices.get_settings(index=results_index)[results_index]["settings"]["index"]
    assert settings["number_of_replicas"] == "0"


def test_template_install_is_repeatable_and_a_clashing_template_is_a_clear_error(
    es_client: Elasticsearch, new_index: Callable[[str], str]
) -> None:
    """Installing twice replaces; a second template whose names overlap at the same priority is refused
    by Elasticsearch and surfaces as a ConnectorError naming the reason."""
    results_index = new_index("results")
    install_results_template(es_client, results_index)
    install_results_template(es_client, results_index)
    clashing = f"{results_index}-archive"
    try:
        with pytest.raises(ConnectorError, match="same priority"):
            install_results_template(es_client, clashing)
    finally:
        es_client.options(ignore_status=404).indices.delete_index_template(
            name=results_template_name(clashing)
        )


# ------------------------------------------------------------------------------------------ unreachable


@pytest.mark.parametrize(
    ("mode", "versioned"),
    [(AnnotateMode.RESULTS_INDEX, True), (AnnotateMode.IN_PLACE, True), (AnnotateMode.IN_PLACE, False)],
    ids=["results", "in place (bulk update first)", "in place (read first)"],
)
def test_unreachable_elasticsearch_raises_the_project_error(
    use_case: UseCase, source_outliers: list[Outlier], mode: AnnotateMode, versioned: bool
) -> None:
    """A client pointed at a closed loopback port: ElasticsearchUnavailableError, not a client exception."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = Elasticsearch(f"http://127.0.0.1:{closed_port}", max_retries=0, request_timeout=2)
    hit = dict(source_outliers[0].hit)
    if not versioned:
        del hit["_seq_no"], hit["_primary_term"]
    items = [(outlier_of(use_case, hit), None)]
    with pytest.raises(ElasticsearchUnavailableError, match="cannot reach Elasticsearch"):
        write_outliers(client, items, use_case=use_case, mode=mode, results_index="rcp-test-unreachable")
