"""Loading test events into the real node (shared by the integration tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from connector.config import UseCase, load_use_cases

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples/sample-events.ndjson"

# How ee-outliers deployments map osquery names: text with a keyword ".raw" sub-field.
TEXT_WITH_RAW = {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 1024}}}
SAMPLE_MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "OsqueryFilter": {"properties": {"name": TEXT_WITH_RAW, "parentname": TEXT_WITH_RAW}},
    }
}


# The seed use case (examples/rare_child.ini) without its whitelists, for tests that write outliers back.
SEED = """
[terms_rare_childname]
es_query_filter=tags:endpoint AND meta.command.name:"get_all_processes_enriched"
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1
outlier_type=process execution
outlier_reason=rare child process
outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}
run_model=1
test_model=0
"""


def seed_use_case(folder: Path) -> UseCase:
    """:data:`SEED` written to ``folder/rare_child.ini`` and loaded."""
    path = folder / "rare_child.ini"
    path.write_text(SEED, encoding="utf-8")
    return load_use_cases(path).select()


def index_ndjson(client: Elasticsearch, index: str, path: Path) -> int:
    """Bulk-index an NDJSON file of hits (their ``_id`` kept) and make it searchable."""
    actions = (
        {"_index": index, "_id": hit["_id"], "_source": hit["_source"]}
        for hit in map(json.loads, path.read_text().splitlines())
    )
    indexed, errors = helpers.bulk(client, actions, refresh="wait_for", chunk_size=2000)
    assert errors == []
    return indexed


def create_sample_index(client: Elasticsearch, index: str, *, shards: int = 2) -> None:
    """The bundled sample in ``index``, mapped like an ee-outliers deployment."""
    client.indices.create(
        index=index,
        settings={"number_of_shards": shards, "number_of_replicas": 0},
        mappings=SAMPLE_MAPPINGS,
    )
    index_ndjson(client, index, SAMPLE)


def without_detection_time(source: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A stored results document without the ``outliers.detected_at`` the writer adds, and that time."""
    outliers = dict(source["outliers"])
    detected_at = outliers.pop("detected_at")
    return {**source, "outliers": outliers}, detected_at
