"""bench/speed.py: which tower each timed row trains, the benchmark's params, and a smoke run of every stage
and the throughput on the tiny synthetic project."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from support import load_bench

ROOT = Path(__file__).resolve().parents[2]


def _params(**knobs):
    from sass_retrieval.config import load_params

    return load_params(ROOT / "params.yaml").override(knobs)


def test_rows_name_their_tower() -> None:
    speed = load_bench("speed")
    assert speed.row_arch("dssm_mixed", _params()) == "dssm"
    assert speed.row_arch("sass", _params(**{"model.arch": "sass"})) == "sass"
    assert speed.row_arch("sass@star", _params(**{"model.arch": "sass"})) == "star"
    assert speed.row_arch("sass", _params(**{"model.arch": "star"})) == "star"


def test_kuairand_settings_come_first_and_set_overrides_last(tmp_path: Path) -> None:
    speed = load_bench("speed")
    args = argparse.Namespace(params=str(ROOT / "params.yaml"), source="kuairand", data_dir=str(tmp_path),
                              scenarios=None, threads=None, set=["window.train_days=2", "finetune.epochs=1"])
    params = speed.speed_params(args)
    assert params.data.source == "kuairand" and params.window.end_date == 20220505
    assert params.scenarios.names == ["1", "0", "4", "6", "2", "other"]
    assert params.window.train_days == 2 and params.finetune.epochs == 1       # --set wins
    assert params.evaluate.benchmark_rows == [] and args.threads == params.train.threads


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path) -> None:
    """Every dvc.yaml stage as its own process, a first and an incremental day, then the throughput of our rows
    and of the torch-rechub peer (the [bench] extra)."""
    pytest.importorskip("torch_rechub", reason="torch-rechub is not installed (pip install -e '.[bench]')")
    out = tmp_path / "results" / "speed"
    assert load_bench("speed").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--steps", "2", "--repeats", "1",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    stages = [s["stage"] for s in payload["stages"]]
    assert {"ingest", "pretrain", "finetune", "challenger", "evaluate", "publish"} <= set(stages)
    assert [s["stage"] for s in payload["incremental_stages"]] == stages
    assert all(s["seconds"] > 0 for s in payload["stages"])
    rates = {(t["model"], t["stage"]): t["samples_per_s"] for t in payload["throughput"] if "model" in t}
    assert set(rates) == {("dssm_mixed", "fine-tuning"), ("sass", "fine-tuning"), ("sass", "pretraining"),
                          ("torch-rechub DSSM", "fine-tuning (rows incl. negatives)"),
                          ("torch-rechub DSSM", "fine-tuning (positives)")}
    assert all(r > 0 for r in rates.values())
    assert out.with_suffix(".md").read_text().startswith("# Speed on the synthetic generator")
