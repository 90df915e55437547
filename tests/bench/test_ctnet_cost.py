"""bench/ctnet_cost.py: the ratio of the medians of alternating runs, every pair beside it, where the time
goes, and a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


def test_cost_table_gives_the_ratio_of_the_medians_and_the_range_of_the_pairs() -> None:
    cost = load_bench("ctnet_cost")
    lines, summary = cost.cost_table({"dssm_single": [30.0, 40.0, 32.0], "ctnet": [33.0, 36.0, 48.0]})
    assert summary["dssm_single_median"] == 32.0 and summary["ctnet_median"] == 36.0
    assert summary["ratio_of_medians"] == pytest.approx(36.0 / 32.0)
    assert lines[2] == "| 1 | 30.0 | 33.0 | 1.10× |"
    assert lines[-1] == "| median | 32.0 | 36.0 | **1.12×** (pairs 0.90-1.50×) |"


def test_cost_refuses_no_repeats() -> None:
    cost = load_bench("ctnet_cost")
    with pytest.raises(SystemExit):
        cost.main(["--repeats", "0", "--data-dir", "/nonexistent"])


def test_breakdown_puts_the_source_under_its_scenario_and_totals_every_model() -> None:
    """Per scenario each row's model: seconds (steps, held-out scoring seconds), and the ratio of seconds."""
    cost = load_bench("ctnet_cost")
    rep = {"dssm_single": {"1": {"seconds": 20.0, "steps": 400, "validation_seconds": 2.0},
                           "4": {"seconds": 5.0, "steps": 100, "validation_seconds": 1.0}},
           "ctnet": {"source_scenario": "1", "targets": ["4"], "source": {"seconds": 20.0, "steps": 400,
                                                                          "validation_seconds": 2.0},
                     "4": {"seconds": 8.0, "steps": 80}}}
    split = cost.by_scenario(rep)
    assert split["ctnet"]["4"] == {"seconds": 8.0, "steps": 80.0, "validation_seconds": 0.0}
    lines = cost.breakdown_table(split)
    assert lines[2] == "| 1 | 20.0 (400, 2.0) | 20.0 (400, 2.0) | 1.00× |"
    assert lines[3] == "| 4 | 5.0 (100, 1.0) | 8.0 (80, 0.0) | 1.60× |"
    assert lines[-1] == "| all models | 25.0 (500, 3.0) | 28.0 (480, 2.0) | 1.12× |"


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "ctnet_cost"
    assert load_bench("ctnet_cost").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--day", str(tiny_end), "--train-days", "3",
        "--repeats", "2", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert [len(payload["seconds"][r]) for r in ("dssm_single", "ctnet")] == [2, 2]
    assert payload["ratio_of_medians"] > 0
    assert set(payload["by_scenario"]) == {"dssm_single", "ctnet"}
    # ctnet's source stands under its scenario: both rows cover the same scenarios
    assert set(payload["by_scenario"]["ctnet"]) == set(payload["by_scenario"]["dssm_single"])
    assert "| all models |" in out.with_suffix(".md").read_text()
