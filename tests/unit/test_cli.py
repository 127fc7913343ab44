"""The ``connector detect`` command: output contract, table, errors and exit codes."""

import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.config import load_use_cases
from connector.engine import run
from connector.knowledge import DEFAULT_KNOWLEDGE
from connector.sources.ndjson import NdjsonSource

USE_CASE = """\
[terms_rare_child]
es_query_filter=tags:endpoint
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1
outlier_type=process execution
outlier_reason=rare child process
outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}

[terms_other]
es_query_filter=tags:endpoint
aggregator=host.name
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=float
trigger_sensitivity=2
"""


def _event(parent: str, child: str) -> dict:
    return {"host": {"name": "WS-1"}, "OsqueryFilter": {"parentname": parent, "name": child}}


def _write_events(path: Path, *, common: int, rare: int = 1) -> Path:
    """chrome.exe starts chrome.exe ``common`` times and cmd.exe ``rare`` times."""
    with path.open("w") as handle:
        for number in range(common):
            handle.write(
                json.dumps(
                    {"_id": f"c{number}", "_index": "osq", "_source": _event("chrome.exe", "chrome.exe")}
                )
            )
            handle.write("\n")
        for number in range(rare):
            handle.write(
                json.dumps({"_id": f"r{number}", "_index": "osq", "_source": _event("chrome.exe", "cmd.exe")})
            )
            handle.write("\n")
    return path


@pytest.fixture
def use_case_file(tmp_path: Path) -> Path:
    path = tmp_path / "use_cases.ini"
    path.write_text(USE_CASE)
    return path


def test_json_output_is_the_documented_contract(tmp_path, use_case_file):
    """Top-level keys and per-outlier keys are exactly the documented ones, with exact values."""
    events = _write_events(tmp_path / "events.ndjson", common=300)
    result = CliRunner().invoke(main, ["detect", "--config", str(use_case_file), "--events", str(events)])
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert output == {
        "use_case": "terms_rare_child",
        "events_analyzed": 301,
        "outliers": [
            {
                "_id": "r0",
                "_index": "osq",
                "aggregator": "chrome.exe",
                "term": "cmd.exe",
                "term_count": 1,
                # mean(300, 1) * 0.01
                "decision_frontier": pytest.approx(1.505, abs=1e-12),
                "trigger_method": "pct_of_avg_value",
                # (1.505 - 1) / 1.505
                "confidence": pytest.approx(0.505 / 1.505, abs=1e-12),
                "type": ["process execution"],
                "reason": ["rare child process"],
                "summary": "rare child process cmd.exe for chrome.exe",
            }
        ],
    }


def test_use_case_is_selected_by_section_or_model_name(tmp_path, use_case_file):
    """--use-case accepts terms_other and other; the output names the section."""
    events = _write_events(tmp_path / "events.ndjson", common=5)
    for name in ("terms_other", "other"):
        result = CliRunner().invoke(
            main, ["detect", "--config", str(use_case_file), "--events", str(events), "--use-case", name]
        )
        assert result.exit_code == 0, result.output
        output = json.loads(result.stdout)
        assert output["use_case"] == "terms_other"
        # float frontier 2: under WS-1, cmd.exe (1 < 2) is flagged, chrome.exe (5) is not
        assert [(o["_id"], o["term"], o["decision_frontier"]) for o in output["outliers"]] == [
            ("r0", "cmd.exe", 2.0)
        ]


