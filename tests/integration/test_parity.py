"""Same answer everywhere: the Elasticsearch path equals the NDJSON path for the same events.

The NDJSON events are indexed into the real node, then each use case runs both ways. Ids,
aggregators, terms, counts, summaries and frontiers (to 1e-9) must be identical.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from es_data import SAMPLE, create_sample_index, index_ndjson

from connector.config import load_use_cases
from connector.engine import detect_file, run
from connector.sources.elasticsearch import ElasticsearchSource

ROOT = Path(__file__).resolve().parents[2]
PARITY = Path(__file__).parent / "data/parity-events.ndjson"
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))

COMMON = 'es_dsl_filter={"query": {"match_all": {}}}\noutlier_summary=rare {term} under {aggregator}\n'
PARITY_USE_CASES = {
    "terms_whitelist_reevaluation": """
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=5
""",
    "terms_multi_field_aggregator": """
aggregator=host.name,OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=float
trigger_sensitivity=2
""",
    "terms_list_valued_target": """
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.users
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_max_value
trigger_sensitivity=50
""",
    "terms_multi_field_list_target": """
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name,tags
target_count_method=within_aggregator
trigger_on=low
trigger_method=percentile
trigger_sensitivity=20
""",
    "terms_across": """
aggregator=host.name
target=OsqueryFilter.name
target_count_method=across_aggregators
trigger_on=high
trigger_method=stdev
trigger_sensitivity=1
""",
    "terms_coefficient_of_variation": """
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=high
trigger_method=coeff_of_variation
trigger_sensitivity=0.9
""",
    "terms_numeric_target": """
