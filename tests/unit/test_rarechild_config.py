"""Rarechild use cases and knowledge files: options, defaults, and errors that name file, section, option."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from connector.config import RareChildUseCase, UseCase, load_use_cases
from connector.errors import ConfigError
from connector.knowledge import DEFAULT_KNOWLEDGE, load_knowledge, parse_knowledge

ROOT = Path(__file__).resolve().parents[2]
BASE = "[rarechild_x]\nes_query_filter=*\naggregator=OsqueryFilter.parentname\ntarget=OsqueryFilter.name\n"


def write(tmp_path: Path, text: str, name: str = "uc.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_the_shipped_example(tmp_path):
    (use_case,) = load_use_cases(write(tmp_path, BASE)).use_cases
    assert isinstance(use_case, RareChildUseCase)
    assert (use_case.model_name, use_case.score_threshold, use_case.max_alerts, use_case.smoothing) == (
        "x",
        10,
        20,
        10,
    )
    assert (use_case.path_field, use_case.host_field, use_case.knowledge) == (
        "OsqueryFilter.path",
        "host.name",
        None,
    )
    example = load_use_cases(ROOT / "examples" / "rarechild.ini").select("suspicious_child")
    assert isinstance(example, RareChildUseCase)
    assert (example.score_threshold, example.max_alerts) == (8, 20)


def test_both_models_in_one_file_share_its_whitelist(tmp_path):
    terms = (
        "[terms_y]\nes_query_filter=*\naggregator=a\ntarget=b\ntarget_count_method=within_aggregator\n"
        "trigger_on=low\ntrigger_method=float\ntrigger_sensitivity=1\n"
    )
    path = write(tmp_path, BASE + terms + "[whitelist_literals]\nok=cmd.exe\n")
    rarechild, term = load_use_cases(path).use_cases
    assert isinstance(rarechild, RareChildUseCase) and isinstance(term, UseCase)
    assert rarechild.whitelist == term.whitelist
    assert rarechild.whitelist.literals[0].values == frozenset({"cmd.exe"})


def test_unknown_options_are_copied_like_ee_outliers_does(tmp_path):
    (use_case,) = load_use_cases(write(tmp_path, BASE + "team=blue\n")).use_cases
    assert use_case.extra_options == (("team", "blue"),)


@pytest.mark.parametrize(
    ("line", "option", "says"),
    [
        ("score_threshold=high", "score_threshold", "'high' is not a number; write e.g. 10 or 7.5"),
        ("score_threshold=-1", "score_threshold", "'-1' must be a finite number of 0 or more"),
        ("score_threshold=nan", "score_threshold", "'nan' must be a finite number of 0 or more"),
        ("max_alerts=0", "max_alerts", "'0' must be 1 or more"),
        ("max_alerts=many", "max_alerts", "'many' is not a whole number"),
        ("smoothing=-3", "smoothing", "'-3' must be a finite number of 0 or more"),
        ("run_model=perhaps", "run_model", "'perhaps' is not a boolean"),
    ],
)
def test_bad_option_values_name_file_section_and_option(tmp_path, line, option, says):
    path = write(tmp_path, BASE + line + "\n")
    with pytest.raises(ConfigError) as raised:
        load_use_cases(path)
    assert raised.value.section == "rarechild_x"
    assert raised.value.option == option
    assert str(raised.value).startswith(f"{path} [rarechild_x] {option}: {says}")


def test_two_fields_where_the_model_takes_one(tmp_path):
    text = BASE.replace(
        "aggregator=OsqueryFilter.parentname", "aggregator=host.name,OsqueryFilter.parentname"
    )
    with pytest.raises(
        ConfigError, match=r"\[rarechild_x\] aggregator: the rarechild model takes one field here, not 2"
    ):
        load_use_cases(write(tmp_path, text))


def test_a_missing_filter_or_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[rarechild_x\] es_query_filter: required option is missing"):
        load_use_cases(write(tmp_path, BASE.replace("es_query_filter=*\n", "")))
    with pytest.raises(ConfigError, match=r"\[rarechild_x\] target: required option is missing"):
        load_use_cases(write(tmp_path, BASE.replace("target=OsqueryFilter.name\n", "")))


def test_a_knowledge_path_is_relative_to_the_use_case_file(tmp_path):
    (tmp_path / "mine.toml").write_bytes(DEFAULT_KNOWLEDGE.read_bytes())
    (use_case,) = load_use_cases(write(tmp_path, BASE + "knowledge=mine.toml\n")).use_cases
    assert use_case.knowledge == str(tmp_path / "mine.toml")


def test_a_missing_or_broken_knowledge_file_stops_loading(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_use_cases(write(tmp_path, BASE + "knowledge=nowhere.toml\n"))
    assert raised.value.option == "knowledge"
    assert "nowhere.toml: knowledge file not found" in str(raised.value)
    (tmp_path / "bad.toml").write_text("format = 1\n[classes\n")
    with pytest.raises(ConfigError, match=r"knowledge: .*bad\.toml: not valid TOML"):
        load_use_cases(write(tmp_path, BASE + "knowledge=bad.toml\n"))


def shipped() -> dict:
    return tomllib.loads(DEFAULT_KNOWLEDGE.read_text("utf-8"))


def test_the_shipped_knowledge_is_valid_and_cites_a_source_for_every_class():
    knowledge = load_knowledge()
    data = shipped()
    assert set(knowledge.classes) == set(data["classes"])
    assert all(entry["sources"] for entry in data["classes"].values())
    assert len(knowledge.rules) == len(data["rules"])
    assert knowledge.classes_of("WINWORD.EXE") == ("office",)
    assert knowledge.classes_of("mshta.exe") == ("html_application_host", "lolbin", "script_host")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["rules"][0].update(technique="1204"), "rules.0.technique: '1204' does not match"),
        (lambda d: d["rules"][0].update(child="nonsense"), "rules[1].child: unknown class 'nonsense'"),
        (lambda d: d["rules"][0].update(child="from_user_directory"), "rules[1].child: unknown class"),
        (lambda d: d["classes"]["office"].pop("sources"), "classes.office: 'sources' is a required property"),
        (lambda d: d["classes"]["office"]["members"].append("WinWord.exe"), "classes.office.members."),
        (lambda d: d["points"].update(user_writable="a lot"), "points.user_writable: 'a lot' is not of type"),
        (
            lambda d: d.update(extra=1),
            "(top level): Additional properties are not allowed ('extra' was unexpected)",
        ),
    ],
)
def test_a_broken_knowledge_file_names_the_key(change, says):
    data = shipped()
    change(data)
    with pytest.raises(ConfigError) as raised:
        parse_knowledge(data, path="k.toml")
    assert says in str(raised.value)
    assert str(raised.value).startswith("k.toml: ")


def test_name_and_path_facts():
    knowledge = load_knowledge()
    assert knowledge.has_double_extension("Invoice.PDF.exe")
    assert not knowledge.has_double_extension("setup.exe")
    assert not knowledge.has_double_extension(".pdf.exe")  # nothing before the decoy
    assert knowledge.is_user_writable(r"C:\Users\ann\AppData\Local\Temp\x.exe")
    assert knowledge.is_user_writable(r"c:\users\ann\downloads\tool.exe")
    assert not knowledge.is_user_writable(r"C:\Program Files\Tool\tool.exe")
    assert not knowledge.is_user_writable(None)
    assert knowledge.is_outside_home("reg.exe", r"C:\Diagnostics\UserTmp\reg.exe")
    assert not knowledge.is_outside_home("REG.EXE", r"c:\windows\SysWOW64\reg.exe")
    assert not knowledge.is_outside_home("notlisted.exe", r"C:\anywhere\notlisted.exe")
    assert not knowledge.is_outside_home("reg.exe", "")
    assert knowledge.unexpected_parent("cmd.exe", "lsass.exe")
    assert not knowledge.unexpected_parent("WININIT.EXE", "lsass.exe")
