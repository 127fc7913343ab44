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
from es_data import create_sample_index

from connector.config import load_use_cases
from connector.engine import detect_in_elasticsearch
from connector.model.terms import PairCounts
from connector.progress.incremental import SummarisedSource
from connector.progress.summary import SummaryStore, summary_key
from connector.sources.elasticsearch import ElasticsearchSource
from connector.timerange import TimeRange

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
            answers = [
                detect_in_elasticsearch(
                    es_client,
                    use_case,
                    index=index,
                    time_range=TimeRange(start, start + HOUR),
                    baseline_start=start - BASELINE,
                    annotate="none",
                    summary=summary,
                ).to_response()
                for summary in (None, store)
            ]
            for answer in answers:
                answer.pop("took_ms")
            assert answers[0] == answers[1], (use_case.section, start)
