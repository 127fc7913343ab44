"""The catch-up loop (connector/progress/catch_up.py) over an in-memory stand-in of the checkpoint store.

The store's Elasticsearch behaviour (leases, optimistic concurrency) is tested against the real node in
tests/integration/test_checkpoints_http.py; here only the loop: which spans run, when the checkpoint
moves, what is owed, and that the lease is always given back.
"""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import InvalidRangeError
from connector.progress.catch_up import CatchUpRequest, catch_up
from connector.progress.checkpoints import Checkpoint
from connector.results import AnnotateMode, WriteReport

T = datetime(2024, 3, 6, 14, tzinfo=UTC)
H = timedelta(hours=1)


@dataclass
class MemoryStore:
    index: str = "checkpoints"
    stored: Checkpoint | None = None
    writes: list[str] = field(default_factory=list)

    def read(self, use_case, index):
        return self.stored

    def acquire(self, use_case, index, *, holder, now, lease):
        base = self.stored or Checkpoint("id", use_case, index, None, None, 0, None, None)
        self.stored = replace(base, lease_holder=holder, lease_until=now + lease)
        self.writes.append("acquire")
        return self.stored

    def advance(self, checkpoint, *, to, now, spans=1):
        self.stored = replace(checkpoint, analysed_to=to, spans_analysed=checkpoint.spans_analysed + spans)
        self.writes.append(f"advance {to:%H}")
        return self.stored

    def release(self, checkpoint, *, now):
        self.stored = replace(checkpoint, lease_holder=None, lease_until=None)
        self.writes.append("release")


@dataclass
class FakeDetection:
    annotation: WriteReport
    span: object

    def to_response(self):
        return {
            "profile": {"name": "ecs", "chosen": "configured"},
            "events_analyzed": 10,
            "aggregators": 2,
            "outliers_total": 1,
            "outliers": [{"span": str(self.span.start)}],
            "annotation": self.annotation.to_dict(),
            "took_ms": 5,
        }


def report(failed=0):
    return WriteReport(
        mode=AnnotateMode.RESULTS_INDEX, index="r", dry_run=False, written=1, unchanged=0, failed=failed
    )


def request(**overrides):
    values = {
        "use_case": "terms_x",
        "index": "idx",
        "to": T,
        "initial_from": T - 3 * H,
        "baseline": timedelta(days=7),
        "max_spans": 24,
        "annotate": AnnotateMode.RESULTS_INDEX,
        "dry_run": False,
        "results_index": "r",
        "max_outliers": 1000,
    }
    values.update(overrides)
    return CatchUpRequest(**values)


def run(store, req, *, fail_at=None, seconds_left=lambda: None):
    def detect(span, baseline_start):
        assert baseline_start == span.start - timedelta(days=7)
        return FakeDetection(report(failed=1 if span.start == fail_at else 0), span)

    return catch_up(
        store, req, detect=detect, holder="req-1", lease=timedelta(minutes=2), clock=lambda: T, max_days=400,
        seconds_left=seconds_left,
    )  # fmt: skip


def test_each_span_moves_the_checkpoint_then_the_lease_is_released():
    store = MemoryStore()
    result = run(store, request())
    assert store.writes == ["acquire", "advance 12", "advance 13", "advance 14", "release"]
    body = result.to_response()
    assert body["outliers_total"] == 3 and body["events_analyzed"] == 30
    assert body["profile"] == {"name": "ecs", "chosen": "configured"}
    assert body["checkpoint"]["owed"] is None and body["checkpoint"]["advanced"] is True
    assert store.stored.lease_holder is None


def test_a_failed_write_back_stops_the_catch_up_and_its_span_stays_owed():
    store = MemoryStore()
    result = run(store, request(), fail_at=T - 2 * H)
    assert store.writes == ["acquire", "advance 12", "release"]
    body = result.to_response()
    assert body["checkpoint"]["owed"] == {
        "from": "2024-03-06T12:00:00.000Z",
        "to": "2024-03-06T14:00:00.000Z",
        "spans": 2,
    }
    assert body["annotation"]["outcome"] == "partial" and result.annotation_failed


def test_a_near_deadline_leaves_the_rest_owed_instead_of_timing_out():
    store = MemoryStore()
    left = iter([100.0, 0.0])
    result = run(store, request(), seconds_left=lambda: next(left))
    assert [span["from"] for span in result.to_response()["checkpoint"]["spans"]] == [
        "2024-03-06T11:00:00.000Z"
    ]
    assert result.owed.start == T - 2 * H


def test_a_dry_run_takes_no_lease_and_moves_nothing():
    store = MemoryStore()
    result = run(store, request(dry_run=True))
    assert store.writes == [] and len(result.detections) == 3
    assert result.to_response()["checkpoint"]["advanced"] is False


def test_an_error_during_a_span_still_releases_the_lease():
    store = MemoryStore()

    def detect(span, baseline_start):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        catch_up(store, request(), detect=detect, holder="h", lease=H, clock=lambda: T, max_days=400)
    assert store.writes == ["acquire", "release"]


def test_a_refused_plan_still_releases_the_lease():
    """A baseline beyond max_days is refused after the lease was taken: without the release, every call
    for this use case and index would get checkpoint_busy until the lease ran out."""
    store = MemoryStore()
    with pytest.raises(InvalidRangeError):
        run(store, request(baseline=timedelta(days=500)))
    assert store.writes == ["acquire", "release"] and store.stored.lease_holder is None
