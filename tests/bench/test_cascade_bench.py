"""bench/cascade.py: each daily row in retrieval order, rescored by its pre-ranker (trained on candidates and on
exposures), and distilled from it, on the same pairs; a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path) -> None:
    out = tmp_path / "results" / "cascade"
    assert load_bench("cascade").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--n-boot", "200", "--seeds", "0",
        "--chain-users", "20", "--set", "finetune.epochs=1", "--set", "finetune.max_steps_per_epoch=5",
        "--set", "rank.epochs=1", "--set", "rank.feature_sets=[[user_tag_ctr, retrieval_score]]",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    rows = payload["rows"]
    assert rows == ["sass", "dssm_mixed"]
    variants = {f"{r}+{v}" for r in rows for v in ("rank", "rank_exposures", "distill")}
    assert set(payload["significance"]) == variants
    for name in variants:
        ci = payload["significance"][name]["ndcg@50"]["macro"]
        assert ci["lo"] <= ci["diff"] <= ci["hi"]
    seed = payload["per_seed"][0]
    for row in rows:
        assert set(seed["rank"][row]) == {"candidates", "exposures"}
        assert seed["rank"][row]["candidates"]["names"] == ["user_tag_ctr", "retrieval_score"]
        for s, chain in seed["chain"][row].items():
            assert 0.0 <= chain["before"] <= 1.0 and 0.0 <= chain["after"] <= 1.0, s
        assert set(seed["gauc"][row]) == {"candidates", "exposures"}
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Retrieval + pre-ranker (the cascade) on the synthetic default")
    assert "Chain consistency" in md and "| sass+rank |" in md and "| dssm_mixed+distill |" in md
