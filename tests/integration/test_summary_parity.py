"""The baseline summary gives the counts of a raw recount, on the real node (connector/progress/).

Each hourly span is counted twice: by the composite aggregation over the whole baseline (as without
the summary), and from the summary plus the span's raw counts. The pair counts (values and the order
they are folded in), the event totals and the outliers of the detection must be identical, also after
a late event made an hour stale and after summary documents went missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from es_data import SAMPLE, create_sample_index, index_ndjson

from connector.config import load_use_case, load_use_cases
from connector.engine import detect_in_elasticsearch
from connector.model.terms import PairCounts
from connector.progress.incremental import SummarisedSource
from connector.progress.rarechild_incremental import SummarisedRareChildSource
from connector.progress.summary import SummaryStore, summary_key
from connector.sources.elasticsearch import ElasticsearchSource
from connector.timerange import TimeRange
from scripts.convert_events import convert_lines

HOUR = timedelta(hours=1)
FIRST_SPAN = datetime(2024, 3, 6, 6, tzinfo=UTC)
BASELINE = timedelta(days=7)
# Two aggregator fields: pair strings that cannot be queried back, so the keys must travel with the counts.
TWO_FIELDS = """
[terms_child_per_parent_and_host]
es_query_filter=tags:endpoint
aggregator=OsqueryFilter.parentname,host.name
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=5
"""


@pytest.fixture
def indices(es_client: Elasticsearch) -> Iterator[tuple[str, str]]:
    events, summary = f"rcp-sum-{uuid.uuid4().hex}", f"rcp-sum-{uuid.uuid4().hex}-summary"
    create_sample_index(es_client, events, shards=2)
    yield events, summary
    es_client.options(ignore_status=404).indices.delete(index=f"{events},{summary}", ignore_unavailable=True)


def ordered(counts: PairCounts) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(aggregator, list(terms.items())) for aggregator, terms in counts.by_aggregator.items()]


def use_cases(tmp_path):
    path = tmp_path / "use_cases.ini"
    path.write_text(
        (Path(__file__).resolve().parents[2] / "examples/rare_child.ini").read_text() + TWO_FIELDS
    )
    loaded = load_use_cases(path)
    return [loaded.select("terms_rare_childname"), loaded.select("terms_child_per_parent_and_host")]


def raw_and_summarised(es_client, index, store, use_case, span_start):
    baseline_start = span_start - BASELINE
    raw = ElasticsearchSource(es_client, index=index, start=baseline_start, end=span_start + HOUR)
    raw_counts, raw_events = raw.pair_counts(use_case)
    source = ElasticsearchSource(es_client, index=index, start=baseline_start, end=span_start + HOUR)
    summarised = SummarisedSource(
        source, store, baseline_start=baseline_start, range_start=span_start, write=True
    )
    counts, events = summarised.pair_counts(use_case)
    return (ordered(raw_counts), raw_events), (ordered(counts), events), summarised.use


def test_counts_from_the_summary_equal_a_raw_recount_hour_after_hour(es_client, indices, tmp_path):
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index)
    for use_case in use_cases(tmp_path):
        uses = []
        for hour in range(10):
            raw, summarised, use = raw_and_summarised(
                es_client, index, store, use_case, FIRST_SPAN + hour * HOUR
            )
            assert summarised == raw, (use_case.section, hour)
            assert raw[1] > 0 and raw[0]
            uses.append(use)
        # The sample has events in every hour from 2024-03-04T00:00, so the first span (03-06T06:00) has
        # 54 baseline hours: all recounted; each later span reads them back, plus the span before it.
        assert (uses[0].hours_recounted, uses[0].hours_from_summary) == (54, 0)
        assert [(use.hours_recounted, use.hours_from_summary) for use in uses[1:]] == [
            (0, 54 + n) for n in range(1, 10)
        ]
        # Whole days are read back as one rollup each (2024-02-28 to 03-05 lie inside every baseline).
        es_client.indices.refresh(index=summary_index)
        rollups = es_client.count(index=summary_index, query={"term": {"hours": 24}})["count"]
        assert rollups >= 6


def test_a_late_event_or_a_lost_summary_is_recounted_never_used_stale(es_client, indices, tmp_path):
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index)
    use_case = use_cases(tmp_path)[0]
    raw_and_summarised(es_client, index, store, use_case, FIRST_SPAN)
    late = {
        "@timestamp": "2024-03-05T03:30:00.000Z",
        "tags": ["endpoint"],
        "meta": {"command": {"name": "get_all_processes_enriched"}},
        "OsqueryFilter": {"name": "late.exe", "parentname": "OUTLOOK.EXE"},
    }
    day_id = store.document_id(
        summary_key(
            use_case,
            index,
            ElasticsearchSource(es_client, index=index, start=FIRST_SPAN, end=FIRST_SPAN).resolve_fields(
                use_case
            ),
        ),
        int(datetime(2024, 3, 5, tzinfo=UTC).timestamp() * 1000),
        24,
    )
    before = es_client.get(index=summary_index, id=day_id)["_source"]  # the day rollup holding 03:30
    es_client.index(index=index, id="late", document=late, refresh="wait_for")
    key = summary_key(
        use_case,
        index,
        ElasticsearchSource(es_client, index=index, start=FIRST_SPAN, end=FIRST_SPAN).resolve_fields(
            use_case
        ),
    )
    lost = [int((FIRST_SPAN - timedelta(hours=n)).timestamp() * 1000) for n in (5, 30)]
    es_client.delete(index=summary_index, id=store.document_id(key, lost[0]), refresh="wait_for")
    raw, summarised, use = raw_and_summarised(es_client, index, store, use_case, FIRST_SPAN + HOUR)
    assert summarised == raw
    late_hour = int(datetime(2024, 3, 5, 3, tzinfo=UTC).timestamp() * 1000)
    assert sorted(use.stale) == sorted([late_hour, lost[0]])
    assert ("late.exe", 1) in dict(summarised[0])["OUTLOOK.EXE"]
    after = es_client.get(index=summary_index, id=day_id)["_source"]
    assert after["hour_totals"][3] == before["hour_totals"][3] + 1 and after["events"] == before["events"] + 1
    # Rewritten: the next span uses them again.
    _, _, use = raw_and_summarised(es_client, index, store, use_case, FIRST_SPAN + 2 * HOUR)
    assert use.hours_recounted == 0


def test_detections_with_and_without_the_summary_report_the_same_outliers(es_client, indices, tmp_path):
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index)
    for use_case in use_cases(tmp_path):
        for hour in range(0, 12, 3):
            start = FIRST_SPAN + hour * HOUR
            raw, summarised = _detections(es_client, use_case, index, store, start)
            assert summarised == raw, (use_case.section, start)


# -- the rarechild model, ECS data and late events ----------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RARECHILD = load_use_case(EXAMPLES / "rarechild.ini", "rarechild_suspicious_child")
DEFEND_SECTIONS = ("terms_rare_childname", "rarechild_suspicious_child")
INGESTED = "event.ingested"
KEYWORD = {"type": "keyword"}


def rarechild_raw_and_summarised(es_client, index, store, use_case, span_start, **source_options):
    baseline_start = span_start - BASELINE
    window = {"start": baseline_start, "end": span_start + HOUR, "range_start": span_start, **source_options}
    raw = ElasticsearchSource(es_client, index=index, **window).rarechild_tallies(use_case, span_start)
    summarised = SummarisedRareChildSource(
        ElasticsearchSource(es_client, index=index, **window),
        store,
        baseline_start=baseline_start,
        range_start=span_start,
        write=True,
    )
    return raw, summarised.rarechild_tallies(use_case, span_start), summarised.use


def test_rarechild_counts_from_the_summary_equal_a_raw_recount_hour_after_hour(es_client, indices):
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index)
    uses = []
    for hour in range(10):
        raw, summarised, use = rarechild_raw_and_summarised(
            es_client, index, store, RARECHILD, FIRST_SPAN + hour * HOUR
        )
        # Pairs (count, in range, first seen, hosts) in the composite aggregation's order, paths, events.
        assert summarised == raw, hour
        tallies, _, events = raw
        assert events > 0 and any(tally.in_range for tally in tallies) and all(t.first_ms for t in tallies)
        assert any(len(tally.hosts) > 1 for tally in tallies)
        uses.append(use)
    assert (uses[0].hours_recounted, uses[0].hours_from_summary) == (54, 0)
    assert [(use.hours_recounted, use.hours_from_summary) for use in uses[1:]] == [
        (0, 54 + n) for n in range(1, 10)
    ]


def test_the_two_models_keep_apart_summaries_of_the_same_index(es_client, indices, tmp_path):
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index)
    raw_and_summarised(es_client, index, store, use_cases(tmp_path)[0], FIRST_SPAN)
    # The terms summaries of the same index and filter are no use to the rarechild model: it counts
    # hosts and first times too, so it recounts the whole baseline the first time.
    _, _, use = rarechild_raw_and_summarised(es_client, index, store, RARECHILD, FIRST_SPAN)
    assert (use.hours_recounted, use.hours_from_summary) == (54, 0)


@pytest.fixture
def defend_index(es_client: Elasticsearch, tmp_path) -> Iterator[tuple[str, str]]:
    """The sample in Elastic Defend shape (process start and end events, the profile counts starts)."""
    converted = tmp_path / "sample-ecs.ndjson"
    with SAMPLE.open(encoding="utf-8") as lines, converted.open("w", encoding="utf-8") as out:
        convert_lines(lines, "ecs", out)
    events, summary = f"rcp-sum-{uuid.uuid4().hex}", f"rcp-sum-{uuid.uuid4().hex}-summary"
    mappings = {"properties": {"event": {"properties": {"category": KEYWORD, "type": KEYWORD}}}}
    es_client.indices.create(index=events, mappings=mappings, settings={"number_of_replicas": 0})
    index_ndjson(es_client, events, converted)
    yield events, summary
    es_client.options(ignore_status=404).indices.delete(index=f"{events},{summary}", ignore_unavailable=True)


def _detections(es_client, use_case, index, store, start, **options):
    answers = []
    for summary in (None, store):
        answer = detect_in_elasticsearch(
            es_client,
            use_case,
            index=index,
            time_range=TimeRange(start, start + HOUR),
            baseline_start=start - BASELINE,
            annotate="none",
            summary=summary,
            **options,
        ).to_response()
        answer.pop("took_ms")
        answers.append(answer)
    return answers


@pytest.mark.parametrize("section", DEFEND_SECTIONS)
def test_ecs_data_counts_its_process_starts_alone_with_the_summary_too(es_client, defend_index, section):
    index, summary_index = defend_index
    store = SummaryStore(es_client, summary_index)
    use_case = load_use_case(EXAMPLES / "elastic-defend.ini", section)
    for hour in range(0, 12, 3):
        start = FIRST_SPAN + hour * HOUR
        raw, summarised = _detections(es_client, use_case, index, store, start)
        assert summarised == raw, (section, start)
        # The file holds an end event for every start: counting both would double every figure.
        starts = es_client.count(
            index=index,
            query={
                "bool": {
                    "filter": [
                        {"term": {"event.type": "start"}},
                        {
                            "range": {
                                "@timestamp": {
                                    "gte": (start - BASELINE).isoformat(),
                                    "lt": (start + HOUR).isoformat(),
                                }
                            }
                        },
                    ]
                }
            },
        )["count"]
        assert raw["events_analyzed"] == starts


@pytest.mark.parametrize("section", ("terms_rare_childname", "rarechild_suspicious_child"))
def test_an_event_ingested_late_into_a_summarised_hour_is_counted_and_judged_in_the_next_span(
    es_client, indices, tmp_path, section
):
    index, summary_index = indices
    es_client.indices.put_mapping(
        index=index, properties={"event": {"properties": {"ingested": {"type": "date"}}}}
    )
    store = SummaryStore(es_client, summary_index)
    use_case = RARECHILD if section == RARECHILD.section else use_cases(tmp_path)[0]
    _detections(es_client, use_case, index, store, FIRST_SPAN, ingest_time_field=INGESTED)
    span = FIRST_SPAN + HOUR
    late = {
        "@timestamp": "2024-03-05T03:30:00.000Z",  # a baseline hour the summary already holds
        "event": {"ingested": (span + timedelta(minutes=20)).isoformat()},  # but it arrived in the span
        "tags": ["endpoint"],
        "meta": {"command": {"name": "get_all_processes_enriched"}},
        "host": {"name": "late-host"},
        "OsqueryFilter": {"name": "late.exe", "parentname": "OUTLOOK.EXE", "path": "C:\\Users\\x\\late.exe"},
    }
    es_client.index(index=index, id="late", document=late, refresh="wait_for")
    raw, summarised = _detections(es_client, use_case, index, store, span, ingest_time_field=INGESTED)
    assert summarised == raw
    if use_case is RARECHILD:  # Outlook starting an unknown program from a user folder: an alert
        assert "late.exe" in {outlier["term"] for outlier in raw["outliers"]}
    else:  # counted (1 % of OUTLOOK.EXE's average child count is below 1 so early: no outlier)
        window = {"start": span - BASELINE, "end": span + HOUR, "range_start": span}
        source = ElasticsearchSource(es_client, index=index, ingest_time_field=INGESTED, **window)
        counts = SummarisedSource(
            source, store, baseline_start=span - BASELINE, range_start=span, write=False
        )
        assert ("late.exe", 1) in dict(ordered(counts.pair_counts(use_case)[0]))["OUTLOOK.EXE"]
        assert counts.use.hours_recounted == 0  # the detection before recounted its hour and stored it


@pytest.mark.parametrize("model", ("terms", "rarechild"))
def test_a_missing_summary_is_filled_a_bounded_number_of_hours_per_call_and_counts_stay_exact(
    es_client, indices, tmp_path, model
):
    """fill_hours caps the hours one call counts hour by hour and stores (the newest); the older missing
    ones are counted raw together, so every call answers exactly and the summary fills up call by call."""
    index, summary_index = indices
    store = SummaryStore(es_client, summary_index, fill_hours=10)
    uses = []
    for hour in range(7):
        span = FIRST_SPAN + hour * HOUR
        if model == "terms":
            raw, summarised, use = raw_and_summarised(es_client, index, store, use_cases(tmp_path)[0], span)
        else:
            raw, summarised, use = rarechild_raw_and_summarised(es_client, index, store, RARECHILD, span)
        assert summarised == raw, hour
        uses.append((use.hours_recounted, use.hours_counted_raw, use.hours_from_summary))
    # 54 baseline hours missing at first: 10 stored per call (each span's own hour is stored too).
    assert uses == [
        (10, 44, 0),
        (10, 34, 11),
        (10, 24, 22),
        (10, 14, 33),
        (10, 4, 44),
        (4, 0, 55),
        (0, 0, 60),
    ]
