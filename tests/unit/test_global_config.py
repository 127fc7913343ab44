"""The optional ee-outliers global file: defaults, assets and global whitelists."""

import json
import logging
from pathlib import Path

from connector.config import load_global_settings, load_use_cases
from connector.engine import detect_file

USE_CASE = """\
[terms_rare_child]
es_query_filter=tags:endpoint
aggregator=parent
target=child
target_count_method=within_aggregator
trigger_on=low
trigger_method=float
trigger_sensitivity=2
history_window_days=0
"""


def _events(tmp_path: Path) -> Path:
    """Under P: common x3, rare-a x1 (user alice), rare-b x1 (user bob); float frontier 2."""
    rows = [("common", "carol")] * 3 + [("rare-a", "alice"), ("rare-b", "bob")]
    path = tmp_path / "events.ndjson"
    path.write_text("".join(json.dumps({"parent": "P", "child": c, "user": u}) + "\n" for c, u in rows))
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_global_whitelists_and_assets_apply_to_every_use_case(tmp_path):
    """An [assets] value ("user: alice") is among the strings a global literal can match."""
    global_file = _write(
        tmp_path, "outliers.conf", "[assets]\nuser=user\n\n[whitelist_literals]\nalice=user: alice\n"
    )
    config = _write(tmp_path, "uc.ini", USE_CASE)
    result = detect_file(config_path=config, events_path=_events(tmp_path), global_config_path=global_file)
    assert [(o["_id"], o["term"]) for o in result["outliers"]] == [("line-5", "rare-b")]


def test_invalid_global_regex_is_ignored_with_a_warning(tmp_path, caplog):
    """ee-outliers ignores a broken global regex; we do too, but say so in the log."""
    global_file = _write(tmp_path, "outliers.conf", "[whitelist_regexps]\nbroken=rare-(a\nok=^rare-b$\n")
    with caplog.at_level(logging.WARNING):
        settings = load_global_settings(global_file)
    assert [entry.name for entry in settings.whitelist.regexps] == ["ok"]
    assert "broken" in caplog.text
    assert "entry ignored" in caplog.text
    result = detect_file(
        config_path=_write(tmp_path, "uc.ini", USE_CASE),
        events_path=_events(tmp_path),
        global_config_path=global_file,
    )
    assert [o["term"] for o in result["outliers"]] == ["rare-a"]


def test_general_defaults_fill_what_a_use_case_leaves_out(tmp_path):
    """timestamp_field and es_index_pattern come from [general]; a zero window cannot override (Q9)."""
    global_file = _write(
        tmp_path,
        "outliers.conf",
        "[general]\nes_index_pattern=osquery-*\ntimestamp_field=timestamp\nhistory_window_days=7\n"
        "history_window_days=30\n",  # repeated: the global file keeps the last value
    )
    use_case = load_use_cases(
        _write(tmp_path, "uc.ini", USE_CASE), load_global_settings(global_file)
    ).select()
    assert use_case.es_index == "osquery-*"
    assert use_case.timestamp_field == "timestamp"
    assert use_case.history_window_days == 30
