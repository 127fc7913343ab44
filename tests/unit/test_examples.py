"""The README's first command: the seed use case over the bundled sample finds what was planted."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from scripts import generate_events

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def sample_outliers():
    result = CliRunner().invoke(
        main,
        [
            "detect",
            "--config",
            str(EXAMPLES / "rare_child.ini"),
            "--events",
            str(EXAMPLES / "sample-events.ndjson"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sample_finds_exactly_the_planted_rare_children(sample_outliers):
    """Every planted pair is reported once, on its planted host, and nothing else is."""
    found = {(o["aggregator"], o["term"]) for o in sample_outliers["outliers"]}
    assert found == {(event.parent, event.child) for event in generate_events.PLANTED}
    assert len(sample_outliers["outliers"]) == len(generate_events.PLANTED)
    assert sample_outliers["events_analyzed"] == 5280


def test_sample_reports_none_of_the_whitelisted_children(sample_outliers):
    """svchost.exe / services.exe rare children exist in the sample but the seed regexes hide them."""
    found = {(o["aggregator"], o["term"]) for o in sample_outliers["outliers"]}
    whitelisted = {(event.parent, event.child) for event in generate_events.WHITELISTED}
    assert whitelisted and not (found & whitelisted)


def test_sample_outliers_carry_the_explaining_numbers(sample_outliers):
    """Each record has count 1, a frontier above 1 (1 % of a mean above 100) and a confidence in (0, 1)."""
    for outlier in sample_outliers["outliers"]:
        assert outlier["term_count"] == 1
        assert outlier["decision_frontier"] > 1
        assert outlier["confidence"] == pytest.approx(
            (outlier["decision_frontier"] - 1) / outlier["decision_frontier"], abs=1e-12
        )
        assert outlier["summary"] == f"rare child process {outlier['term']} for {outlier['aggregator']}"
