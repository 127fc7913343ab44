"""Loading INI use-case files: the seed use case loads as written, bad files fail with a ConfigError
that names the file, the section and the option (docs/model.md and the project's
decisions: a bad file is an error at load time, not a skipped model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.config import ConfigError, load_use_cases
from connector.engine import detect_file

# The seed use case (examples/rare_child.ini), verbatim (the long filter split to fit the line length).
SEED_INI = "\n".join(
    [
        "[terms_rare_childname]",
        'es_query_filter=tags:endpoint AND meta.command.name:"get_all_processes_enriched" '
        "AND _exists_:OsqueryFilter.name AND _exists_:OsqueryFilter.parentname "
        'AND NOT OsqueryFilter.parentname.raw:""',
        "aggregator=OsqueryFilter.parentname",
        "target=OsqueryFilter.name",
        "target_count_method=within_aggregator",
        "trigger_on=low",
        "trigger_method=pct_of_avg_value",
        "trigger_sensitivity=1",
        "outlier_type=process execution",
        "outlier_reason=rare child process",
        "outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}",
        "run_model=1",
        "test_model=0",
        "",
        "[whitelist_regexps]",
        r"rare_child_svchost=^.*rare child process .* for svchost\.exe.*$",
        r"rare_child_services=^.*rare child process .* for services\.exe.*$",
        "",
    ]
)
SEED_FILTER = (
    'tags:endpoint AND meta.command.name:"get_all_processes_enriched" AND _exists_:OsqueryFilter.name '
    'AND _exists_:OsqueryFilter.parentname AND NOT OsqueryFilter.parentname.raw:""'
)

ALL_TRIGGER_METHODS = [
    "percentile",
    "pct_of_max_value",
    "pct_of_median_value",
    "pct_of_avg_value",
    "mad",
    "madpos",
    "stdev",
    "float",
    "coeff_of_variation",
]

VALID_OPTIONS = {
    "es_query_filter": "tags:endpoint",
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
BAD_SECTION = "terms_bad_case"
BAD_FILE = "bad_use_case.ini"


def section(name: str, options: dict[str, str], extra_lines: tuple[str, ...] = ()) -> str:
    return f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items()) + "".join(extra_lines) + "\n"


def with_option(**changes: str | None) -> dict[str, str]:
    """VALID_OPTIONS with some options replaced (None removes the option)."""
    options = dict(VALID_OPTIONS)
    for key, value in changes.items():
        if value is None:
            options.pop(key)
        else:
            options[key] = value
    return options


def write(tmp_path: Path, text: str, name: str = BAD_FILE) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ the seed
def test_seed_use_case_loads_verbatim(tmp_path: Path) -> None:
    """The seed file loads: one use case, the documented options typed, the filter kept as
    written, the two per-file regexes compiled case-insensitively (svchost regex matches the upper-case
    SVCHOST.EXE summary; the services regex matches SERVICES.EXE and not svchost)."""
    loaded = load_use_cases(write(tmp_path, SEED_INI, "seed.ini"))
    assert [uc.section for uc in loaded.use_cases] == ["terms_rare_childname"]
    seed = loaded.select("terms_rare_childname")
    assert seed.model_name == "rare_childname"
    assert seed.aggregator == ("OsqueryFilter.parentname",)
    assert seed.target == ("OsqueryFilter.name",)
    assert seed.target_count_method == "within_aggregator"
    assert seed.trigger_on == "low"
    assert seed.trigger_method == "pct_of_avg_value"
    assert seed.trigger_sensitivity == 1.0
    assert seed.min_target_buckets is None
    assert seed.es_query_filter == SEED_FILTER
    assert seed.outlier_summary == "rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}"
    regexes = {entry.name: entry.patterns for entry in seed.whitelist.regexps}
    assert set(regexes) == {"rare_child_svchost", "rare_child_services"}
    (svchost,) = regexes["rare_child_svchost"]
    (services,) = regexes["rare_child_services"]
    assert svchost.match("rare child process cmd.exe for SVCHOST.EXE")
    assert services.match("rare child process cmd.exe for SERVICES.EXE")
    assert not services.match("rare child process cmd.exe for SVCHOST.EXE")
    assert not svchost.match("rare child process cmd.exe for chrome.exe")


def test_seed_regexes_whitelist_upper_case_parents_end_to_end(tmp_path: Path) -> None:
    """With the seed, a count-1 child of SVCHOST.EXE (F = mean(300,1)·0.01 = 1.505) is whitelisted by
    the case-insensitive regex, while the same shape under chrome.exe is reported."""
    events = []
    for parent in ("SVCHOST.EXE", "chrome.exe"):
        events += [
            {
                "_id": f"{parent}-{i}",
                "_index": "i",
                "_source": {"OsqueryFilter": {"parentname": parent, "name": "common.exe"}},
            }
            for i in range(300)
        ]
        events.append(
            {
                "_id": f"{parent}-rare",
                "_index": "i",
                "_source": {"OsqueryFilter": {"parentname": parent, "name": "rare.exe"}},
            }
        )
    events_path = tmp_path / "seed.ndjson"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    result = detect_file(config_path=write(tmp_path, SEED_INI, "seed.ini"), events_path=events_path)
    assert [(o["_id"], o["aggregator"], o["term"]) for o in result["outliers"]] == [
        ("chrome.exe-rare", "chrome.exe", "rare.exe")
    ]
    assert result["outliers"][0]["decision_frontier"] == pytest.approx(1.505, abs=1e-9)


def test_several_use_cases_in_one_file_are_selectable(tmp_path: Path) -> None:
    """All [terms_*] sections load in file order; select(name) returns that section, select(None) the
    first; whitelist sections are not use cases."""
    text = (
        section("whitelist_literals", {"unused": "nothing"})
        + section("terms_first", VALID_OPTIONS)
        + section("terms_second", with_option(trigger_on="high", trigger_method="float"))
    )
    loaded = load_use_cases(write(tmp_path, text, "multi.ini"))
    assert [uc.section for uc in loaded.use_cases] == ["terms_first", "terms_second"]
    assert loaded.select(None).section == "terms_first"
    second = loaded.select("terms_second")
    assert (second.section, second.trigger_on, second.trigger_method) == ("terms_second", "high", "float")


# ------------------------------------------------------------------------------ bad files
# (text of the bad file, section named, option named, substrings that say what is allowed)
BAD_FILES = [
    (
        section(BAD_SECTION, with_option(trigger_method="pct_of_mean")),
        BAD_SECTION,
        "trigger_method",
        ALL_TRIGGER_METHODS,
    ),
    (section(BAD_SECTION, with_option(trigger_sensitivity="one")), BAD_SECTION, "trigger_sensitivity", []),
    (
        section(BAD_SECTION, with_option(aggregator=None)),
        BAD_SECTION,
        "aggregator",
        ["required option is missing; add a line 'aggregator=...' to this section"],
    ),
    (section(BAD_SECTION, with_option(target=None)), BAD_SECTION, "target", []),
    (section(BAD_SECTION, with_option(trigger_method=None)), BAD_SECTION, "trigger_method", []),
    (
        section(BAD_SECTION, with_option(target_count_method="within")),
        BAD_SECTION,
        "target_count_method",
        ["within_aggregator", "across_aggregators"],
    ),
    (section(BAD_SECTION, with_option(trigger_on="medium")), BAD_SECTION, "trigger_on", ["low", "high"]),
    (
        section(BAD_SECTION, VALID_OPTIONS) + section("whitelist_regexps", {"broken": "(unclosed"}),
        "whitelist_regexps",
        "broken",
        ["missing ), unterminated subpattern", "fix it (Python re syntax, split on ',') or remove the entry"],
    ),
    (
        section(BAD_SECTION, VALID_OPTIONS) + section("whitelist_regexps", {"broken_part": r"^ok$, [bad"}),
        "whitelist_regexps",
        "broken_part",
        [],
    ),
    (section(BAD_SECTION, with_option(min_target_buckets="three")), BAD_SECTION, "min_target_buckets", []),
    (section(BAD_SECTION, with_option(min_target_buckets="2.5")), BAD_SECTION, "min_target_buckets", []),
    (
        section(BAD_SECTION, VALID_OPTIONS, ("aggregator=OsqueryFilter.name\n",)),
        BAD_SECTION,
        "aggregator",
        [],
    ),
    (
        section(BAD_SECTION, with_option(trigger_method="percentile", trigger_sensitivity="101")),
        BAD_SECTION,
        "trigger_sensitivity",
        ["100"],
    ),
    (
        section(BAD_SECTION, with_option(trigger_method="percentile", trigger_sensitivity="-1")),
        BAD_SECTION,
        "trigger_sensitivity",
        ["100"],
    ),
]
BAD_IDS = [
    "unknown-trigger_method",
    "non-numeric-trigger_sensitivity",
    "missing-aggregator",
    "missing-target",
    "missing-trigger_method",
    "unknown-target_count_method",
    "unknown-trigger_on",
    "bad-regex",
    "bad-regex-comma-part",
    "min_target_buckets-word",
    "min_target_buckets-float",
    "duplicate-option",
    "percentile-sensitivity-above-100",
    "percentile-sensitivity-below-0",
]


@pytest.mark.parametrize(("bad_text", "section_name", "option", "allowed"), BAD_FILES, ids=BAD_IDS)
def test_bad_use_case_file_raises_config_error_naming_file_section_option(
    tmp_path: Path, bad_text: str, section_name: str, option: str, allowed: list[str]
) -> None:
    """A bad use-case file raises ConfigError whose attributes and message name the file, the section
    and the option (a valid [terms_ok] section before it must not be blamed), plus the allowed values
    where the option is an enumeration."""
    path = write(tmp_path, section("terms_ok", VALID_OPTIONS) + bad_text)
    with pytest.raises(ConfigError) as caught:
        load_use_cases(path)
    error = caught.value
    assert Path(error.path).name == BAD_FILE
    assert error.section == section_name
    assert error.option == option
    message = str(error)
    for expected in [BAD_FILE, section_name, option, *allowed]:
        assert expected in message, (expected, message)


def test_duplicate_section_raises_config_error(tmp_path: Path) -> None:
    """A repeated section is an error that names the file and the section (§1.1)."""
    path = write(tmp_path, section(BAD_SECTION, VALID_OPTIONS) + section(BAD_SECTION, VALID_OPTIONS))
    with pytest.raises(ConfigError) as caught:
        load_use_cases(path)
    assert Path(caught.value.path).name == BAD_FILE
    assert caught.value.section == BAD_SECTION
    assert BAD_FILE in str(caught.value)
    assert BAD_SECTION in str(caught.value)


def test_percentile_sensitivity_bounds_are_inclusive(tmp_path: Path) -> None:
    """percentile accepts s = 0 and s = 100 (the error is only outside [0, 100]); other methods accept
    s above 100 (e.g. pct_of_avg_value 150)."""
    text = (
        section("terms_p0", with_option(trigger_method="percentile", trigger_sensitivity="0"))
        + section("terms_p100", with_option(trigger_method="percentile", trigger_sensitivity="100"))
        + section("terms_avg150", with_option(trigger_method="pct_of_avg_value", trigger_sensitivity="150"))
    )
    loaded = load_use_cases(write(tmp_path, text, "bounds.ini"))
    assert [uc.trigger_sensitivity for uc in loaded.use_cases] == [0.0, 100.0, 150.0]


def test_detect_file_propagates_config_error(tmp_path: Path) -> None:
    """detect_file on a bad use-case file raises the same ConfigError (nothing is analysed)."""
    path = write(tmp_path, section(BAD_SECTION, with_option(trigger_on="sideways")))
    events_path = tmp_path / "events.ndjson"
    events_path.write_text("{}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        detect_file(config_path=path, events_path=events_path)
    assert (caught.value.section, caught.value.option) == (BAD_SECTION, "trigger_on")


def test_cli_bad_config_exits_2_with_message_on_stderr(tmp_path: Path) -> None:
    """`connector detect` with a bad use-case file exits 2, prints no JSON on stdout and names the file,
    section and option (with the allowed methods) on stderr."""
    path = write(tmp_path, section(BAD_SECTION, with_option(trigger_method="pct_of_mean")))
    events_path = tmp_path / "events.ndjson"
    events_path.write_text("{}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["detect", "--config", str(path), "--events", str(events_path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    for expected in [BAD_FILE, BAD_SECTION, "trigger_method", "pct_of_avg_value", "coeff_of_variation"]:
        assert expected in result.stderr, (expected, result.stderr)


def test_an_option_close_to_a_known_one_is_warned_as_a_probable_typo_and_still_copied(tmp_path, caplog):
    """``min_target_bucket=3`` is not ``min_target_buckets``: said once; unrelated extras stay silent."""
    path = tmp_path / "typo.ini"
    path.write_text(SEED_INI.replace("run_model=1", "run_model=1\nmin_target_bucket=3\nteam=blue"))
    with caplog.at_level("WARNING", logger="connector.config"):
        use_case = load_use_cases(path).select()
    assert use_case.extra_options == (("min_target_bucket", "3"), ("team", "blue"))
    assert use_case.min_target_buckets is None
    assert [record.getMessage() for record in caplog.records] == [
        f"{path} [terms_rare_childname] min_target_bucket: unknown option, probably a typo of "
        "min_target_buckets; it is copied into every outlier record as ee-outliers does, and does nothing "
        "else"
    ]