aggregator=host.name
target=OsqueryFilter.pid
target_count_method=within_aggregator
trigger_on=low
trigger_method=mad
trigger_sensitivity=1
""",
}
WHITELIST = "[whitelist_regexps]\nsvchost=^rare .* under svchost\\.exe$\n"


def _comparable(contract: dict) -> dict:
    """Everything but _index (the test index has another name than the file's)."""
    return {
        **contract,
        "outliers": [
            {key: value for key, value in o.items() if key != "_index"} for o in contract["outliers"]
        ],
    }


def _assert_same(ndjson: dict, elastic: dict) -> None:
    left, right = _comparable(ndjson), _comparable(elastic)
    assert right["use_case"] == left["use_case"]
    assert right["events_analyzed"] == left["events_analyzed"]
    assert len(right["outliers"]) == len(left["outliers"])
    for expected, actual in zip(left["outliers"], right["outliers"], strict=True):
        assert actual == {
            **expected,
            "decision_frontier": pytest.approx(expected["decision_frontier"], abs=1e-9),
            "confidence": pytest.approx(expected["confidence"], abs=1e-9),
        }


@pytest.fixture(scope="module")
def sample_index(es_client: Elasticsearch):
    name = "rcp-parity-sample"
    es_client.options(ignore_status=404).indices.delete(index=name)
    create_sample_index(es_client, name)
    yield name
    es_client.indices.delete(index=name)


@pytest.fixture(scope="module")
def parity_index(es_client: Elasticsearch):
    """The list-valued / multi-field dataset under dynamic mapping (text + .keyword)."""
    name = "rcp-parity-shapes"
    es_client.options(ignore_status=404).indices.delete(index=name)
    es_client.indices.create(index=name, settings={"number_of_shards": 3, "number_of_replicas": 0})
    index_ndjson(es_client, name, PARITY)
    yield name
    es_client.indices.delete(index=name)


def _elastic(client: Elasticsearch, index: str, config: Path, section: str | None = None) -> dict:
    use_case = load_use_cases(config).select(section)
    source = ElasticsearchSource(client, index=index, start=EVERYTHING[0], end=EVERYTHING[1])
    return run(source, use_case).to_contract()


def test_seed_use_case_on_the_sample_gives_identical_outliers(es_client, sample_index):
    """The seed use case: 5 planted outliers, same ids, counts and frontiers both ways."""
    config = ROOT / "examples/rare_child.ini"
    offline = detect_file(config_path=config, events_path=SAMPLE)
    assert len(offline["outliers"]) == 5
    _assert_same(offline, _elastic(es_client, sample_index, config))


@pytest.mark.parametrize("section", sorted(PARITY_USE_CASES), ids=sorted(PARITY_USE_CASES))
def test_use_case_shapes_give_identical_outliers(es_client, parity_index, tmp_path, section):
    """Whitelist re-evaluation, multi-field and list-valued fields, across, CV, numeric terms."""
    config = tmp_path / "parity.ini"
    config.write_text(f"[{section}]\n{COMMON}{PARITY_USE_CASES[section]}\n{WHITELIST}")
    offline = detect_file(config_path=config, events_path=PARITY)
    assert offline["outliers"], "each parity use case is built to flag something"
    _assert_same(offline, _elastic(es_client, parity_index, config, section))


def test_elasticsearch_source_fetches_only_candidate_documents(es_client, sample_index):
    """Counting is aggregations only; documents are fetched for candidate pairs, not every event."""
    use_case = load_use_cases(ROOT / "examples/rare_child.ini").select()
    source = ElasticsearchSource(es_client, index=sample_index, start=EVERYTHING[0], end=EVERYTHING[1])
    result = run(source, use_case)
    # 5 planted + 3 whitelisted candidates, one event each: 8 documents out of 5,280 events
    assert source.documents_fetched == 8
    assert result.events_analyzed == 5280
    # field_caps, one composite page, one plain search for the 8 candidates (no point in time needed)
    assert source.requests == 3


def coefficient_of_variation_outliers(path: Path, sensitivity: float) -> dict[str, int]:
    """Parent -> number of outlier records, by the documented rule, written out independently of the model.

    within_aggregator with ``coeff_of_variation`` and ``trigger_on=high``: per parent, the counts of each
    child name; their coefficient of variation (population standard deviation over mean) is compared with
    the sensitivity; a parent whose CV is strictly above it flags every one of its events (one record each:
    every parity event has one parent name and one child name).
    """
    children: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        process = json.loads(line)["_source"]["OsqueryFilter"]
        assert isinstance(process["parentname"], str) and isinstance(process["name"], str), process
        children[process["parentname"]][process["name"]] += 1
    flagged = {}
    for parent, counts in children.items():
        values = list(counts.values())
        if statistics.pstdev(values) / statistics.fmean(values) > sensitivity:
            flagged[parent] = sum(values)
    return flagged


def test_small_pages_give_the_same_outliers(es_client, parity_index, tmp_path):
    """Paging (composite after_key, PIT search_after) loses and doubles nothing, over the 407 records the
    documented rule gives: explorer.exe (CV 0.95, 286 events) and WINWORD.EXE (CV 0.98, 121 events) pass
    the 0.9 sensitivity; svchost.exe (CV 0.70) and lonely.exe (one child, CV 0) do not."""
    section = "terms_coefficient_of_variation"
    config = tmp_path / "parity.ini"
    config.write_text(f"[{section}]\n{COMMON}{PARITY_USE_CASES[section]}")
    use_case = load_use_cases(config).select()
    big = ElasticsearchSource(es_client, index=parity_index, start=EVERYTHING[0], end=EVERYTHING[1])
    small = ElasticsearchSource(
        es_client,
        index=parity_index,
        start=EVERYTHING[0],
        end=EVERYTHING[1],
        composite_page_size=3,
        fetch_page_size=7,
    )
    expected = run(big, use_case).to_contract()
    by_parent = coefficient_of_variation_outliers(PARITY, use_case.trigger_sensitivity)
    assert by_parent == {"explorer.exe": 286, "WINWORD.EXE": 121}
    assert Counter(outlier["aggregator"] for outlier in expected["outliers"]) == by_parent
    assert len(expected["outliers"]) == sum(by_parent.values()) == 407
    assert run(small, use_case).to_contract() == expected
    assert small.requests > big.requests + 50
