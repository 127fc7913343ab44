"""The README and the docs it points to stay true: commands and examples match what the code does."""

import json
import re
from pathlib import Path

from connector.engine import detect_file

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
USE_CASES_DOC = (ROOT / "docs" / "use-cases.md").read_text()


def test_readme_output_example_is_the_real_first_outlier_of_the_sample():
    """The JSON shown under "Output contract" (docs/cli.md) is exactly what detect prints for the sample."""
    contract_section = CLI_DOC[CLI_DOC.index("## Output contract") :]
    shown = json.loads(re.search(r"```json\n(\{.*?\n\})\n```", contract_section, re.DOTALL).group(1))
    actual = detect_file(
        config_path=ROOT / "examples/rare_child.ini", events_path=ROOT / "examples/sample-events.ndjson"
    )
    assert shown == {**actual, "outliers": actual["outliers"][:1]}


def test_readme_set_up_commands_name_files_that_exist():
    """The two set-up commands point at the shipped examples and the test script."""
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/connector detect --config "
        "examples/rare_child.ini --events examples/sample-events.ndjson --format table" in README
    )
    assert "\nscripts/test\n" in README
    assert (ROOT / "scripts/test").stat().st_mode & 0o111
    assert "exec scripts/test" in (ROOT / ".ci/run").read_text()


def test_readme_seed_use_case_is_the_shipped_example_file():
    """The INI block of docs/use-cases.md is the content of examples/rare_child.ini (comments aside)."""
    shown = re.search(r"```ini\n(.*?)```", USE_CASES_DOC, re.DOTALL).group(1)
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
    section = README[README.index("## What it finds") : README.index("## Set up")]
    cited = re.search(r"`(bench/results/[^`]+-detection\.md)`", section).group(1)
    recorded = (ROOT / cited).read_text().splitlines()
    rows = [
        line for line in section.splitlines() if line.startswith("| rarechild") or line.startswith("| terms")
    ]
    assert len(rows) == 8
    assert all(row in recorded for row in rows), [row for row in rows if row not in recorded]


def test_readme_stays_short_and_points_to_every_docs_page():
    """A five-minute read: the details live in docs/, and the README links every page there."""
    assert len(README.splitlines()) <= 150
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", README))
    pages = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert pages - linked <= {"docs/formats.md"}, pages - linked
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_docs_links_resolve():
    """Every relative link in docs/*.md, CONTRIBUTING.md and CHANGELOG.md names a file that exists."""
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_nothing_points_outside_the_repository():
    """No code, test, script, benchmark or doc cites a document that is not in the repository."""
    # The names are built here so that this file does not match itself.
    outside = ("STYLE" + ".md", "DESIGN" + ".md", "shared" + "/")
    files = [ROOT / "README.md"]
    for folder in ("connector", "tests", "scripts", "bench", "docs"):
        files.extend(
            path for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts
        )
    offending = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        offending.extend(f"{path.relative_to(ROOT)}: {name}" for name in outside if name in text)
    assert offending == []
