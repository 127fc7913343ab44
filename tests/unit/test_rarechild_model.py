"""The rarechild model's factors, score, scope, order and alerts, against numbers worked out by hand.

The expected values below follow the formulas of docs/rarechild.md with the counts written out, so a
changed weight, smoothing or cap fails here with the arithmetic in view.
"""

from __future__ import annotations

import math

import pytest

from connector.config import RareChildUseCase, Whitelist, load_use_case
from connector.knowledge import load_knowledge
from connector.model.fields import text_at
from connector.model.rarechild import (
    GroupCount,
    PairTally,
    PathCount,
    Population,
    ScoringSettings,
    build_alert,
    score_pairs,
    tally_groups,
)

KNOWLEDGE = load_knowledge()


def groups() -> list[GroupCount]:
    """19 events on two hosts: N=19, parents explorer 12 / winword 1 / services 6, children chrome 10 /
    winword 2 / cmd 1 / svchost 6 (C=4, P=3, H=2)."""

    def group(parent: str, child: str, host: str, count: int) -> GroupCount:
        return GroupCount(parent, child, host, count, count, None)

    return [
        group("explorer.exe", "chrome.exe", "A", 6),
        group("explorer.exe", "chrome.exe", "B", 4),
        group("explorer.exe", "WINWORD.EXE", "A", 2),
        group("WINWORD.EXE", "cmd.exe", "A", 1),
        group("services.exe", "svchost.exe", "A", 3),
        group("services.exe", "svchost.exe", "B", 3),
    ]


def population(items: list[GroupCount], paths: tuple[PathCount, ...] = ()) -> Population:
    return Population.from_counts(items, paths, KNOWLEDGE)


def score_all(
    items: list[GroupCount], *, baseline: bool = False, paths: tuple[PathCount, ...] = ()
) -> dict[tuple[str, str], object]:
    settings = ScoringSettings(
        threshold=-100, smoothing=10, range_has_baseline=baseline, baseline_label="7 d"
    )
    return {
        candidate.pair: candidate for candidate in score_pairs(population(items, paths), KNOWLEDGE, settings)
    }


def points(candidate, name: str) -> float:
    return next(factor.points for factor in candidate.factors if factor.name == name)


def test_each_factor_of_a_word_shell_is_its_documented_formula():
    candidate = score_all(groups())[("winword.exe", "cmd.exe")]
    # within: (n_pc + a*q_c) / (n_p + a) with q_c = (n_c + 1) / (N + C) = 2/23, a = 10: (1 + 20/23) / 11
    assert points(candidate, "rare_under_parent") == pytest.approx(0.3 * math.log2(253 / 43))
    # parent: (n_p + 1) / (N + P) = 2/22
    assert points(candidate, "rare_parent") == pytest.approx(0.2 * math.log2(11))
    # child: q_c = 2/23
    assert points(candidate, "rare_child") == pytest.approx(0.2 * math.log2(23 / 2))
    # hosts: on 1 of 2 hosts -> log2(2/1) bits, 0.5 point each
    assert points(candidate, "host_prevalence") == pytest.approx(0.5)
    # the Office -> shell rule of the shipped knowledge
    assert points(candidate, "known_technique") == 6
    expected = 0.3 * math.log2(253 / 43) + 0.2 * math.log2(11) + 0.2 * math.log2(23 / 2) + 0.5 + 6
    assert candidate.score == pytest.approx(expected)
    assert [factor.name for factor in candidate.factors] == [
        "rare_under_parent",
        "rare_parent",
        "rare_child",
        "host_prevalence",
        "known_technique",
    ]
    known = candidate.factors[-1]
    assert known.technique == "T1204.002"
    assert known.says.endswith("(T1204.002; office → shell)")


def test_names_are_folded_and_the_stored_spellings_kept_for_fetching():
    scored = score_all(groups())
    assert ("explorer.exe", "winword.exe") in scored
    assert scored[("winword.exe", "cmd.exe")].raw_pairs == (("WINWORD.EXE", "cmd.exe"),)
    both = [*groups(), GroupCount("winword.exe", "CMD.EXE", "B", 1, 1, None)]
    candidate = score_all(both)[("winword.exe", "cmd.exe")]
    assert candidate.raw_pairs == (("WINWORD.EXE", "cmd.exe"), ("winword.exe", "CMD.EXE"))
    assert candidate.hosts_with_pair == 2
    # on 2 of 2 hosts: no host points
    assert points(candidate, "host_prevalence") == 0


