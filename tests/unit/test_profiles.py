"""Data profiles offline: the bundled sample in every source shape gives the osquery sample's findings,
with command line, user, path and hash read through the profile; profiles are detected from the fields."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from connector.config import load_use_case
from connector.engine import detect_file_result
from connector.errors import ConfigError
from connector.profiles import ECS, OSQUERY, OSQUERY_MANAGER, detect_profile, meets
from connector.results import results_document
from scripts.convert_events import convert_lines

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-events.ndjson"
SHAPES = {"ecs": "elastic-defend.ini", "sysmon": "sysmon.ini", "osquery-manager": "osquery-manager.ini"}
OSQUERY_USE_CASES = {
    "terms": ROOT / "examples" / "rare_child.ini",
    "rarechild": ROOT / "examples" / "rarechild.ini",
}
SECTIONS = {"terms": "terms_rare_childname", "rarechild": "rarechild_suspicious_child"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("shapes")
    paths = {}
    for shape in SHAPES:
        path = directory / f"sample-{shape}.ndjson"
        with SAMPLE.open(encoding="utf-8") as lines, path.open("w", encoding="utf-8") as out:
            convert_lines(lines, shape, out)
        paths[shape] = path
    return paths


def findings(result) -> list[tuple[str, str, str]]:
    contract = result.to_contract()
    return sorted((item["_id"], item["aggregator"], item["term"]) for item in contract["outliers"])


@pytest.mark.parametrize("model", ["terms", "rarechild"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_of_the_sample_gives_the_osquery_findings(converted, shape: str, model: str) -> None:
    """Same ids, parents and children; only process starts count (the ECS files hold ends as well)."""
    expected = detect_file_result(config_path=OSQUERY_USE_CASES[model], events_path=SAMPLE)
    result = detect_file_result(
        config_path=ROOT / "examples" / SHAPES[shape], events_path=converted[shape], use_case=SECTIONS[model]
    )
    assert findings(result) == findings(expected)
    assert findings(expected), "the sample has findings to compare"
    assert result.events_analyzed == expected.events_analyzed
    assert result.profile.to_dict() == {
        "name": "osquery-manager" if shape == "osquery-manager" else "ecs",
        "chosen": "configured",
    }


def test_the_ecs_shape_really_holds_end_events(converted) -> None:
    """The check above means something: half the Defend file is process ends, which must not count."""
    types = [json.loads(line)["_source"]["event"]["type"] for line in converted["ecs"].open()]
    assert types.count(["start"]) == types.count(["end"]) > 0


def test_without_a_profile_the_data_decides(converted, tmp_path: Path) -> None:
    """A use case naming the ECS fields but no profile is run with the detected ECS profile (and its
    start-only condition), and says so; the osquery sample is detected as osquery."""
    ini = tmp_path / "ecs.ini"
    ini.write_text(
        "[terms_rare_childname]\nes_query_filter=*\naggregator=process.parent.name\ntarget=process.name\n"
        "target_count_method=within_aggregator\ntrigger_on=low\ntrigger_method=pct_of_avg_value\n"
        "trigger_sensitivity=1\n"
    )
    result = detect_file_result(config_path=ini, events_path=converted["ecs"])
    assert result.profile.to_dict() == {"name": "ecs", "chosen": "detected"}
    assert result.events_analyzed == 5280
    osquery = detect_file_result(config_path=OSQUERY_USE_CASES["terms"], events_path=SAMPLE)
    assert osquery.profile.to_dict() == {"name": "osquery", "chosen": "detected"}


def test_results_documents_carry_ecs_fields_from_every_shape(converted) -> None:
    """The normalized process, parent, user, host and alert fields, whichever shape the event had."""
    documents = {}
    for shape in SHAPES:
        result = detect_file_result(
            config_path=ROOT / "examples" / SHAPES[shape], events_path=converted[shape]
        )
        outlier = next(o for o in result.outliers if o.observation.term == "TightVNCViewerPortable.exe")
        documents[shape] = results_document(result.use_case, outlier, None)
    osquery = detect_file_result(config_path=OSQUERY_USE_CASES["terms"], events_path=SAMPLE)
    outlier = next(o for o in osquery.outliers if o.observation.term == "TightVNCViewerPortable.exe")
    documents["osquery"] = results_document(osquery.use_case, outlier, None)
    wanted = ("process", "user", "host")
    reference = {key: documents["osquery"][key] for key in wanted}
    assert reference["process"]["name"] == "TightVNCViewerPortable.exe"
    assert reference["process"]["parent"]["name"] == "explorer.exe"
    assert reference["process"]["command_line"] and reference["process"]["executable"]
    assert reference["process"]["hash"]["sha256"] and reference["user"]["name"]
    for shape, document in documents.items():
        process = {key: value for key, value in document["process"].items() if key != "pid"}
        process["parent"] = {k: v for k, v in process["parent"].items() if k != "pid"}
        assert process == reference["process"], shape
        assert document["user"] == reference["user"] and document["host"] == reference["host"], shape
        assert document["event"]["kind"] == "alert" and document["rule"]["ruleset"] == "rare-child-connector"


def test_detect_profile_from_field_names() -> None:
    assert detect_profile(["OsqueryFilter.name", "OsqueryFilter.parentname"]) is OSQUERY
    assert detect_profile(["process.name", "process.parent.name", "event.category"]) is ECS
    assert detect_profile(["osquery.name", "osquery.parent_name", "agent.name"]) is OSQUERY_MANAGER
    assert detect_profile(["process.name"]) is None


def test_conditions_match_arrays_and_single_values() -> None:
    conditions = ECS.conditions
    assert meets({"event": {"category": ["process"], "type": ["start"]}}, conditions)
    assert meets({"event": {"category": "process", "type": ["change", "start"]}}, conditions)
    assert not meets({"event": {"category": ["process"], "type": ["end"]}}, conditions)
    assert not meets({"process": {"name": "cmd.exe"}}, conditions)


def test_an_unknown_profile_names_the_known_ones(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[rarechild_x]\nprofile=winlogbeat\n")
    with pytest.raises(ConfigError) as raised:
        load_use_case(ini)
    message = raised.value.message
    assert "profile" in message and "winlogbeat" in message and "osquery, ecs, osquery-manager" in message


def test_a_named_profile_fills_in_only_what_the_section_leaves_out(tmp_path: Path) -> None:
    ini = tmp_path / "mixed.ini"
    ini.write_text("[rarechild_x]\nprofile=ecs\nhost_field=observer.hostname\n")
    use_case = load_use_case(ini)
    assert use_case.aggregator == ("process.parent.name",) and use_case.target == ("process.name",)
    assert use_case.host_field == "observer.hostname"
    assert use_case.path_field == "process.executable"
    assert use_case.profile_conditions == (("event.category", "process"), ("event.type", "start"))


def test_converting_keeps_ids_and_drops_empty_values() -> None:
    line = json.dumps(
        {
            "_id": "a1",
            "_source": {
                "@timestamp": "2024-01-01T00:00:00Z",
                "host": {"name": "H"},
                "OsqueryFilter": {"name": "cmd.exe", "parentname": "", "cmdline": "cmd"},
            },
        }
    )
    out = io.StringIO()
    assert convert_lines(io.StringIO(line + "\n"), "ecs", out) == 2
    start, end = (json.loads(item) for item in out.getvalue().splitlines())
    assert start["_id"] == "a1" and end["_id"] == "a1-end"
    assert "parent" not in start["_source"]["process"]
    assert start["_source"]["event"]["ingested"] == "2024-01-01T00:00:00Z"