def test_table_format_lists_each_outlier_for_people(tmp_path, use_case_file):
    """The table has a header line with totals and one row per outlier."""
    events = _write_events(tmp_path / "events.ndjson", common=300)
    result = CliRunner().invoke(
        main, ["detect", "--config", str(use_case_file), "--events", str(events), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "terms_rare_child: 1 outlier in 301 events"
    assert lines[2].split() == ["event", "id", "aggregator", "term", "count", "frontier", "conf.", "summary"]
    assert lines[4].split()[:6] == ["r0", "chrome.exe", "cmd.exe", "1", "1.505", "0.3355"]


def test_unknown_use_case_is_a_usage_error_listing_the_known_ones(tmp_path, use_case_file):
    """Exit 2 and a message naming the defined sections."""
    events = _write_events(tmp_path / "events.ndjson", common=1)
    result = CliRunner().invoke(
        main, ["detect", "--config", str(use_case_file), "--events", str(events), "--use-case", "nope"]
    )
    assert result.exit_code == 2
    assert "unknown use case 'nope'" in result.stderr
    assert "terms_rare_child, terms_other" in result.stderr


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"a": 1}\n{"a": \n', 2, "not valid JSON"),
        ('{"a": 1}\n\n[1, 2]\n', 3, "a JSON list where an object was expected"),
        ('{"_id": "x", "_source": "text"}\n', 1, '"_source" must be a JSON object'),
        (b'{"a": "\xff"}\n', 1, "not UTF-8"),
    ],
    ids=["truncated-json", "array-line", "source-not-object", "bad-encoding"],
)
def test_bad_events_file_names_the_line(tmp_path, use_case_file, content, line, message):
    """A bad line stops the run with exit 2 and 'file:line: reason', and no JSON on stdout."""
    events = tmp_path / "bad.ndjson"
    if isinstance(content, bytes):
        events.write_bytes(content)
    else:
        events.write_text(content)
    result = CliRunner().invoke(main, ["detect", "--config", str(use_case_file), "--events", str(events)])
    assert result.exit_code == 2
    assert f"bad.ndjson:{line}: " in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_bad_config_is_exit_2_naming_file_section_and_option(tmp_path):
    """Configuration problems are usage errors (exit 2) with the place to fix."""
    config = tmp_path / "broken.ini"
    config.write_text(USE_CASE.replace("trigger_method=float", "trigger_method=median"))
    events = _write_events(tmp_path / "events.ndjson", common=1)
    result = CliRunner().invoke(main, ["detect", "--config", str(config), "--events", str(events)])
    assert result.exit_code == 2
    assert "broken.ini [terms_other] trigger_method: unknown value 'median'" in result.stderr


def _peak_bytes_of_detection(config: Path, events: Path) -> int:
    use_case = load_use_cases(config).select()
    tracemalloc.start()
    try:
        result = run(NdjsonSource(events), use_case)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.outliers) == 1
    return peak


def test_memory_does_not_grow_with_file_length_for_fixed_distinct_pairs(tmp_path, use_case_file):
    """Streaming: 16x the lines with the same pairs must not need (much) more memory."""
    small = _write_events(tmp_path / "small.ndjson", common=2_000)
    large = _write_events(tmp_path / "large.ndjson", common=32_000)
    small_peak = _peak_bytes_of_detection(use_case_file, small)
    large_peak = _peak_bytes_of_detection(use_case_file, large)
    # Loading the large file whole would take tens of MB; streaming stays within a few KB.
    assert large_peak < small_peak * 1.5 + 64 * 1024, (small_peak, large_peak)


RARECHILD = Path(__file__).resolve().parents[2] / "examples" / "rarechild.ini"
LSASS = Path(__file__).resolve().parents[2] / "bench" / "detection" / "otrf_mordor_lsass_campaigns.ndjson"


def test_rarechild_json_is_one_record_per_alert_with_its_factors():
    """The documented rarechild record: the issue's minimum keys, and factors that add up to the score."""
    result = CliRunner().invoke(main, ["detect", "--config", str(RARECHILD), "--events", str(LSASS)])
    assert result.exit_code == 0, result.output
    contract = json.loads(result.output)
    assert (contract["use_case"], contract["model"], contract["events_analyzed"]) == (
        "rarechild_suspicious_child",
        "rarechild",
        948,
    )
    alerts = contract["outliers"]
    assert alerts and len(alerts) <= 20
    for alert in alerts:
        assert {"_id", "aggregator", "term", "score", "factors", "count", "event_ids"} <= set(alert)
        assert alert["_id"] == alert["event_ids"][0]
        assert alert["count"] == len(alert["event_ids"])
        assert alert["score"] >= alert["threshold"] == 8
        assert sum(factor["points"] for factor in alert["factors"]) == pytest.approx(alert["score"], abs=0.01)
    assert [alert["score"] for alert in alerts] == sorted((alert["score"] for alert in alerts), reverse=True)
    payload = {(a["aggregator"], a["term"]): a for a in alerts}[("winx64_payload.exe", "cmd.exe")]
    assert payload["count"] == 8
    assert len(payload["hosts"]) == payload["host_count"] >= 2