def test_a_common_pair_scores_low_and_one_host_gives_no_host_points():
    scored = score_all(groups())
    chrome = scored[("explorer.exe", "chrome.exe")]
    # within (10 + 10*11/23) / (12 + 10): most of explorer's launches are chrome
    assert points(chrome, "rare_under_parent") == pytest.approx(0.3 * -math.log2((10 + 110 / 23) / 22))
    assert chrome.score < 3
    single_host = score_all([GroupCount("a.exe", "b.exe", "A", 1, 1, None)])[("a.exe", "b.exe")]
    assert points(single_host, "host_prevalence") == 0
    assert next(f for f in single_host.factors if f.name == "host_prevalence").says == "on 1 of 1 hosts"


def test_bits_are_capped_at_twelve():
    huge = [
        GroupCount("x.exe", "y.exe", "A", 1, 1, None),
        GroupCount("p.exe", "q.exe", "A", 1_000_000, 1_000_000, None),
    ]
    candidate = score_all(huge)[("x.exe", "y.exe")]
    assert points(candidate, "rare_child") == pytest.approx(0.2 * 12)
    assert points(candidate, "rare_parent") == pytest.approx(0.2 * 12)


def test_novelty_only_with_a_baseline():
    new = GroupCount("winword.exe", "cmd.exe", "A", 1, 1, None)
    seen = GroupCount("winword.exe", "powershell.exe", "A", 3, 1, 1_000)
    scored = score_all([new, seen], baseline=True)
    novel = next(f for f in scored[("winword.exe", "cmd.exe")].factors if f.name == "novelty")
    assert (novel.points, novel.says) == (2.0, "first seen in this range (7 d)")
    old = next(f for f in scored[("winword.exe", "powershell.exe")].factors if f.name == "novelty")
    assert (old.points, old.value, old.says) == (0.0, 2.0, "seen 2 times before this range")
    assert all(f.name != "novelty" for f in score_all([new])[("winword.exe", "cmd.exe")].factors)


def test_a_pair_without_events_in_the_range_is_never_a_candidate():
    only_baseline = GroupCount("winword.exe", "cmd.exe", "A", 4, 0, 1_000)
    assert score_all([only_baseline], baseline=True) == {}


def test_path_factors_alone_alert_only_the_flagged_events():
    # reg.exe under cmd.exe: 10 events, 2 of them from outside System32 (a copied system binary)
    items = [
        GroupCount("cmd.exe", "reg.exe", "A", 10, 10, None),
        GroupCount("explorer.exe", "chrome.exe", "A", 50, 50, None),
    ]
    copy = "C:\\Diagnostics\\UserTmp\\reg.exe"
    paths = (
        PathCount("cmd.exe", "reg.exe", "C:\\Windows\\System32\\reg.exe", 8),
        PathCount("cmd.exe", "reg.exe", copy, 2),
    )
    settings = ScoringSettings(threshold=6, smoothing=10, range_has_baseline=False)
    (candidate,) = score_pairs(population(items, paths), KNOWLEDGE, settings)
    base = sum(f.points for f in candidate.factors if f.name != "system_binary_elsewhere")
    assert base < 6 <= candidate.score
    assert candidate.flagged_only is True
    assert candidate.events_in_scope == 2
    assert candidate.flagged_paths == (copy,)
    elsewhere = candidate.factors[-1]
    assert (elsewhere.name, elsewhere.points, elsewhere.technique) == (
        "system_binary_elsewhere",
        4.0,
        "T1036.005",
    )
    # at a threshold the pair reaches without its path factor, every event alerts
    low = ScoringSettings(threshold=base - 0.01, smoothing=10, range_has_baseline=False)
    (all_events,) = [c for c in score_pairs(population(items, paths), KNOWLEDGE, low) if c.child == "reg.exe"]
    assert (all_events.flagged_only, all_events.events_in_scope, all_events.flagged_paths) == (False, 10, ())


