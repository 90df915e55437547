"""bench/multitask.py: the per-scenario controllability (a scenario's own direction, whatever the macro says),
the weightings, and a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import load_bench


def test_each_scenario_gets_its_own_spearman_along_the_grid() -> None:
    multitask = load_bench("multitask")
    grid = multitask.GRID

    # click NDCG rises with the click weight on tab "1" and falls on tab "6"; long_view is only reported on "1"
    def point(i: int) -> dict:
        a = grid[i]
        return {"click": {"1": 0.2 - 0.1 * a, "6": 0.3 + 0.2 * a}, "long_view": {"1": 0.1 + 0.05 * a}}

    per_seed = [{"grids_per_scenario": {"long_view": [point(i) for i in range(len(grid))]}}] * 2
    sets = {"click": SimpleNamespace(scenarios=["1", "6"]), "long_view": SimpleNamespace(scenarios=["1"])}
    own = {"click": [1 - a for a in grid], "long_view": list(grid)}
    rho = multitask.grid_spearman_per_scenario(per_seed, "long_view", own, sets)
    assert rho == {"click": {"1": 1.0, "6": -1.0}, "long_view": {"1": 1.0}}


def test_weightings_are_each_objective_alone_and_the_params_mix_without_its_zeros() -> None:
    from sass_retrieval.config import load_params

    multitask = load_bench("multitask")
    params = load_params(multitask.ROOT / "params.yaml").override(
        {"multitask.weights": {"click": 1.0, "long_view": 0.5, "like": 0.0}})
    w = multitask.weightings(params)
    assert w["default mix"] == {"click": 1.0, "long_view": 0.5}
    assert w["like only"] == {"like": 1.0} and len(w) == 4


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "multitask"
    assert load_bench("multitask").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--end-date", str(tiny_end),
        "--train-days", "3", "--test-days", "2", "--seeds", "0", "--min-pairs", "10", "--n-boot", "50",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert "click" in payload["objectives"]
    rows = set(payload["rows"])
    assert {"sass[click]", "sass[long_view]", "sass[like]", "sass_mt (default mix)"} <= rows
    assert len(payload["grids"]["weight"]) == len(payload["grids"]["long_view"]["click"]) == 11
    assert (out.parent / "multitask_grid.png").exists()
    assert "sass_mt" in out.with_suffix(".md").read_text()