def test_rarechild_table_shows_each_alert_and_its_reasons():
    result = CliRunner().invoke(
        main, ["detect", "--config", str(RARECHILD), "--events", str(LSASS), "--format", "table"]
    )
    assert result.exit_code == 0, result.output
    as_json = json.loads(
        CliRunner().invoke(main, ["detect", "--config", str(RARECHILD), "--events", str(LSASS)]).output
    )
    lines = result.output.splitlines()
    assert lines[0] == (
        f"rarechild_suspicious_child: {len(as_json['outliers'])} alerts in 948 events "
        f"({as_json['pairs_above_threshold']} pairs reached the threshold)"
    )
    assert sum(1 for line in lines if line[:1].isdigit()) == len(as_json["outliers"])
    assert lines[2].split() == ["score", "parent", "child", "events", "hosts", "first", "event"]
    row = next(i for i, line in enumerate(lines) if "happy_image.jpeg.exe" in line and "explorer.exe" in line)
    reasons = lines[row + 1 : row + 4]
    assert reasons[0].split(maxsplit=1) == [
        "+5.00",
        "happy_image.jpeg.exe poses as a document (double extension)",
    ]


def test_check_knowledge_validates_the_shipped_file_and_names_a_broken_key(tmp_path):
    shipped = CliRunner().invoke(main, ["check-knowledge"])
    assert shipped.exit_code == 0, shipped.output
    assert shipped.output.startswith(f"{DEFAULT_KNOWLEDGE}: valid; ")
    broken = tmp_path / "mine.toml"
    text = DEFAULT_KNOWLEDGE.read_text()
    broken.write_text(text.replace('technique = "T1204.002"', 'technique = "1204"', 1))
    result = CliRunner().invoke(main, ["check-knowledge", str(broken)])
    assert result.exit_code == 2
    assert f"error: {broken}: rules." in result.output
    assert "'1204' does not match" in result.output


def test_an_unreachable_elasticsearch_is_named_in_the_message(tmp_path, use_case_file, monkeypatch):
    """The CLI says which node it could not reach and where that URL came from; exit code 1."""
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("CONNECTOR_ES_URL", raising=False)
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(main, ["detect", "--config", str(use_case_file), "--es-url", url])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: Elasticsearch is unreachable; retry later (Elasticsearch at {url}, from --es-url or "
        "CONNECTOR_ES_URL)"
    )


@pytest.mark.parametrize("command", ["kibana", "kibana-connector", "security-rule"])
def test_kibana_installers_without_a_url_name_both_ways_to_give_it(command, monkeypatch):
    monkeypatch.delenv("KIBANA_URL", raising=False)
    result = CliRunner().invoke(main, ["setup", command])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: Missing option '--kibana-url': give Kibana's base URL with --kibana-url URL, "
        "or set KIBANA_URL (e.g. https://kibana.internal:5601)"
    )


def test_a_json_error_at_the_end_of_a_line_names_that_column(tmp_path, use_case_file):
    """'{"a": ' ends at column 7: the error is there, not at column 1 of the next line."""
    events = tmp_path / "bad.ndjson"
    events.write_text('{"a": 1}\n{"a": \r\n{"a": 2}\n')
    result = CliRunner().invoke(main, ["detect", "--config", str(use_case_file), "--events", str(events)])
    assert result.exit_code == 2
    assert "bad.ndjson:2: not valid JSON (Expecting value at column 7)" in result.stderr


def test_a_field_in_none_of_the_events_is_said_once_with_the_fields_that_exist(
    tmp_path, use_case_file, caplog
):
    """A misspelt target over a file: 0 outliers as ee-outliers gives, and one warning naming the fix."""
    events = tmp_path / "events.ndjson"
    events.write_text("".join(json.dumps(_event("explorer.exe", "chrome.exe")) + "\n" for _ in range(3)))
    misspelt = tmp_path / "misspelt.ini"
    misspelt.write_text(
        use_case_file.read_text().replace("target=OsqueryFilter.name", "target=OsqueryFilter.nmae", 1)
    )
    with caplog.at_level("WARNING", logger="connector.sources.ndjson"):
        result = CliRunner().invoke(main, ["detect", "--config", str(misspelt), "--events", str(events)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outliers"] == []
    assert [record.getMessage() for record in caplog.records] == [
        "[terms_rare_child] target: field 'OsqueryFilter.nmae' is in none of the 3 events of "
        f"{events}, so every event was skipped; did you mean 'OsqueryFilter.name'? check the field path "
        "(fields of these events: OsqueryFilter.name, OsqueryFilter.parentname, host.name)"
    ]
