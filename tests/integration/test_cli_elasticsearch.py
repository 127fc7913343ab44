"""``connector detect --es-url``: the command line over the real node, as a user runs it (a subprocess).

What docs/cli.md promises: the same JSON as ``connector detect --events`` for the same events, nothing
written unless ``--annotate`` says so, exit code 1 for an operational error (Elasticsearch unreachable)
and 3 when some outliers could not be written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_service import free_loopback_port
from elasticsearch import Elasticsearch
from es_data import ROOT, SAMPLE, create_sample_index

from connector.results import results_index_template

USE_CASES = ROOT / "examples/rare_child.ini"
SAMPLE_RANGE = ["--from", "2024-03-04T00:00:00Z", "--to", "2024-03-07T00:00:00Z"]
CLI_TIMEOUT_S = 120


def connector_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m connector <args>`` with no CONNECTOR_* variable from the calling environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def events_index(es_client: Elasticsearch) -> Iterator[str]:
    """The bundled sample, mapped like an ee-outliers deployment."""
    name = f"rcp-cli-events-{uuid.uuid4().hex}"
    try:
        create_sample_index(es_client, name, shards=2)
        yield name
    finally:
        es_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture
def results_index(es_client: Elasticsearch) -> Iterator[str]:
    name = f"rcp-cli-results-{uuid.uuid4().hex}"
    yield name
    es_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="module")
def file_contract() -> dict[str, Any]:
    """What ``connector detect --events`` prints for the sample."""
    result = connector_cli("detect", "--config", str(USE_CASES), "--events", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    contract = json.loads(result.stdout)
    assert len(contract["outliers"]) == 5
    return contract


def in_index(contract: dict[str, Any], index: str) -> dict[str, Any]:
    """``contract`` with every outlier's ``_index`` set to ``index`` (the file's hits name another index)."""
    return {**contract, "outliers": [{**outlier, "_index": index} for outlier in contract["outliers"]]}


def detect_es(es_url: str, index: str, results_index: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return connector_cli(
        "detect",
        "--config",
        str(USE_CASES),
        "--es-url",
        es_url,
        "--index",
        index,
        *SAMPLE_RANGE,
        "--results-index",
        results_index,
        *extra,
    )


def test_es_url_prints_the_same_json_as_the_file_path_and_writes_nothing(
    es_url, es_client, events_index, results_index, file_contract
):
    """Same use case, same events: the same JSON, key for key and value for value (only ``_index`` names
    the node's index). Without --annotate nothing is written: no results index, no annotated event."""
    result = detect_es(es_url, events_index, results_index)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == in_index(file_contract, events_index)

    assert not es_client.indices.exists(index=results_index)
    es_client.indices.refresh(index=events_index)
    annotated = {"bool": {"should": [{"exists": {"field": "outliers"}}, {"term": {"tags": "outlier"}}]}}
    assert es_client.count(index=events_index, query=annotated)["count"] == 0
    assert es_client.count(index=events_index)["count"] == 5280


def test_es_url_with_annotate_writes_one_document_per_outlier(
    es_url, es_client, events_index, results_index, file_contract
):
    """The contrast: --annotate results_index stores the five outliers, and prints the same JSON."""
    result = detect_es(es_url, events_index, results_index, "--annotate", "results_index")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == in_index(file_contract, events_index)
    es_client.indices.refresh(index=results_index)
    stored = es_client.search(index=results_index, size=10)["hits"]["hits"]
    assert sorted(hit["_source"]["outliers"]["source_id"] for hit in stored) == sorted(
        outlier["_id"] for outlier in file_contract["outliers"]
    )


def test_an_unreachable_elasticsearch_exits_1_with_one_error_line(events_index, results_index):
    """A closed port: exit code 1, nothing on stdout, one ``error:`` line on stderr."""
    closed = f"http://127.0.0.1:{free_loopback_port()}"
    result = detect_es(closed, events_index, results_index)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: Elasticsearch is unreachable; retry later (Elasticsearch at {closed}, from --es-url or "
        "CONNECTOR_ES_URL)"
    ]


def test_outliers_that_cannot_be_written_exit_3_after_printing_the_detection(
    es_url, es_client, events_index, results_index, file_contract
):
    """A results index with ``"dynamic": "strict"`` refuses every document: the JSON is still printed, each
    refused write has an error line, and the exit code is 3."""
    mappings = results_index_template(results_index)["template"]["mappings"]
    es_client.indices.create(index=results_index, mappings={**mappings, "dynamic": "strict"})
    result = detect_es(es_url, events_index, results_index, "--annotate", "results_index")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert json.loads(result.stdout) == in_index(file_contract, events_index)
    lines = result.stderr.splitlines()
    assert lines[-1] == "error: 5 outlier(s) could not be written"
    refused = [line for line in lines if line.startswith("error: writing ")]
    assert len(refused) == 5, lines  # besides the log's warnings (one per refused document, and a summary)
    assert all(": strict_dynamic_mapping_exception: " in line for line in refused), refused
    es_client.indices.refresh(index=results_index)
    assert es_client.count(index=results_index)["count"] == 0
