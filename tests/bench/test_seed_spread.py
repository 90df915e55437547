"""bench/seed_spread.py: a smoke run on the tiny synthetic project, two seeds, each a `dvc repro` in a fresh
copy of the project; the spread, its table and the expected-values file written from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import load_bench


def test_bad_overrides_stop_before_any_run(tmp_path: Path) -> None:
    from sass_retrieval.config import ConfigError

    with pytest.raises(ConfigError, match="finetune"):
        load_bench("seed_spread").main(["--set", "finetune.epochz=2", "--work", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_smoke_run_of_two_seeds_on_the_tiny_project(tmp_path: Path, tiny_params_file: Path) -> None:
    out, expected = tmp_path / "results" / "seed_spread", tmp_path / "expected.yaml"
    assert load_bench("seed_spread").main([
        "--seeds", "0", "1", "--params", str(tiny_params_file), "--work", str(tmp_path / "work"), "--out", str(out),
        "--write-expected", str(expected)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["seeds"] == [0, 1] and len(payload["per_seed"]) == 2
    rows = payload["rows"]
    assert {"popular", "dssm_mixed", "sass"} <= set(rows)
    assert rows["popular"]["ndcg@50"]["spread"] == 0.0            # popular does not depend on train.seed
    for row, by_metric in rows.items():
        for m, s in by_metric.items():
            assert s["min"] <= s["mean"] <= s["max"] and s["spread"] == pytest.approx(s["max"] - s["min"], abs=1e-5), (row, m)
    # each seed's run is a copy with the given params and its own train.seed
    for seed in (0, 1):
        params = yaml.safe_load((tmp_path / "work" / f"seed{seed}" / "params.yaml").read_text())
        assert params["train"]["seed"] == seed and params["model"]["hidden"] == 16     # the tiny model
    written = yaml.safe_load(expected.read_text())
    qs = load_bench("quickstart")
    assert all(qs.compare(h, written["rows"]) == [] for h in payload["per_seed"])
    assert "| popular | macro NDCG@50 |" in out.with_suffix(".md").read_text()
