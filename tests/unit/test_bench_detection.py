"""bench/detection.py counts what it says: found pairs, look-alikes, alerts and the events inside them."""

from __future__ import annotations

import json
from pathlib import Path

from bench import detection

ROOT = Path(__file__).resolve().parents[2]


def _line(event_id: str, parent: str, child: str) -> str:
    source = {"@timestamp": "2024-01-01T00:00:00.000Z", "host": {"name": "WS-1"}}
    source["OsqueryFilter"] = {"parentname": parent, "name": child, "path": rf"C:\Windows\System32\{child}"}
    return json.dumps({"_id": event_id, "_source": source}) + "\n"


def test_evaluate_matches_case_folded_pairs_and_counts_rolled_up_events(tmp_path):
    events = tmp_path / "events.ndjson"
    lines = [_line(f"w{i}", "WINWORD.EXE", "cmd.exe") for i in range(3)]
    lines += [_line(f"e{i}", "explorer.exe", "chrome.exe") for i in range(40)]
    events.write_text("".join(lines))
    config = tmp_path / "rarechild.ini"
    config.write_text(
        (ROOT / "examples" / "rarechild.ini").read_text().replace("score_threshold=8", "score_threshold=5")
    )
    model = detection.Model("rarechild", config, "rarechild_suspicious_child")
    known = {"attack": [["winword.exe", "cmd.exe"], ["mshta.exe", "cmd.exe"]], "benign_lookalike": []}
    row = detection.evaluate(model, "f", events, known)
    assert (row.events, row.alerts, row.alerted_events) == (43, 1, 3)
    assert (row.found, row.known, row.missed) == (1, 2, (("mshta.exe", "cmd.exe"),))
    assert row.alert_share == 100 / 43
    total = detection.total([row, row])
    assert (total.events, total.alerts, total.found, total.known) == (86, 2, 2, 4)


def test_terms_records_are_counted_one_alert_per_event(tmp_path):
    events = tmp_path / "events.ndjson"
    events.write_text(
        "".join(_line(f"e{i}", "explorer.exe", "chrome.exe") for i in range(200))
        + _line("x", "explorer.exe", "vnc.exe")
    )
    model = detection.Model("terms", ROOT / "examples" / "rare_child.ini", "terms_rare_childname")
    row = detection.evaluate(
        model, "f", events, {"attack": [["explorer.exe", "vnc.exe"]], "benign_lookalike": []}
    )
    assert (row.alerts, row.alerted_events, row.found) == (1, 1, 1)


def test_the_vendored_labels_cover_every_recording():
    labels = detection.labels()
    assert set(detection.FILES) <= set(labels)
    assert sum(len(labels[name]["attack"]) for name in detection.FILES) == 32
    assert all((detection.DATA / f"{name}.ndjson").exists() for name in detection.FILES)
