"""bench/stream_quality.py: the daily rows trained with the in-memory and the streamed input, compared on the same
pairs; a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "stream_quality"
    assert load_bench("stream_quality").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--end-date", str(tiny_end),
        "--train-days", "3", "--test-days", "2", "--n-boot", "200", "--set", "train.shuffle_buffer=256",
        "--set", "finetune.epochs=1", "--set", "pretrain.epochs=1",
        "--control", "--seeds", "0", "1", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["rows"] == ["sass", "dssm_mixed"]                 # the candidate and publish.challenger
    assert set(payload["results"]) == {"memory", "stream", "stream_reshuffled"}
    assert set(payload["reshuffle_control"]) == {"sass", "dssm_mixed"}
    assert payload["shuffle_buffer"] == 256
    shards = json.loads((tmp_path / "work" / "shards" / "meta.json").read_text())   # the stream read the shards
    assert shards["scenarios"] == ["s0", "s1", "s2"] and shards["seed"] == 2   # the control's of seed 1, written last
    assert payload["seeds"] == [0, 1] and all(len(payload["results"][m]) == 2 for m in payload["results"])
    assert 0 < payload["positive_bytes"]["stream"] < payload["positive_bytes"]["memory"]   # the held-out day only
    for row in payload["rows"]:
        ci = payload["significance"][row]["macro"]
        assert ci["lo"] <= ci["diff"] <= ci["hi"]
        for mode in ("memory", "stream"):
            assert all(0 < x[row]["macro"]["ndcg@50"] <= 1 for x in payload["results"][mode])
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Streamed vs in-memory training input on the synthetic default")
    assert "| sass |" in md and "| dssm_mixed |" in md and "Reshuffle control" in md and "seeds [0, 1]" in md
    assert "- command: `python bench/stream_quality.py --source synthetic" in md
