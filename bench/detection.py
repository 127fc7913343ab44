"""Detection quality on real recordings: which known attack pairs each model alerts, at what alert cost.

Each of the five recordings in ``bench/detection/`` (real process creations from public datasets, see
its README) is one run: the whole file is the range, with no separate baseline, exactly as

    connector detect --config <use-case file> --use-case <name> --events <file> --format json

runs it (the same engine function). For every model it prints, per file and in total: events, alerts,
alerted events and their share of all events, attack pairs found of those known from the datasets' own
descriptions (``bench/detection/labels.json``), and benign look-alikes alerted. A pair counts as found
when an alert's parent and child (case-folded file names) are that pair.

The models: the terms model with the seed use case and tuned for recall (percentile 5), and the
rarechild model with its shipped use case, also with the two whitelist lines docs/rarechild.md shows.
``--synthetic`` adds the seed-scale synthetic set (``scripts/generate_events.py --scale 1``), on which
the rarechild model must still report the seven planted findings.

    python bench/detection.py [--synthetic] [--record]

``--record`` writes ``bench/results/<date>-detection.json`` and ``.md``. Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from connector.engine import detect_file  # noqa: E402

DATA = ROOT / "bench" / "detection"
RESULTS = ROOT / "bench" / "results"
FILES = (
    "msticpy_mde_workstation",
    "msticpy_mde_benign_device",
    "msticpy_alertswin1_4688",
    "otrf_mordor_atomic_windows",
    "otrf_mordor_lsass_campaigns",
)
# The two benign look-alikes of these recordings, suppressed by one line each (docs/rarechild.md).
LOOKALIKE_WHITELIST = """
[whitelist_regexps]
acrobat_native_messaging=.*WCChromeNativeMessagingHost\\.exe.*
network_diagnostics_script=.*gatherNetworkInfo\\.vbs.*
"""


@dataclass(frozen=True)
class Model:
    label: str
    config: Path
    use_case: str


@dataclass(frozen=True)
class Row:
    file: str
    events: int
    alerts: int
    alerted_events: int
    found: int
    known: int
    lookalikes: int
    lookalikes_known: int
    missed: tuple[tuple[str, str], ...]

    @property
    def alert_share(self) -> float:
        """Alerts per 100 events: the triage load (a rolled-up alert is one item)."""
        return 100.0 * self.alerts / self.events if self.events else 0.0

    @property
    def alerted_share(self) -> float:
        """Events inside alerts per 100 events."""
        return 100.0 * self.alerted_events / self.events if self.events else 0.0


def labels() -> dict[str, Any]:
    return json.loads((DATA / "labels.json").read_text("utf-8"))


def evaluate(model: Model, name: str, events_path: Path, known: dict[str, Any]) -> Row:
    """Run ``model`` over one file and compare its alerts with the file's labels."""
    contract = detect_file(config_path=model.config, events_path=events_path, use_case=model.use_case)
    attack = {tuple(pair) for pair in known.get("attack", [])}
    lookalike = {tuple(pair) for pair in known.get("benign_lookalike", [])}
    records = contract["outliers"]
    pairs = {(str(record["aggregator"]).lower(), str(record["term"]).lower()) for record in records}
    if contract.get("model") == "rarechild":
        alerts = len(records)
        alerted_events = sum(record["count"] for record in records)
    else:  # the terms model reports one record per event: each flagged event is an alert to triage
        alerts = alerted_events = len({record["_id"] for record in records})
    return Row(
        file=name,
        events=contract["events_analyzed"],
        alerts=alerts,
        alerted_events=alerted_events,
        found=len(attack & pairs),
        known=len(attack),
        lookalikes=len(lookalike & pairs),
        lookalikes_known=len(lookalike),
        missed=tuple(sorted(attack - pairs)),
    )


def total(rows: list[Row]) -> Row:
    return Row(
        file="total",
        events=sum(row.events for row in rows),
        alerts=sum(row.alerts for row in rows),
        alerted_events=sum(row.alerted_events for row in rows),
        found=sum(row.found for row in rows),
        known=sum(row.known for row in rows),
        lookalikes=sum(row.lookalikes for row in rows),
        lookalikes_known=sum(row.lookalikes_known for row in rows),
        missed=tuple(pair for row in rows for pair in row.missed),
    )


