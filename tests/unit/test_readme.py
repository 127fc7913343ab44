"""The README stays true: its commands and its output example match what the code does."""

import json
import re
from pathlib import Path

from connector.engine import detect_file

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_output_example_is_the_real_first_outlier_of_the_sample():
    """The JSON shown under "Output contract" is exactly what detect prints for the sample."""
    contract_section = README[README.index("### Output contract") :]
    shown = json.loads(re.search(r"```json\n(\{.*?\n\})\n```", contract_section, re.DOTALL).group(1))
    actual = detect_file(
        config_path=ROOT / "examples/rare_child.ini", events_path=ROOT / "examples/sample-events.ndjson"
    )
    assert shown == {**actual, "outliers": actual["outliers"][:1]}


def test_readme_set_up_commands_name_files_that_exist():
    """The two set-up commands point at the shipped examples and the test script."""
    assert (
        "connector detect --config examples/rare_child.ini --events examples/sample-events.ndjson" in README
    )
    assert "\nscripts/test\n" in README
    assert (ROOT / "scripts/test").stat().st_mode & 0o111
    assert "exec scripts/test" in (ROOT / ".ci/run").read_text()


def test_readme_seed_use_case_is_the_shipped_example_file():
    """The INI block in the README is the content of examples/rare_child.ini (comments aside)."""
    shown = re.search(r"```ini\n(.*?)```", README, re.DOTALL).group(1)
    shipped = "".join(
        line
        for line in (ROOT / "examples/rare_child.ini").read_text().splitlines(keepends=True)
        if not line.startswith("#")
    ).strip()
    assert shown.strip() == shipped


def test_readme_rarechild_example_is_what_the_table_format_prints():
    """The scored model's example under "What it finds" is the real start of its table output."""
    from click.testing import CliRunner

    from connector.cli import main

    section = README[README.index("## What it finds") :]
    block = re.search(r"```\n\$ connector (detect [^\n]*)\n(.*?)\n\.\.\.\n```", section, re.DOTALL)
    argv = block.group(1).split()
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    shown = block.group(2).splitlines()
    assert result.output.splitlines()[: len(shown)] == shown


def test_readme_detection_table_is_the_recorded_benchmark():
    """Every row of the README's detection table is a row of the benchmark result it cites."""
    section = README[README.index("## What it finds") : README.index("## The webhook service")]
    cited = re.search(r"\(`(bench/results/[^`]+-detection\.md)`\)", section).group(1)
    recorded = (ROOT / cited).read_text().splitlines()
    rows = [
        line for line in section.splitlines() if line.startswith("| rarechild") or line.startswith("| terms")
    ]
    assert len(rows) == 8
    assert all(row in recorded for row in rows), [row for row in rows if row not in recorded]