def test_a_parent_seen_running_from_a_user_directory_is_a_derived_class():
    items = [
        GroupCount("explorer.exe", "payload.exe", "A", 1, 1, None),
        GroupCount("payload.exe", "cmd.exe", "A", 1, 1, None),
        GroupCount("payload.exe", "tool.exe", "A", 1, 1, None),
    ]
    dropped = (PathCount("explorer.exe", "payload.exe", "C:\\Users\\ann\\Downloads\\payload.exe", 1),)
    scored = score_all(items, paths=dropped)
    shell = next(f for f in scored[("payload.exe", "cmd.exe")].factors if f.name == "known_technique")
    assert shell.points == 6
    assert "from_user_directory → shell" in shell.says
    other = next(f for f in scored[("payload.exe", "tool.exe")].factors if f.name == "known_technique")
    assert other.points == 2
    assert "from_user_directory → *" in other.says


def test_double_extension_and_unexpected_parent_are_name_factors():
    items = [
        GroupCount("explorer.exe", "invoice.pdf.exe", "A", 1, 1, None),
        GroupCount("cmd.exe", "lsass.exe", "A", 1, 1, None),
        GroupCount("wininit.exe", "lsass.exe", "A", 1, 1, None),
    ]
    scored = score_all(items)
    assert points(scored[("explorer.exe", "invoice.pdf.exe")], "double_extension") == 5
    assert points(scored[("cmd.exe", "lsass.exe")], "unexpected_parent") == 4
    assert all(f.name != "unexpected_parent" for f in scored[("wininit.exe", "lsass.exe")].factors)


def test_order_is_score_then_parent_then_child_whatever_the_input_order():
    items = [GroupCount(f"p{i}.exe", "c.exe", "A", 1, 1, None) for i in range(5)]
    settings = ScoringSettings(threshold=-100, smoothing=10, range_has_baseline=False)
    forward = score_pairs(population(items), KNOWLEDGE, settings)
    backward = score_pairs(population(list(reversed(items))), KNOWLEDGE, settings)
    assert (
        [c.pair for c in forward] == [c.pair for c in backward] == [(f"p{i}.exe", "c.exe") for i in range(5)]
    )
    assert [c.score for c in forward] == [c.score for c in backward]


def _use_case(tmp_path, whitelist: str = "") -> RareChildUseCase:
    path = tmp_path / "uc.ini"
    path.write_text(
        "[rarechild_x]\nes_query_filter=*\naggregator=OsqueryFilter.parentname\ntarget=OsqueryFilter.name\n"
        + whitelist
    )
    use_case = load_use_case(path)
    assert isinstance(use_case, RareChildUseCase)
    return use_case


def _hit(event_id: str, when: str, host: str, cmdline: str) -> dict:
    return {
        "_id": event_id,
        "_index": "osquery-x",
        "_source": {
            "@timestamp": when,
            "host": {"name": host},
            "OsqueryFilter": {"parentname": "chrome.exe", "name": "cmd.exe", "cmdline": cmdline},
        },
    }


def _alert(use_case, hits):
    candidate = score_all([GroupCount("chrome.exe", "cmd.exe", "A", len(hits), len(hits), None)])[
        ("chrome.exe", "cmd.exe")
    ]
    return build_alert(
        use_case,
        candidate,
        hits,
        event_time=lambda hit: text_at(hit["_source"], "@timestamp"),
        host_of=lambda hit: text_at(hit["_source"], "host.name"),
    )


def test_repeats_roll_up_into_one_alert(tmp_path):
    hits = [
        _hit("e1", "2024-01-01T10:00:00.000Z", "WS-2", "cmd /c a"),
        _hit("e2", "2024-01-01T11:00:00.000Z", "WS-1", "cmd /c b"),
        _hit("e3", "2024-01-01T12:00:00.000Z", "WS-2", "cmd /c c"),
    ]
    alert = _alert(_use_case(tmp_path), hits)
    assert alert.event_ids == ["e1", "e2", "e3"]
    assert alert.document_id == "e1"
    assert alert.hosts == ("WS-1", "WS-2")
    assert (alert.first_time, alert.last_time) == ("2024-01-01T10:00:00.000Z", "2024-01-01T12:00:00.000Z")
    assert alert.summary.startswith(
        "chrome.exe started cmd.exe: chrome.exe → cmd.exe: a shell started by a browser"
    )