def table(results: dict[str, list[Row]]) -> str:
    lines = [
        "| model | file | events | alerts | alerts / events | events in alerts | attack pairs found "
        "| look-alikes alerted |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in results.items():
        for row in [*rows, total(rows)]:
            name = f"**{row.file}**" if row.file == "total" else row.file
            lines.append(
                f"| {label} | {name} | {row.events:,} | {row.alerts:,} | {row.alert_share:.2f} % | "
                f"{row.alerted_events:,} ({row.alerted_share:.2f} %) | {row.found} / {row.known} | "
                f"{row.lookalikes} / {row.lookalikes_known} |"
            )
    return "\n".join(lines)


def models(workdir: Path) -> list[Model]:
    shipped = ROOT / "examples" / "rarechild.ini"
    with_whitelist = workdir / "rarechild-with-lookalike-whitelist.ini"
    with_whitelist.write_text(shipped.read_text("utf-8") + LOOKALIKE_WHITELIST, "utf-8")
    return [
        Model("terms, seed use case", ROOT / "examples" / "rare_child.ini", "terms_rare_childname"),
        Model("terms, percentile 5", DATA / "terms-percentile-5.ini", "terms_rare_childname_p5"),
        Model("rarechild", shipped, "rarechild_suspicious_child"),
        Model("rarechild + 2 whitelist lines", with_whitelist, "rarechild_suspicious_child"),
    ]


def synthetic(workdir: Path) -> dict[str, Any]:
    """The rarechild model over the seed-scale synthetic set: the planted findings and the alert count."""
    from scripts import generate_events

    scale = generate_events.scale(1)
    path = workdir / "synthetic-1x.ndjson"
    with path.open("w", encoding="utf-8") as stream:
        generate_events.write_ndjson(
            generate_events.generate(hosts=scale.hosts, days=scale.days, total_events=scale.total_events),
            stream,
        )
    contract = detect_file(
        config_path=ROOT / "examples" / "rarechild.ini",
        events_path=path,
        use_case="rarechild_suspicious_child",
    )
    planted = generate_events.reported_planted(scale.hosts)
    alerted = {(str(r["aggregator"]).lower(), str(r["term"]).lower()) for r in contract["outliers"]}
    expected = [(event.parent.lower(), event.child.lower()) for event in planted]
    return {
        "events": contract["events_analyzed"],
        "alerts": len(contract["outliers"]),
        "alerted_events": sum(record["count"] for record in contract["outliers"]),
        "planted": len(expected),
        "planted_found": sum(pair in alerted for pair in expected),
        "planted_missed": [pair for pair in expected if pair not in alerted],
        "alert_pairs": sorted(alerted),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", action="store_true", help="also run the seed-scale synthetic set")
    parser.add_argument("--record", action="store_true", help="write bench/results/<date>-detection.*")
    args = parser.parse_args(argv)
    known = labels()
    results: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="rcp-detection-") as tmp:
        workdir = Path(tmp)
        for model in models(workdir):
            results[model.label] = [
                evaluate(model, name, DATA / f"{name}.ndjson", known[name]) for name in FILES
            ]
        seeded = synthetic(workdir) if args.synthetic else None
    text = table(results)
    print(text)
    for label, rows in results.items():
        missed = total(rows).missed
        print(f"\n{label}: missed {len(missed)}: " + ", ".join(f"{p}→{c}" for p, c in missed))
    if seeded:
        print(
            f"\nsynthetic 1x: {seeded['events']:,} events, {seeded['alerts']} alerts "
            f"({seeded['alerted_events']} events), planted findings {seeded['planted_found']} / "
            f"{seeded['planted']}; missed: {seeded['planted_missed']}"
        )
    if args.record:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        payload = {
            "date": stamp,
            "python": platform.python_version(),
            "models": {
                label: [
                    {**row.__dict__, "alert_share": row.alert_share, "alerted_share": row.alerted_share}
                    for row in [*rows, total(rows)]
                ]
                for label, rows in results.items()
            },
            "synthetic_1x": seeded,
        }
        (RESULTS / f"{stamp}-detection.json").write_text(json.dumps(payload, indent=2, default=list) + "\n")
        markdown = [f"# Detection quality on the real recordings ({stamp})", "", text, ""]
        if seeded:
            markdown.append(
                f"Synthetic seed scale (1x): {seeded['events']:,} events, {seeded['alerts']} alerts "
                f"({seeded['alerted_events']} events), planted findings found "
                f"{seeded['planted_found']} of {seeded['planted']}."
            )
        (RESULTS / f"{stamp}-detection.md").write_text("\n".join(markdown) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
