"""Bulk-load a generated data set into Elasticsearch, straight from the generator, once.

The events stream from ``scripts/generate_events.py`` into ``parallel_bulk`` (no NDJSON file: the 16x
set would be ~10 GB). While they stream, the (parent, child) pairs of the seed query are counted, and
the generator's own rule (``check_counts``) must then flag exactly ``PLANTED`` + ``WHITELISTED`` and
report ``PLANTED`` after the whitelist; otherwise the load fails and the index is not marked complete.

The index is created the way an ee-outliers deployment maps osquery events (text fields with a
``.raw`` keyword sub-field, ``host.name`` keyword, ``@timestamp`` date), with ``refresh_interval: -1``
and no replicas during the load; both are restored afterwards. The set's identity (generator
arguments, a digest of its first events, the event count) is stored in the mapping's ``_meta``: a
later load of the same set finds it there, with the same document count, and skips.

    python bench/loader.py --es-url http://127.0.0.1:9200 --scale 1 --index osquery-bench-1x
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: scripts/ lives at the repository root
    sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch, helpers  # noqa: E402

from scripts import generate_events  # noqa: E402

BULK_THREADS = 2
BULK_CHUNK = 5_000
PREFIX_EVENTS = 10_000  # events hashed into the identity before deciding to skip (cheap, ~0.5 s)
MAX_REPORTED_ERRORS = 10
IDENTITY_VERSION = 1


def load_generator() -> ModuleType:
    """The seeded generator (``scripts/generate_events.py``)."""
    return generate_events


@dataclass(frozen=True)
class DataSet:
    """What to generate: ``generate(seed=..., hosts=..., days=..., start=..., total_events=...)``."""

    name: str
    seed: int
    hosts: int
    days: int
    total_events: int
    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @classmethod
    def at_scale(cls, multiplier: int, *, seed: int | None = None) -> DataSet:
        gen = load_generator()
        size = gen.scale(multiplier)
        return cls(
            size.name,
            gen.DEFAULT_SEED if seed is None else seed,
            size.hosts,
            size.days,
            size.total_events,
            gen.DEFAULT_START,
        )

    @classmethod
    def tiny(cls, *, seed: int | None = None) -> DataSet:
        """The shipped sample's size (8 hosts x 3 days, 5,280 events): the smallest set the rule holds on."""
        gen = load_generator()
        hosts, days = gen.DEFAULT_HOSTS, gen.DEFAULT_DAYS
        total = hosts * days * gen.DEFAULT_EVENTS_PER_HOST_DAY
        seed = gen.DEFAULT_SEED if seed is None else seed
        return cls("tiny", seed, hosts, days, total, gen.DEFAULT_START)

    def hits(self) -> Iterator[dict]:
        return load_generator().generate(
            seed=self.seed, hosts=self.hosts, days=self.days, start=self.start, total_events=self.total_events
        )

    def identity(self) -> dict[str, Any]:
        """Arguments plus a digest of the first events: changes when the generator's output changes."""
        gen = load_generator()
        digest = hashlib.sha256()
        for hit in itertools.islice(self.hits(), PREFIX_EVENTS):
            digest.update(gen.to_line(hit).encode())
        return {
            "version": IDENTITY_VERSION,
            "generator": "scripts/generate_events.py",
            "seed": self.seed,
            "hosts": self.hosts,
            "days": self.days,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "total_events": self.total_events,
            "prefix_events": PREFIX_EVENTS,
            "prefix_sha256": digest.hexdigest(),
            # Planted events may lie beyond the hashed prefix: name them so a change reloads the set.
            "planted": sorted(f"{e.host} {e.parent} -> {e.child}" for e in gen.planted_events(self.hosts)),
        }


def index_body() -> dict[str, Any]:
    """Mapping of an ee-outliers deployment: strings as text with a ``.raw`` keyword, hosts as keywords."""

    def text_raw(ignore_above: int = 1024) -> dict[str, Any]:
        return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": ignore_above}}}

    osquery = {
        "name": text_raw(),
        "parentname": text_raw(),
        "cmdline": text_raw(),
        "parentcmdline": text_raw(),
        "path": text_raw(),
        "username": text_raw(),
        "usertype": {"type": "keyword"},
        "sha256": {"type": "keyword"},
        "state": {"type": "keyword"},
        "pid": {"type": "long"},
        "parent": {"type": "long"},
        "uid": {"type": "long"},
        "gid": {"type": "long"},
        "elevated_token": {"type": "integer"},
        "on_disk": {"type": "integer"},
        "start_time": {"type": "long"},
    }
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
        "mappings": {
            "dynamic": False,
            "properties": {
                "@timestamp": {"type": "date"},
                "tags": {"type": "keyword"},
                "meta": {"properties": {"command": {"properties": {"name": {"type": "keyword"}}}}},
                "host": {"properties": {"name": {"type": "keyword"}}},
                "OsqueryFilter": {"properties": osquery},
            },
        },
    }


@dataclass
class LoadReport:
    index: str
    skipped: bool
    events: int
    seconds: float
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    reported_pairs: list[list[Any]] = field(default_factory=list)  # [parent, child, count] after whitelist
    flagged_pairs: list[list[Any]] = field(default_factory=list)  # before the whitelist
    content_sha256: str = ""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds and not self.skipped else 0.0


class LoadError(RuntimeError):
    """The load failed (bulk errors, wrong count) or the generated set breaks the seed rule."""