def test_one_whitelist_line_suppresses_a_benign_look_alike(tmp_path):
    """Acrobat's Chrome native-messaging host, as recorded on a real workstation: one regex line."""
    acrobat = (
        'C:\\WINDOWS\\system32\\cmd.exe /d /c "C:\\Program Files (x86)\\Adobe\\Acrobat DC\\Acrobat\\Browser\\'
        'WCChromeExtn\\WCChromeNativeMessagingHost.exe" chrome-extension://efaidnbmnnnibpcajpcglclefindmkaj/'
    )
    hits = [
        _hit("a1", "2024-01-01T10:00:00.000Z", "WS-1", acrobat),
        _hit("a2", "2024-01-01T10:05:00.000Z", "WS-1", acrobat),
    ]
    assert _alert(_use_case(tmp_path), hits) is not None
    listed = _use_case(
        tmp_path, "[whitelist_regexps]\nacrobat_native_messaging=.*WCChromeNativeMessagingHost\\.exe.*\n"
    )
    assert listed.whitelist != Whitelist()
    assert _alert(listed, hits) is None
    # an attacker's cmd.exe under chrome.exe is still reported, with the look-alike left out
    mixed = _alert(listed, [*hits, _hit("x1", "2024-01-01T11:00:00.000Z", "WS-1", "cmd /c whoami")])
    assert mixed.event_ids == ["x1"]
    assert mixed.whitelisted_events == 2


def test_texts_follow_each_event_when_the_summary_names_an_event_field(tmp_path):
    """A summary with an event placeholder is filled per event, so a whitelist on it drops only that event."""
    use_case = _use_case(
        tmp_path,
        "outlier_summary={aggregator} ran {OsqueryFilter.cmdline}\n"
        "[whitelist_regexps]\nbenign=^chrome.exe ran cmd /c benign$\n",
    )
    hits = [
        _hit("e1", "2024-01-01T10:00:00.000Z", "WS-1", "cmd /c benign"),
        _hit("e2", "2024-01-01T11:00:00.000Z", "WS-1", "cmd /c whoami"),
        _hit("e3", "2024-01-01T12:00:00.000Z", "WS-1", "cmd /c benign"),
    ]
    alert = _alert(use_case, hits)
    assert alert.event_ids == ["e2"]
    assert alert.whitelisted_events == 2
    assert alert.summary == "chrome.exe ran cmd /c whoami"


def test_groups_fold_per_stored_pair_in_order_with_their_hosts_and_earliest_event():
    folded = tally_groups(
        [
            GroupCount("WINWORD.EXE", "cmd.exe", "A", 2, 1, 500),
            GroupCount("WINWORD.EXE", "cmd.exe", None, 1, 0, 300),
            GroupCount("WINWORD.EXE", "cmd.exe", "B", 3, 3, None),
            GroupCount("explorer.exe", "chrome.exe", "A", 5, 0, None),
        ]
    )
    assert folded == [
        PairTally("WINWORD.EXE", "cmd.exe", 6, 4, 300, frozenset({"A", "B"})),
        PairTally("explorer.exe", "chrome.exe", 5, 0, None, frozenset({"A"})),
    ]
    # Folded to lower-case names: counts, the events before the range, first event, hosts, raw names.
    folded_population = Population.from_tallies(folded, (), KNOWLEDGE)
    word = folded_population.pairs[("winword.exe", "cmd.exe")]
    assert (word.count, word.in_range, word.before, word.first_ms, word.hosts) == (6, 4, 2, 300, {"A", "B"})
    assert word.raw == {("WINWORD.EXE", "cmd.exe")}
    assert folded_population.hosts == frozenset({"A", "B"}) and folded_population.events == 11
    assert folded_population.parent_counts == {"winword.exe": 6, "explorer.exe": 5}
