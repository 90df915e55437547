"""bench/multitask.py's per-scenario controllability: a scenario's own direction, whatever the macro says."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from multitask import GRID, grid_spearman_per_scenario  # noqa: E402


def test_each_scenario_gets_its_own_spearman_along_the_grid() -> None:
    # click NDCG rises with the click weight on tab "1" and falls on tab "6"; long_view is only reported on "1"
    def point(i: int) -> dict:
        a = GRID[i]
        return {"click": {"1": 0.2 - 0.1 * a, "6": 0.3 + 0.2 * a}, "long_view": {"1": 0.1 + 0.05 * a}}

    per_seed = [{"grids_per_scenario": {"long_view": [point(i) for i in range(len(GRID))]}}] * 2
    sets = {"click": SimpleNamespace(scenarios=["1", "6"]), "long_view": SimpleNamespace(scenarios=["1"])}
    own = {"click": [1 - a for a in GRID], "long_view": list(GRID)}
    rho = grid_spearman_per_scenario(per_seed, "long_view", own, sets)
    assert rho == {"click": {"1": 1.0, "6": -1.0}, "long_view": {"1": 1.0}}
