"""Fixtures giving integration tests a REAL Elasticsearch node (no mocks, no fakes).

``ES_URL`` set: that cluster is used and must answer health (unreachable = failure, not skip).
Unset: ``scripts/es_node.py`` fetches the pinned integ-test-zip (once, cached) and starts a throw-away
node for the session, stopped in a ``finally``. If it cannot start, every test errors with the node's log.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import ApiError, Elasticsearch, TransportError

from scripts import es_node

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration gets the ``integration`` marker (``-m "not integration"``)."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _check_reachable(url: str) -> None:
    client = Elasticsearch(url, request_timeout=30)
    try:
        client.cluster.health(wait_for_status="yellow", timeout="20s")
        return
    except (ApiError, TransportError) as exc:
        problem = repr(exc)
    finally:
        client.close()
    pytest.fail(f"ES_URL={url} is set but the cluster is not healthy/reachable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a healthy cluster: ``ES_URL`` if set, else a node started for this session."""
    external = os.environ.get("ES_URL")
    if external:
        _check_reachable(external)
        yield external
        return
    try:
        node = es_node.start_node(tmp_path_factory.mktemp("es-node"))
    except es_node.NodeError as exc:
        problem = str(exc)  # fail outside the except block: no chained traceback noise
    else:
        problem = ""
    if problem:
        pytest.fail(f"could not start the test Elasticsearch node:\n{problem}", pytrace=False)
    try:
        yield node.url
    finally:
        node.stop()


@pytest.fixture(scope="session")
def es_client(es_url: str) -> Iterator[Elasticsearch]:
    """An 8.x client (the project pins elasticsearch>=8.19,<9) with a generous timeout for slow CI boxes."""
    client = Elasticsearch(es_url, request_timeout=30)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def index_name(es_client: Elasticsearch) -> Iterator[str]:
    """A fresh ``rcp-test-<uuid>`` index name; that one index (never a wildcard) is deleted afterwards."""
    name = f"rcp-test-{uuid.uuid4().hex}"
    yield name
    es_client.indices.delete(index=name, ignore_unavailable=True)


# Real gunicorn service fixtures (gunicorn_service, gunicorn_service_es_down, ...) live in
# conftest_service.py; importing them here makes them visible to every integration test.
from conftest_service import (  # noqa: E402
    gunicorn_service,
    gunicorn_service_es_down,
    service_credentials,
    service_results_index,
    service_workdir,
)

__all__ = [
    "gunicorn_service",
    "gunicorn_service_es_down",
    "service_credentials",
    "service_results_index",
    "service_workdir",
]
