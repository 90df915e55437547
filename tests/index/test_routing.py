"""Which index serves a scenario (sass_retrieval.index.routing), from the files a run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sass_retrieval.data.features import SkippedScenario
from sass_retrieval.index.routing import (
    IndexRoute,
    UnknownScenarioError,
    clear_skipped,
    mark_skipped,
    resolve_all,
    resolve_index,
)


def marker(served_by: str, scenario: str = "s2") -> SkippedScenario:
    return SkippedScenario(scenario=scenario, reason="3 training rows in the window, fewer than "
                           "scenarios.min_scenario_rows (100)", rows=3, min_scenario_rows=100, served_by=served_by)


def indexes(root: Path, built: list[str], skipped: dict[str, str]) -> Path:
    """An indexes folder as the index stage leaves it: index.faiss per built scenario, markers for the rest."""
    for s in built:
        (root / s).mkdir(parents=True)
        (root / s / "index.faiss").write_bytes(b"faiss")
    for s, by in skipped.items():
        mark_skipped(root / s, marker(by, s))
    return root


def test_a_trained_scenario_is_served_by_its_own_index(tmp_path: Path) -> None:
    root = indexes(tmp_path, ["s0", "other"], {"s2": "other"})
    route = resolve_index(root, "s0")
    assert route == IndexRoute("s0", "s0", root / "s0" / "index.faiss") and not route.fallback


def test_a_skipped_scenario_is_served_by_the_index_its_marker_names(tmp_path: Path) -> None:
    with_other = indexes(tmp_path / "a", ["s0", "s1", "other"], {"s2": "other"})
    route = resolve_index(with_other, "s2")
    assert route.fallback and route.scenario == "other" and route.index == with_other / "other" / "index.faiss"
    assert route.skipped == marker("other")
    without_other = indexes(tmp_path / "b", ["s0", "s1"], {"s2": "s0"})   # the largest trained scenario
    assert resolve_index(without_other, "s2").index == without_other / "s0" / "index.faiss"


def test_the_marker_wins_over_a_stale_index_and_stages_clean_up(tmp_path: Path) -> None:
    root = indexes(tmp_path, ["s0", "s2"], {})
    (root / "s2" / "build.json").write_text("{}")
    mark_skipped(root / "s2", marker("s0"))            # today s2 is skipped: yesterday's index goes
    assert sorted(p.name for p in (root / "s2").iterdir()) == ["skipped.json"]
    (root / "s2" / "index.faiss").write_bytes(b"stale")  # even if one were left beside the marker
    assert resolve_index(root, "s2").scenario == "s0"
    clear_skipped(root / "s2")                         # a later day builds s2 again
    assert resolve_index(root, "s2").scenario == "s2"


def test_unknown_scenarios_and_missing_fallback_indexes_raise(tmp_path: Path) -> None:
    root = indexes(tmp_path, ["s0"], {"s2": "other"})
    with pytest.raises(UnknownScenarioError, match="known: \\['s0', 's2'\\]"):
        resolve_index(root, "nope")
    for outside in ("..", "../p", "s0/../s0", ".hidden"):
        with pytest.raises(UnknownScenarioError):
            resolve_index(root, outside)
    with pytest.raises(FileNotFoundError, match="serving skipped scenario 's2'"):
        resolve_index(root, "s2")                      # 'other' was never built here


def test_resolve_all_routes_every_scenario_folder(tmp_path: Path) -> None:
    root = indexes(tmp_path, ["s0", "other"], {"s2": "other"})
    (root / ".s1.tmp").mkdir()                          # a half-written folder is not a scenario
    assert {s: r.scenario for s, r in resolve_all(root).items()} == {"other": "other", "s0": "s0", "s2": "other"}