def stored_meta(client: Elasticsearch, index: str) -> dict[str, Any] | None:
    if not client.indices.exists(index=index):
        return None
    mapping = client.indices.get_mapping(index=index)
    return next(iter(mapping.body.values()))["mappings"].get("_meta")


def ensure_loaded(
    client: Elasticsearch,
    data_set: DataSet,
    index: str,
    *,
    threads: int = BULK_THREADS,
    chunk_size: int = BULK_CHUNK,
    progress: Any = None,
) -> LoadReport:
    """Load ``data_set`` into ``index`` unless it already holds exactly that set; return what happened.

    :raises LoadError: bulk failures, a wrong document count, or a set that breaks the seed rule
    """
    identity = data_set.identity()
    meta = stored_meta(client, index)
    if meta and meta.get("complete") and meta.get("dataset") == identity:
        count = client.count(index=index)["count"]
        if count == data_set.total_events:
            return LoadReport(
                index,
                True,
                count,
                0.0,
                reported_pairs=meta.get("reported_pairs", []),
                flagged_pairs=meta.get("flagged_pairs", []),
                content_sha256=meta.get("content_sha256", ""),
            )
    gen = load_generator()
    client.options(ignore_status=404).indices.delete(index=index)
    body = index_body()
    body["mappings"]["_meta"] = {"dataset": identity, "complete": False}
    client.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])

    counts: Counter[tuple[str, str]] = Counter()
    content = hashlib.sha256()

    def actions() -> Iterator[dict[str, Any]]:
        for hit in data_set.hits():
            source = hit["_source"]
            if gen._matches_seed_filter(source):
                osquery = source["OsqueryFilter"]
                counts[(osquery["parentname"], osquery["name"])] += 1
            content.update(f"{hit['_id']}{source['@timestamp']}\n".encode())
            yield {"_index": index, "_id": hit["_id"], "_source": source}

    began = time.monotonic()
    indexed = failed = 0
    errors: list[str] = []
    for ok, item in helpers.parallel_bulk(
        client,
        actions(),
        thread_count=threads,
        chunk_size=chunk_size,
        queue_size=threads * 2,
        raise_on_error=False,
        raise_on_exception=False,
    ):
        if ok:
            indexed += 1
            if progress is not None and indexed % 500_000 == 0:
                progress(indexed, time.monotonic() - began)
            continue
        failed += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(str(item)[:300])
    # Restore the settings an index normally runs with: the default refresh interval, and replicas
    # only where another data node could hold them (a single node would stay yellow otherwise).
    roles = client.nodes.info(filter_path="nodes.*.roles")["nodes"].values()
    data_nodes = sum(1 for node in roles if "data" in node["roles"])
    client.indices.put_settings(
        index=index,
        settings={"index": {"refresh_interval": None, "number_of_replicas": min(1, data_nodes - 1)}},
    )
    client.indices.refresh(index=index)
    seconds = time.monotonic() - began
    count = client.count(index=index)["count"]
    if failed or count != data_set.total_events:
        raise LoadError(
            f"{index}: indexed {indexed}, failed {failed}, count {count}, expected {data_set.total_events}; "
            f"first errors: {errors}"
        )
    result = gen.check_counts(counts, hosts=data_set.hosts)
    if not result.ok:
        raise LoadError(f"{data_set.name}: the generated set breaks the seed rule: {result.problems}")
    reported = [[parent, child, n] for (parent, child), n in result.reported.items()]
    flagged = [[parent, child, n] for (parent, child), n in result.flagged.items()]
    client.indices.put_mapping(
        index=index,
        meta={
            "dataset": identity,
            "complete": True,
            "content_sha256": content.hexdigest(),
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_seconds": round(seconds, 1),
            "reported_pairs": reported,
            "flagged_pairs": flagged,
        },
    )
    return LoadReport(index, False, count, seconds, 0, [], reported, flagged, content.hexdigest())


def planted_and_whitelisted(hosts: int | None = None) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (parent, child) pairs the seed use case must report, and the ones its whitelist suppresses."""
    gen = load_generator()
    return (
        {(event.parent, event.child) for event in gen.reported_planted(hosts)},
        {(event.parent, event.child) for event in gen.WHITELISTED},
    )


def describe(report: LoadReport) -> str:
    if report.skipped:
        return f"{report.index}: already holds this set ({report.events} events), skipped"
    return (
        f"{report.index}: loaded {report.events} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f}/s); seed rule OK"
    )


def _pairs(items: list[list[Any]]) -> Mapping[tuple[str, str], int]:
    return {(parent, child): count for parent, child, count in items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--es-url", required=True, help="Elasticsearch base URL (loopback)")
    parser.add_argument("--scale", default="1", help="multiplier of the reference scale (1, 4, 16) or 'tiny'")
    parser.add_argument("--index", help="default: osquery-bench-<scale>")
    parser.add_argument("--threads", type=int, default=BULK_THREADS)
    parser.add_argument("--chunk-size", type=int, default=BULK_CHUNK)
    args = parser.parse_args(argv)
    data_set = DataSet.tiny() if args.scale == "tiny" else DataSet.at_scale(int(args.scale))
    index = args.index or f"osquery-bench-{data_set.name}"
    client = Elasticsearch(args.es_url, request_timeout=600)
    try:
        report = ensure_loaded(
            client,
            data_set,
            index,
            threads=args.threads,
            chunk_size=args.chunk_size,
            progress=lambda n, s: print(f"  {n:,} events in {s:.0f} s", file=sys.stderr, flush=True),
        )
    except LoadError as error:
        print(f"load failed: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(describe(report))
    print(f"reported after the whitelist: {dict(_pairs(report.reported_pairs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
