"""bench/towers.py: dssm_mixed and its recipe with the senet, dat and parallel towers, compared on the same pairs;
a smoke run on the tiny synthetic project (one seed, capped steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "towers"
    assert load_bench("towers").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--end-date", str(tiny_end),
        "--train-days", "3", "--test-days", "2", "--n-boot", "200", "--seeds", "0",
        "--set", "finetune.epochs=1", "--set", "finetune.max_steps_per_epoch=5",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    rows = ["dssm_mixed", "dssm_mixed@senet", "dssm_mixed@dat", "dssm_mixed@parallel"]
    assert payload["rows"] == rows and payload["seeds"] == [0]
    assert payload["arch"] == {"dssm_mixed": "dssm", "dssm_mixed@senet": "senet", "dssm_mixed@dat": "dat",
                               "dssm_mixed@parallel": "parallel"}
    assert set(payload["significance"]) == set(rows[1:])
    for row in rows[1:]:
        for metric in ("ndcg@50", "hit_rate@50"):
            ci = payload["significance"][row][metric]["macro"]
            assert ci["lo"] <= ci["diff"] <= ci["hi"]
            assert set(payload["significance"][row][metric]) >= {"s0", "s1", "s2", "macro"}
    for row in rows:
        assert 0 < payload["aggregate"][row]["macro"]["ndcg@50"]["mean"] <= 1
        assert payload["train_seconds"][row] > 0
    fields = payload["senet_field_weights"]
    assert set(fields) == {"user", "item"} and "user_id" in fields["user"] and "video_id" in fields["item"]
    for side in fields.values():
        assert abs(sum(side.values()) - len(side)) < 1e-3   # a row's weights sum to its number of fields
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Two-tower variants (senet, dat, parallel) against dssm_mixed on the synthetic default")
    assert all(f"| {r} |" in md for r in rows) and "senet's learned field weights" in md
    assert "- command: `python bench/towers.py --source synthetic" in md
