"""bench/rerank.py: the generator against retrieval order, the rule pipeline and per-w generators; a smoke run on
the tiny synthetic project (one seed, short training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "rerank"
    assert load_bench("rerank").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--end-date", str(tiny_end),
        "--train-days", "4", "--test-days", "2", "--n-boot", "200", "--seeds", "0",
        "--set", "finetune.epochs=1", "--set", "finetune.max_steps_per_epoch=5", "--set", "rerank.epochs=1",
        "--set", "rank.epochs=1", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    summary = payload["summary"]
    assert payload["seeds"] == [0]
    assert set(summary["control"]) == {"click", "like", "diversity", "cold_start"}
    for c in summary["control"].values():
        assert len(c["utility"]) == 11 and all(-1.0 <= r <= 1.0 for r in c["spearman"])
    share = summary["better_minus_half"]["macro"]
    assert share["lo"] <= share["diff"] <= share["hi"]
    assert set(summary["per_w_delta"]) == {"default", "click+diversity", "cold-heavy"}
    assert len(summary["pareto"]["rules"]) == len(summary["pareto"]["dominance"]) == 12
    assert all(0.0 <= p["diversity"] <= 1.0 for p in summary["pareto"]["generator"])
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Controllable multi-objective re-ranking on the synthetic default")
    assert "**Controllability**" in md and "**Better share**" in md and "dominated" in md
    assert (tmp_path / "results" / "rerank_pareto.png").stat().st_size > 10_000
