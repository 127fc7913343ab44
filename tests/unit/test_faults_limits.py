"""The limits the fault tests rely on, pinned without a node: the detection time budget, its setting, the
client's retry policy, and the one-word outcome of a write-back.

These need no Elasticsearch (the clients point at a closed port and never connect); they pin the
arithmetic behind the timings of tests/integration/test_faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from connector.errors import ConfigError, ElasticsearchTimeoutError
from connector.results import AnnotateMode, WriteOutcome, WriteReport
from connector.settings import Settings, worker_timeout_seconds
from connector.sources.elasticsearch import TimeBudget

CLOSED_PORT_URL = "http://127.0.0.1:9"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[Elasticsearch]:
    es = Elasticsearch(CLOSED_PORT_URL, request_timeout=10)
    try:
        yield es
    finally:
        es.close()


def test_without_a_deadline_every_request_keeps_the_configured_timeout(client: Elasticsearch) -> None:
    budget = TimeBudget(10)
    assert budget.bind(client, "searching") is client
    assert budget.remaining_s() is None


def test_requests_near_the_deadline_get_only_the_time_left(client: Elasticsearch) -> None:
    """25 s for the detection, 10 s per request: at 20 s a request may take 5 s, not 10."""
    clock = Clock()
    budget = TimeBudget(10, 25, clock=clock)
    assert budget.bind(client, "counting") is client
    clock.now += 20
    shortened = budget.bind(client, "fetching")
    assert shortened is not client
    assert shortened._request_timeout == pytest.approx(5)


def test_no_request_is_sent_after_the_deadline_and_the_error_names_its_setting(client: Elasticsearch) -> None:
    clock = Clock()
    budget = TimeBudget(10, 25, clock=clock)
    clock.now += 25.5
    with pytest.raises(ElasticsearchTimeoutError) as raised:
        budget.bind(client, "writing outliers")
    assert "CONNECTOR_DETECT_TIMEOUT_SECONDS=25 s" in raised.value.message
    assert "writing outliers" in raised.value.message
    assert raised.value.status == 504


def test_a_full_length_request_that_times_out_names_the_per_request_setting(client: Elasticsearch) -> None:
    clock = Clock()
    budget = TimeBudget(10, 60, clock=clock)
    budget.bind(client, "searching")
    clock.now += 10
    message = budget.timeout_error("searching").message
    assert "CONNECTOR_ES_TIMEOUT_SECONDS=10 s" in message
    assert "CONNECTOR_DETECT_TIMEOUT_SECONDS" not in message


def test_a_request_shortened_by_the_deadline_that_times_out_names_the_deadline(client: Elasticsearch) -> None:
    clock = Clock()
    budget = TimeBudget(10, 25, clock=clock)
    clock.now += 20
    budget.bind(client, "searching")
    clock.now += 4.99  # the socket gave up a hair before the deadline
    assert "CONNECTOR_DETECT_TIMEOUT_SECONDS=25 s" in budget.timeout_error("searching").message


def test_a_deadline_needs_the_per_request_timeout_it_shortens() -> None:
    with pytest.raises(ValueError, match="per-request timeout"):
        TimeBudget(None, 25)


def _env(**overrides: str) -> dict[str, str]:
    return {
        "CONNECTOR_ES_URL": "http://127.0.0.1:9200",
        "CONNECTOR_USE_CASES": "/etc/rcp/rare.ini",
        "CONNECTOR_API_TOKENS": "tok-0123456789abcdef",
        **overrides,
    }


def test_detection_deadline_defaults_to_90_s_and_is_read_from_its_variable() -> None:
    assert Settings.from_env(_env()).detect_timeout_seconds == 90.0
    assert Settings.from_env(_env(CONNECTOR_DETECT_TIMEOUT_SECONDS="45")).detect_timeout_seconds == 45.0


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("3601", "out of range; use 1..3600"), ("0", "out of range"), ("soon", "not a number")],
    ids=["over-an-hour", "zero", "not-a-number"],
)
def test_bad_detection_deadline_is_refused_naming_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(_env(CONNECTOR_DETECT_TIMEOUT_SECONDS=value))
    assert raised.value.option == "CONNECTOR_DETECT_TIMEOUT_SECONDS"
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("deadline", "worker_timeout"), [(90.0, 120), (1.0, 31), (299.5, 330)])
def test_gunicorn_stops_a_worker_only_after_the_detection_deadline(deadline: float, worker_timeout: int):
    """The worker timeout follows the deadline: a slow detection ends in a 504, not a dropped connection."""
    assert worker_timeout_seconds(deadline) == worker_timeout


def test_client_never_retries_a_timeout_so_one_request_waits_one_timeout() -> None:
    """Connection failures are retried (immediately); timeouts, 429 and 504 are not (each retry of a
    timeout would wait the whole timeout again)."""
    es = Settings.from_env(_env(CONNECTOR_ES_TIMEOUT_SECONDS="7")).es_client()
    try:
        assert es._request_timeout == 7.0
        assert (es._max_retries, es._retry_on_timeout) == (3, False)
        assert set(es._retry_on_status) == {502, 503}
    finally:
        es.close()


@pytest.mark.parametrize(
    ("mode", "dry_run", "counts", "outcome"),
    [
        (AnnotateMode.RESULTS_INDEX, False, (5, 0, 0), WriteOutcome.COMPLETE),
        (AnnotateMode.RESULTS_INDEX, False, (0, 5, 0), WriteOutcome.COMPLETE),
        (AnnotateMode.RESULTS_INDEX, False, (0, 0, 0), WriteOutcome.COMPLETE),
        (AnnotateMode.RESULTS_INDEX, False, (1, 1, 3), WriteOutcome.PARTIAL),
        (AnnotateMode.IN_PLACE, False, (0, 2, 3), WriteOutcome.PARTIAL),
        (AnnotateMode.RESULTS_INDEX, False, (0, 0, 5), WriteOutcome.FAILED),
        (AnnotateMode.RESULTS_INDEX, True, (0, 0, 0), WriteOutcome.SKIPPED),
        (AnnotateMode.NONE, False, (0, 0, 0), WriteOutcome.SKIPPED),
    ],
    ids=["written", "unchanged", "no-outliers", "partial", "partial-in-place", "failed", "dry-run", "none"],
)
def test_write_outcome_cannot_hide_a_failed_write(
    mode: AnnotateMode, dry_run: bool, counts: tuple[int, int, int], outcome: WriteOutcome
) -> None:
    written, unchanged, failed = counts
    report = WriteReport(
        mode=mode, index=None, dry_run=dry_run, written=written, unchanged=unchanged, failed=failed
    )
    assert report.outcome is outcome
    assert report.to_dict()["outcome"] == outcome.value
