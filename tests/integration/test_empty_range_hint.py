"""A detection that counts nothing says where it looked and where the data is (over the real node).

The first and last timestamps expected below are derived from the sample file itself, not pasted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest_service import ROOT, SERVICE_INDEX_PREFIX
from elasticsearch import Elasticsearch
from es_data import SAMPLE, create_sample_index
from test_service_http import assert_valid

from connector.config import load_use_case
from connector.engine import detect_in_elasticsearch
from connector.results import AnnotateMode
from connector.timerange import TimeRange

EXAMPLE = ROOT / "examples" / "rare_child.ini"
RARECHILD = ROOT / "examples" / "rarechild.ini"
FUTURE = TimeRange(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 8, tzinfo=UTC))


def _sample_extent() -> tuple[int, str, str]:
    times = [json.loads(line)["_source"]["@timestamp"] for line in SAMPLE.read_text().splitlines()]
    return len(times), min(times), max(times)


@pytest.fixture(scope="module")
def sample_index(es_client: Elasticsearch) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}hint-{uuid.uuid4().hex[:8]}"
    create_sample_index(es_client, name, shards=1)
    yield name
    es_client.indices.delete(index=name)


@pytest.mark.parametrize("config", [EXAMPLE, RARECHILD], ids=["terms", "rarechild"])
def test_a_range_that_misses_the_data_says_where_the_data_is(es_client, sample_index, config):
    use_case = load_use_case(config)
    detection = detect_in_elasticsearch(
        es_client,
        use_case,
        index=sample_index,
        time_range=FUTURE,
        annotate=AnnotateMode.NONE,
        results_index="x",
    )
    events, first, last = _sample_extent()
    assert detection.result.events_analyzed == 0
    assert detection.hint == (
        f"no event of {sample_index} in [2030-01-01T00:00:00.000Z, 2030-01-08T00:00:00.000Z) matched "
        f"use case {use_case.section}; the index holds {events:,} events from {first} to {last} "
        "(@timestamp): ask for a range inside it, or check the use case's filter"
    )
    assert detection.to_response()["hint"] == detection.hint


def test_an_empty_index_says_it_is_empty(es_client):
    name = f"{SERVICE_INDEX_PREFIX}empty-{uuid.uuid4().hex[:8]}"
    es_client.indices.create(
        index=name,
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "OsqueryFilter": {
                    "properties": {"name": {"type": "keyword"}, "parentname": {"type": "keyword"}}
                },
            }
        },
    )
    try:
        detection = detect_in_elasticsearch(
            es_client,
            load_use_case(RARECHILD),
            index=name,
            time_range=FUTURE,
            annotate=AnnotateMode.NONE,
            results_index="x",
        )
        assert detection.hint.endswith(
            ": the index holds no events at all; load events or check the index name"
        )
    finally:
        es_client.indices.delete(index=name)


def test_a_range_that_counts_events_has_no_hint(es_client, sample_index):
    detection = detect_in_elasticsearch(
        es_client,
        load_use_case(EXAMPLE),
        index=sample_index,
        time_range=TimeRange(datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC)),
        annotate=AnnotateMode.NONE,
        results_index="x",
    )
    assert detection.hint is None
    assert "hint" not in detection.to_response()


def test_the_webhook_answer_with_a_hint_is_valid_and_the_cli_prints_it(
    gunicorn_service, sample_index, es_url
):
    body = {"range": {"from": "2030-01-01T00:00:00Z", "to": "2030-01-08T00:00:00Z"}, "index": sample_index}
    result = gunicorn_service.call("POST", "/api/v1/detect", json_body=body, headers=gunicorn_service.bearer)
    assert result.status == 200
    answer = result.json()
    assert_valid("detect-response", answer)
    assert answer["hint"].startswith(f"no event of {sample_index} in [2030-01-01T00:00:00.000Z, ")

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "detect",
            "--config",
            str(EXAMPLE),
            "--es-url",
            es_url,
            "--index",
            sample_index,
            "--from",
            "2030-01-01",
            "--to",
            "2030-01-08",
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["events_analyzed"] == 0
    (note,) = [line for line in cli.stderr.splitlines() if line.startswith("note: ")]
    assert note.startswith(f"note: no event of {sample_index} in [2030-01-01T00:00:00.000Z, 2030-01-08T")
    events, first, last = _sample_extent()
    assert f"the index holds {events:,} events from {first} to {last} (@timestamp)" in note
