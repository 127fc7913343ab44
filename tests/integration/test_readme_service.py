"""docs/service.md's "Try it on the sample" commands, run as written against real gunicorn and Elasticsearch.

Only the service's port differs (a free one instead of 8080). The answer must equal the page's
example (but for timing and the request id) and the results must land in the results index.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest_service import ROOT, run_service
from elasticsearch import Elasticsearch

SERVICE_DOC = (ROOT / "docs" / "service.md").read_text()
SECTION = SERVICE_DOC[
    SERVICE_DOC.index("## Try it on the sample") : SERVICE_DOC.index("## `POST /api/v1/detect`")
]
SAMPLE_INDEX = "osquery-sample"
RESULTS_INDEX = "outliers-rare-child"


def _commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", SECTION, re.DOTALL).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _readme_answer() -> dict:
    return json.loads(re.search(r"```json\n(.*?)\n```", SECTION, re.DOTALL).group(1))


@pytest.fixture
def clean_readme_indices(es_client: Elasticsearch) -> Iterator[None]:
    """The page names fixed indices: make sure they start empty and are gone afterwards."""
    for index in (SAMPLE_INDEX, RESULTS_INDEX):
        es_client.options(ignore_status=404).indices.delete(index=index)
    yield
    for index in (SAMPLE_INDEX, RESULTS_INDEX):
        es_client.options(ignore_status=404).indices.delete(index=index)


def test_readme_commands_detect_the_planted_children_and_write_them(
    es_url, es_client, clean_readme_indices, tmp_path
):
    """load -> serve -> curl, as docs/service.md shows them; the results index then holds the five."""
    load, serve, curl = _commands()
    assert load.startswith("connector load ") and "connector serve" in serve and curl.startswith("curl ")

    loaded = subprocess.run(
        [sys.executable, "-m", "connector", *shlex.split(load)[1:]],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CONNECTOR_ES_URL": es_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 5,280 events into osquery-sample" in loaded.stderr

    assignments = dict(word.split("=", 1) for word in shlex.split(serve) if "=" in word)
    environment = {"CONNECTOR_ES_URL": es_url, **assignments}
    command = [sys.executable, "-m", "connector", "serve"]
    with run_service(tmp_path, environment, command=command) as (url, _, _):
        call = curl.replace("http://127.0.0.1:8080", url)
        answers = []
        for _ in range(2):
            result = subprocess.run(
                ["bash", "-c", call], capture_output=True, text=True, timeout=120, check=False
            )
            assert result.returncode == 0, result.stderr
            answers.append(json.loads(result.stdout))

    first, second = answers
    expected = _readme_answer()
    for key in ("took_ms", "request_id"):
        assert isinstance(first.pop(key), int | str)
        expected.pop(key)
    assert {**first, "outliers": first["outliers"][:1]} == expected
    assert [(o["aggregator"], o["term"]) for o in first["outliers"]] == [
        ("WINWORD.EXE", "cmd.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
        ("chrome.exe", "7zFM.exe"),
        ("OUTLOOK.EXE", "powershell.exe"),
        ("chrome.exe", "cmd.exe"),
    ]
    assert second["annotation"] == {**first["annotation"], "written": 0, "unchanged": 5}

    es_client.indices.refresh(index=RESULTS_INDEX)
    stored = es_client.search(index=RESULTS_INDEX, size=10)["hits"]
    assert stored["total"]["value"] == 5
    assert {hit["_source"]["outliers"]["source_id"] for hit in stored["hits"]} == {
        outlier["_id"] for outlier in first["outliers"]
    }
