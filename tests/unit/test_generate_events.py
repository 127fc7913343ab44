"""Pins scripts/generate_events.py and the examples it ships: determinism, the planted rare children,
the seed rule over the shipped sample, the document shape the seed use case reads, and streaming scale."""

from __future__ import annotations

import configparser
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scripts import generate_events as gen

_ROOT = Path(__file__).parent.parent.parent
_SCRIPT = _ROOT / "scripts" / "generate_events.py"
_SAMPLE = _ROOT / "examples" / "sample-events.ndjson"
_INI = _ROOT / "examples" / "rare_child.ini"

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_PLACEHOLDER = re.compile(r"@(USER|N|HEX|GUID|DOC)@")


def _render(**kwargs: object) -> bytes:
    buffer = io.StringIO()
    gen.write_ndjson(gen.generate(**kwargs), buffer)
    return buffer.getvalue().encode("utf-8")


def _pair(hit: dict) -> tuple[str, str]:
    osquery = hit["_source"]["OsqueryFilter"]
    return osquery["parentname"], osquery["name"]


def _run_script(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, str(_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def default_bytes() -> bytes:
    return _render()


@pytest.fixture(scope="module")
def sample_hits() -> list[dict]:
    return [json.loads(line) for line in _SAMPLE.read_text(encoding="utf-8").splitlines()]


# ---- determinism -----------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_output(default_bytes: bytes) -> None:
    """Two generations with the same arguments are byte for byte the same (no clock, no global random)."""
    assert _render() == default_bytes
    assert _render(seed=11, hosts=9, days=2) == _render(seed=11, hosts=9, days=2)


def test_another_seed_gives_different_output(default_bytes: bytes) -> None:
    """The seed drives the background: another seed changes the lines and every _id."""
    other = _render(seed=gen.DEFAULT_SEED + 1)
    assert other != default_bytes
    ids = {json.loads(line)["_id"] for line in default_bytes.splitlines()}
    other_ids = {json.loads(line)["_id"] for line in other.splitlines()}
    assert not ids & other_ids


def test_regenerating_with_defaults_reproduces_the_shipped_sample(
    default_bytes: bytes, tmp_path: Path
) -> None:
    """examples/sample-events.ndjson is exactly what the defaults produce, in-process and through the
    CLI (in another process, with another hash seed), with '\\n' line endings."""
    shipped = _SAMPLE.read_bytes()
    assert shipped == default_bytes, (
        "regenerate: python scripts/generate_events.py --out examples/sample-events.ndjson"
    )
    assert b"\r" not in shipped and shipped.endswith(b"\n")
    out = tmp_path / "events.ndjson"
    result = _run_script("--out", str(out), hash_seed="12345")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == shipped
    result = _run_script("--seed", "7", "--hosts", "8", "--days", "3", hash_seed="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode("utf-8") == shipped


# ---- the planted rare children and the seed rule ---------------------------------------------------------


def test_every_planted_and_whitelisted_event_is_present_once(sample_hits: list[dict]) -> None:
    """Each PLANTED / WHITELISTED entry is one event on its named host at its time, and its (parent, child)
    pair occurs nowhere else, so its count is exactly the planted count."""
    start = gen.DEFAULT_START
    pair_counts = Counter(_pair(hit) for hit in sample_hits)
    for event in gen.planted_events():
        matches = [
            hit
            for hit in sample_hits
            if _pair(hit) == (event.parent, event.child) and hit["_source"]["host"]["name"] == event.host
        ]
        assert len(matches) == 1, event
        hours, minutes, seconds = event.time.split(":")
        expected = start + timedelta(
            days=event.day % gen.DEFAULT_DAYS, hours=int(hours), minutes=int(minutes), seconds=float(seconds)
        )
        assert matches[0]["_source"]["@timestamp"] == expected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert not _PLACEHOLDER.search(json.dumps(matches[0]))
    assert gen.expected_pairs(gen.planted_events()) == {
        pair: pair_counts[pair] for pair in gen.expected_pairs(gen.planted_events())
    }
    assert set(gen.expected_pairs(gen.PLANTED)) == {
        ("WINWORD.EXE", "cmd.exe"),
        ("OUTLOOK.EXE", "powershell.exe"),
        ("chrome.exe", "cmd.exe"),
        ("chrome.exe", "7zFM.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
    }
    assert {event.parent for event in gen.WHITELISTED} == {"svchost.exe", "services.exe"}


def test_seed_rule_flags_exactly_the_planted_pairs_in_the_shipped_sample(sample_hits: list[dict]) -> None:
    """Over the shipped sample, count < mean(child counts) * 0.01 flags exactly PLANTED + WHITELISTED, and
    after the svchost/services whitelist exactly the PLANTED pairs remain."""
    result = gen.check(sample_hits)
    assert result.ok, result.problems
    assert result.flagged == gen.expected_pairs(gen.planted_events())
    assert gen.expected_flags(sample_hits) == result.flagged
    assert result.reported == gen.expected_pairs(gen.PLANTED)
    for event in gen.planted_events():
        stats = result.stats[event.parent]
        assert stats.mean_child_count > 100, stats  # a count of 1 is below 1 % of the mean


def test_check_cli_passes_on_the_shipped_sample() -> None:
    """`generate_events.py --check examples/sample-events.ndjson` exits 0 and says OK."""
    result = _run_script("--check", str(_SAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout
    assert "MISMATCH" not in result.stdout


def test_check_fails_when_a_benign_child_becomes_rare_or_a_planted_one_goes_missing(
    sample_hits: list[dict], tmp_path: Path
) -> None:
    """The checker can fail: an extra one-off child under chrome.exe is an unexpected flag, a removed
    planted event is a missing flag, and the CLI then exits 1."""
    extra = json.loads(json.dumps(sample_hits[100]))
    extra["_source"]["OsqueryFilter"].update(parentname="chrome.exe", name="notepad.exe")
    result = gen.check([*sample_hits, extra])
    assert not result.ok
    assert any("unexpected flag: chrome.exe -> notepad.exe" in problem for problem in result.problems)

    without = [hit for hit in sample_hits if _pair(hit) != ("WINWORD.EXE", "cmd.exe")]
    result = gen.check(without)
    assert any("missing flag: WINWORD.EXE -> cmd.exe" in problem for problem in result.problems)

    broken = tmp_path / "broken.ndjson"
    broken.write_text("".join(gen.to_line(hit) for hit in without), encoding="utf-8")
    cli = _run_script("--check", str(broken))
    assert cli.returncode == 1
    assert "MISMATCH missing flag: WINWORD.EXE -> cmd.exe" in cli.stdout


def test_rule_matches_the_reference_worked_example() -> None:
    """terms-model.md section 9: [500, 250, 200, 150, 100, 40, 1, 1] flags both count-1 children
    (frontier 1.5525); [150, 1, 1] flags nothing (frontier 0.507); a count equal to the frontier is not
    flagged (strict comparison)."""
    counts = dict(zip("abcdefgh", (500, 250, 200, 150, 100, 40, 1, 1), strict=True))
    flagged = gen.flags_from_counts({("svchost.exe", child): count for child, count in counts.items()})
    assert flagged == {("svchost.exe", "g"): 1, ("svchost.exe", "h"): 1}
    stats = gen.parent_stats({("svchost.exe", child): count for child, count in counts.items()})
    assert stats["svchost.exe"].decision_frontier == pytest.approx(1.5525)
    assert gen.flags_from_counts({("p", "a"): 150, ("p", "b"): 1, ("p", "c"): 1}) == {}
    assert gen.flags_from_counts({("p", "a"): 199, ("p", "b"): 1}) == {}  # frontier exactly 1.0


def test_seed_rule_still_holds_at_a_larger_scale() -> None:
    """Scale is a parameter: 12 hosts x 5 days x 300 events flags exactly the planted pairs too."""
    result = gen.check(gen.generate(seed=3, hosts=12, days=5, events_per_host_day=300))
    assert result.ok, result.problems
    assert sum(result.counts.values()) == 12 * 5 * 300


def test_catalog_keeps_benign_children_well_above_the_frontier() -> None:
    """Design invariant behind 'no benign child is flagged at any size': every catalog child carries at
    least a tenth of its parent's average child weight (planted children counted), and no catalog pair
    is a planted pair (its count would no longer be the planted one)."""
    planted_pairs = set(gen.expected_pairs(gen.planted_events()))
    for parent in gen.CATALOG:
        distinct = len(parent.children) + sum(1 for pair in planted_pairs if pair[0] == parent.name)
        total = sum(child.weight for child in parent.children)
        assert len({child.name for child in parent.children}) == len(parent.children), parent.name
        for child in parent.children:
            assert child.weight / total >= 0.1 / distinct - 1e-12, (parent.name, child.name)
            assert (parent.name, child.name) not in planted_pairs


# ---- the use-case file -----------------------------------------------------------------------------------


def _read_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    with open(_INI, encoding="utf-8") as handle:
        parser.read_file(handle)
    return parser


def test_ini_holds_the_design_seed_use_case_verbatim() -> None:
    """examples/rare_child.ini has exactly the seed use case's sections, options and values."""
    parser = _read_ini()
    assert parser.sections() == ["terms_rare_childname", "whitelist_regexps"]
    assert dict(parser["terms_rare_childname"]) == {
        "es_query_filter": 'tags:endpoint AND meta.command.name:"get_all_processes_enriched" AND '
        "_exists_:OsqueryFilter.name AND _exists_:OsqueryFilter.parentname AND "
        'NOT OsqueryFilter.parentname.raw:""',
        "aggregator": "OsqueryFilter.parentname",
        "target": "OsqueryFilter.name",
        "target_count_method": "within_aggregator",
        "trigger_on": "low",
        "trigger_method": "pct_of_avg_value",
        "trigger_sensitivity": "1",
        "outlier_type": "process execution",
        "outlier_reason": "rare child process",
        "outlier_summary": "rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}",
        "run_model": "1",
        "test_model": "0",
    }
    assert dict(parser["whitelist_regexps"]) == gen.WHITELIST_REGEXPS


def test_whitelist_suppresses_the_whitelisted_pairs_and_none_of_the_planted_ones() -> None:
    """The INI regexes (case-insensitive, match at start) match each WHITELISTED summary through the entry
    it names, and no PLANTED summary."""
    regexes = {
        name: re.compile(pattern, re.IGNORECASE) for name, pattern in _read_ini()["whitelist_regexps"].items()
    }
    summary = _read_ini()["terms_rare_childname"]["outlier_summary"]
    for event in gen.WHITELISTED:
        text = summary.replace("{OsqueryFilter.name}", event.child).replace(
            "{OsqueryFilter.parentname}", event.parent
        )
        assert regexes[event.whitelist_entry].match(text), text
    for event in gen.PLANTED:
        text = summary.replace("{OsqueryFilter.name}", event.child).replace(
            "{OsqueryFilter.parentname}", event.parent
        )
        assert not any(regex.match(text) for regex in regexes.values()), text


# ---- document shape and time range -----------------------------------------------------------------------


def test_every_event_has_the_fields_the_seed_use_case_needs(sample_hits: list[dict]) -> None:
    """Every hit matches the seed es_query_filter and carries the osquery fields an analyst reads, with
    the types osquery gives them; _id values are 24 hex digits and unique."""
    ids = set()
    for hit in sample_hits:
        assert set(hit) == {"_id", "_index", "_source"}
        assert re.fullmatch(r"[0-9a-f]{24}", hit["_id"])
        ids.add(hit["_id"])
        assert hit["_index"] == "osquery-processes"
        source = hit["_source"]
        assert list(source) == ["@timestamp", "tags", "meta", "host", "OsqueryFilter"]
        assert "endpoint" in source["tags"]
        assert source["meta"] == {"command": {"name": "get_all_processes_enriched"}}
        assert re.fullmatch(r"WS-\d{3}", source["host"]["name"])
        osquery = source["OsqueryFilter"]
        for field in ("name", "parentname", "cmdline", "parentcmdline", "path", "username"):
            assert isinstance(osquery[field], str) and osquery[field], (field, hit["_id"])
            assert not _PLACEHOLDER.search(osquery[field]), (field, osquery[field])
        for field in ("pid", "parent", "uid", "gid", "on_disk", "elevated_token", "start_time"):
            assert isinstance(osquery[field], int), (field, hit["_id"])
        assert osquery["pid"] % 4 == 0 and osquery["parent"] % 4 == 0
        assert osquery["usertype"] in {"special", "roaming"}
        assert osquery["state"] == "STILL_ACTIVE"
        assert re.fullmatch(r"[0-9a-f]{64}", osquery["sha256"])
        assert osquery["path"].lower().endswith(osquery["name"].lower())
        assert gen._matches_seed_filter(source)
    assert len(ids) == len(sample_hits)
    assert sum(gen.pair_counts(sample_hits).values()) == len(sample_hits)


@pytest.mark.parametrize(
    ("start", "days"),
    [(gen.DEFAULT_START, gen.DEFAULT_DAYS), (datetime(2024, 3, 8, 6, 30, tzinfo=UTC), 4)],
    ids=["defaults", "friday-0630-over-a-weekend"],
)
def test_timestamps_are_sorted_and_inside_the_requested_days(start: datetime, days: int) -> None:
    """@timestamp is ISO-8601 UTC with milliseconds and 'Z', never decreases, lies in [start, start + days),
    and start_time is the same instant in seconds."""
    hits = list(gen.generate(seed=5, hosts=8, days=days, start=start))
    stamps = [hit["_source"]["@timestamp"] for hit in hits]
    assert all(_TIMESTAMP.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)
    first = datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
    last = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00"))
    assert start <= first and last < start + timedelta(days=days)
    for hit in hits[:50]:
        moment = datetime.fromisoformat(hit["_source"]["@timestamp"].replace("Z", "+00:00"))
        assert hit["_source"]["OsqueryFilter"]["start_time"] == int(moment.timestamp())
    assert len({hit["_source"]["host"]["name"] for hit in hits}) == 8


# ---- scale and arguments ---------------------------------------------------------------------------------


def test_total_is_exact_and_generation_is_lazy() -> None:
    """generate() returns an iterator (nothing built up front); the total is hosts x days x rate, or exactly
    total_events, planted events included."""
    hits = gen.generate(hosts=9, days=2, events_per_host_day=50)
    assert isinstance(hits, Iterator) and not isinstance(hits, list | tuple)
    assert sum(1 for _ in hits) == 9 * 2 * 50
    assert sum(1 for _ in gen.generate(hosts=10, days=2, total_events=12_345)) == 12_345


def test_bad_arguments_are_refused_before_generating() -> None:
    """Too few hosts for the named planted hosts, no days or fewer events than planted ones raise ValueError
    at call time, naming the problem."""
    with pytest.raises(ValueError, match="WS-008"):
        gen.generate(hosts=7)
    with pytest.raises(ValueError, match="days"):
        gen.generate(days=0)
    with pytest.raises(ValueError, match="planted"):
        gen.generate(total_events=len(gen.planted_events()) - 1)
