"""What a write-back did, counted per outlier, so that a partial write cannot pass for a complete one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 20


class AnnotateMode(StrEnum):
    """Where outliers are written."""

    RESULTS_INDEX = "results_index"
    IN_PLACE = "in_place"
    NONE = "none"


class WriteOutcome(StrEnum):
    """How a write-back ended, as a whole."""

    COMPLETE = "complete"  # every outlier is stored (written now or already there)
    PARTIAL = "partial"  # some outliers are stored, some writes failed: see the errors
    FAILED = "failed"  # no outlier could be stored
    SKIPPED = "skipped"  # nothing was to be written (annotate "none" or a dry run)


@dataclass(frozen=True, kw_only=True)
class WriteReport:
    """What one :func:`write_outliers` call did.

    Counts are per outlier (per item given), so ``written + unchanged + failed`` equals the number of
    items for a call that sent requests. In results mode one outlier is one document.

    :ivar index: the results index; ``None`` in the in-place and none modes
    :ivar written: outliers whose document was created or changed
    :ivar unchanged: outliers already written identically (nothing sent, or Elasticsearch answered
        ``noop``), repeated in the same call, or skipped in place by ee-outliers' one-write-per-summary rule
    :ivar failed: outliers whose write failed (after bounded retries)
    :ivar errors: the first :data:`MAX_REPORTED_ERRORS` failed requests, each
        ``{"_id", "_index", "status", "type", "reason"}`` (the service log has every one of them)
    """

    mode: AnnotateMode
    index: str | None
    dry_run: bool
    written: int
    unchanged: int
    failed: int
    errors: tuple[dict[str, Any], ...] = ()

    @property
    def outcome(self) -> WriteOutcome:
        """One word for the whole write, so that a partial write cannot pass for a complete one."""
        if self.mode is AnnotateMode.NONE or self.dry_run:
            return WriteOutcome.SKIPPED
        if not self.failed:
            return WriteOutcome.COMPLETE
        return WriteOutcome.PARTIAL if self.written + self.unchanged else WriteOutcome.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "index": self.index,
            "dry_run": self.dry_run,
            "outcome": self.outcome.value,
            "written": self.written,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": [dict(error) for error in self.errors],
        }


@dataclass
class Tally:
    written: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, error: dict[str, Any], *, outliers: int = 1) -> None:
        """Count a failed write. Every one is logged (with its id); the report lists the first ones."""
        self.failed += outliers
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)
        log.warning(
            "write of %s/%s failed: %s %s: %s",
            error["_index"],
            error["_id"],
            error["status"],
            error["type"],
            error["reason"],
        )
