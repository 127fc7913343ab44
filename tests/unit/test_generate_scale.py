"""Pins the generator's benchmark multiplier (``scale``, ``--scale``) and ``check_counts``."""

from __future__ import annotations

import pytest

from scripts import generate_events as gen


@pytest.mark.parametrize(
    ("multiplier", "hosts", "days", "events"),
    [(1, 50, 7, 632_788), (4, 100, 14, 2_531_152), (16, 200, 28, 10_124_608)],
    ids=["1x", "4x", "16x"],
)
def test_scale_grows_hosts_and_days_by_the_square_root_and_events_by_the_multiplier(
    multiplier: int, hosts: int, days: int, events: int
) -> None:
    """1x is the reference environment (50 hosts, 7 days); 4x and 16x double hosts and days each time."""
    size = gen.scale(multiplier)
    assert (size.hosts, size.days, size.total_events, size.name) == (hosts, days, events, f"{multiplier}x")


@pytest.mark.parametrize("multiplier", [0, 2, 8, 9, -4], ids=str)
def test_scale_refuses_multipliers_that_are_not_powers_of_four(multiplier: int) -> None:
    with pytest.raises(ValueError, match="power of 4"):
        gen.scale(multiplier)


def test_scale_option_conflicts_with_an_explicit_total(capsys: pytest.CaptureFixture[str]) -> None:
    """--scale sets the total itself, so --total-events alongside it is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        gen.main(["--scale", "4", "--total-events", "100"])
    assert exit_info.value.code == 2
    assert "--total-events" in capsys.readouterr().err


def test_check_counts_gives_the_same_verdict_as_check_over_the_events() -> None:
    """The loader counts pairs while streaming and judges them with check_counts; same result as check."""
    hits = list(gen.generate())
    over_events = gen.check(hits)
    over_counts = gen.check_counts(gen.pair_counts(hits))
    assert over_counts.ok and over_events.ok
    assert over_counts.reported == over_events.reported == gen.expected_pairs(gen.PLANTED)


def test_reference_scale_plants_the_seven_typical_findings_and_the_sample_five() -> None:
    """From 50 hosts on, explorer.exe also starts PremierColor.exe and SUMo.exe (the reference findings)."""
    reference = {(event.parent, event.child) for event in gen.reported_planted(gen.scale(1).hosts)}
    assert reference == {
        ("chrome.exe", "cmd.exe"),
        ("chrome.exe", "7zFM.exe"),
        ("explorer.exe", "TightVNCViewerPortable.exe"),
        ("explorer.exe", "PremierColor.exe"),
        ("explorer.exe", "SUMo.exe"),
        ("WINWORD.EXE", "cmd.exe"),
        ("OUTLOOK.EXE", "powershell.exe"),
    }
    sample = {(event.parent, event.child) for event in gen.reported_planted(gen.DEFAULT_HOSTS)}
    assert sample == {(event.parent, event.child) for event in gen.PLANTED}
    assert len(sample) == 5
