"""The scan-everything baseline (c): how ee-outliers runs the terms model.

Every event of the range is read with its full ``_source`` (point in time + ``search_after``, 10,000
per page, as ee-outliers' scroll does), the (aggregator, target) pairs are counted in Python, and the
connector's own engine applies the same frontier and whitelist passes to those counts. The documents
of a pair are kept while the pair has at most ``RETAIN_PER_PAIR`` events, so the candidates' entries
need no second read (ee-outliers keeps every document of its batch: this baseline is a lower bound).

Run as its own process so its peak memory (``VmHWM``) is its own; it prints one JSON object:

    python bench/scan.py --es-url URL --index osquery-bench-1x --from 2024-03-04T00:00:00Z \\
        --to 2024-03-11T00:00:00Z --use-cases examples/rare_child.ini
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the connector package lives at the repository root
    sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from connector.config import UseCase, load_use_case  # noqa: E402
from connector.engine import run  # noqa: E402
from connector.model.fields import event_pairs  # noqa: E402
from connector.model.terms import Entry, Pair, PairCounts, entries_of_event  # noqa: E402
from connector.sources.elasticsearch import ElasticsearchSource  # noqa: E402

SCAN_PAGE_SIZE = 10_000
RETAIN_PER_PAIR = 1_000
PIT_KEEP_ALIVE = "5m"


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of a process, in KiB, from /proc."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    return values


class ScanSource:
    """An EventSource that reads every event once and counts in Python."""

    def __init__(self, client: Elasticsearch, *, index: str, start: datetime, end: datetime) -> None:
        self.client = client
        self.index = index
        self.query_source = ElasticsearchSource(client, index=index, start=start, end=end)
        self.pages = 0
        self.events_read = 0
        self._retained: dict[Pair, list[dict[str, Any]] | None] = {}

    def _hits(self, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        pit = self.client.open_point_in_time(index=self.index, keep_alive=PIT_KEEP_ALIVE)["id"]
        try:
            after = None
            while True:
                response = self.client.search(
                    pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                    size=SCAN_PAGE_SIZE,
                    query=query,
                    sort=["_shard_doc"],
                    search_after=after,
                    track_total_hits=False,
                )
                self.pages += 1
                pit = response.get("pit_id", pit)
                hits = response["hits"]["hits"]
                yield from hits
                if len(hits) < SCAN_PAGE_SIZE:
                    return
                after = hits[-1]["sort"]
        finally:
            self.client.options(ignore_status=404).close_point_in_time(id=pit)

    def field_names(self) -> frozenset[str]:
        """The mapped fields, as the aggregation source sees them (a data profile is detected from them)."""
        return self.query_source.field_names()

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        counts = PairCounts()
        events = 0
        for hit in self._hits(self.query_source.base_query(use_case)):
            events += 1
            for pair in event_pairs(hit["_source"], aggregator=use_case.aggregator, target=use_case.target):
                counts.add(*pair)
                kept = self._retained.setdefault(pair, [])
                if kept is not None:
                    if len(kept) < RETAIN_PER_PAIR:
                        kept.append(hit)
                    else:
                        self._retained[pair] = None
        self.events_read = events
        return counts, events

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        if any(self._retained.get(pair) is None for pair in pairs):  # a frequent pair: read it all again
            hits: Iterator[dict[str, Any]] = self._hits(self.query_source.base_query(use_case))
        else:
            hits = (hit for pair in sorted(pairs) for hit in self._retained[pair] or [])
        for hit in hits:
            yield from entries_of_event(use_case, hit, pairs)


def scan_baseline(
    es_url: str, *, index: str, start: datetime, end: datetime, use_cases: Path, request_timeout: float = 600
) -> dict[str, Any]:
    """Run the baseline once; return its time, outliers and peak memory."""
    use_case = load_use_case(use_cases, None)
    client = Elasticsearch(es_url, request_timeout=request_timeout)
    try:
        began = time.perf_counter()
        source = ScanSource(client, index=index, start=start, end=end)
        result = run(source, use_case)
        seconds = time.perf_counter() - began
    finally:
        client.close()
    return {
        "seconds": seconds,
        "events_read": source.events_read,
        "pages": source.pages,
        "events_analyzed": result.events_analyzed,
        "pairs": result.pairs_counted,
        "outliers_total": len(result.outliers),
        "outlier_pairs": sorted(
            {(o.observation.aggregator, o.observation.term) for o in result.outliers}, key=str
        ),
        "memory_kib": memory_kib(),
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--from", dest="start", type=_instant, required=True)
    parser.add_argument("--to", dest="end", type=_instant, required=True)
    parser.add_argument("--use-cases", type=Path, default=ROOT / "examples" / "rare_child.ini")
    args = parser.parse_args(argv)
    report = scan_baseline(
        args.es_url, index=args.index, start=args.start, end=args.end, use_cases=args.use_cases
    )
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
