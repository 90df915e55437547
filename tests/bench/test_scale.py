"""bench/scale.py: it runs what the daily run runs (the candidate, the challenger, any stage dvc.yaml adds),
and a smoke run at a tiny row count: every stage, fine-tuning with 1 and 2 processes, the projection, an
incremental day and the same day retrained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import load_bench

ROOT = Path(__file__).resolve().parents[2]


def test_sizes_grow_users_and_items_and_keep_the_daily_rows() -> None:
    from sass_retrieval.config import load_params

    scale = load_bench("scale")
    params, users, items = scale.size_params(load_params(ROOT / "params.yaml"), 10_000_000, 2)
    assert (users, items) == (200_000, 50_000)
    assert params.data.synthetic.rows == 10_000_000 and params.data.synthetic.users == users
    assert params.evaluate.benchmark_rows == [] and params.train.threads == 2
    assert params.finetune.max_steps_per_epoch == 0
    capped, _, _ = scale.size_params(load_params(ROOT / "params.yaml"), 10_000_000, 2, train_steps=50)
    assert capped.finetune.max_steps_per_epoch == 50 and capped.pretrain.max_steps_per_epoch == 50


def test_projection_counts_the_workers_a_day_needs() -> None:
    scale = load_bench("scale")
    # 36M positives x 2 epochs in 60 min: 20,000/s; a 2-core worker at 3,000/s (2 processes) -> 7 workers
    p = scale.projection(36_000_000, 2, 3_000.0, cores_per_worker=2, budget_min=60)
    assert p["positives_per_s_needed"] == 20_000 and p["workers"] == 7
    assert scale.projection(1000, 1, 3_000.0, 2, 60)["workers"] == 1


def test_the_daily_stages_include_the_challenger_and_leave_out_only_the_untimed(tmp_path: Path, monkeypatch) -> None:
    """The regression: the daily run indexes its challenger, so the benchmark must train it."""
    scale = load_bench("scale")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    timed: list[str] = []
    monkeypatch.setattr(scale, "run_stage", lambda name, cmd, work, env, check=True:   # plan only
                        timed.append(name) or scale.StageTime(name, 0.0, 0.0))
    scale.daily(tmp_path, {}, ingest=True)
    groups = {name.split("@")[0] for name in timed}
    assert {"ingest", "pretrain", "finetune", "challenger", "index", "rank", "rerank", "evaluate", "publish"} <= groups
    assert groups.isdisjoint(scale.UNTIMED)
    assert timed.index("challenger") < min(i for i, n in enumerate(timed) if n.startswith("index@"))
    timed.clear()
    scale.daily(tmp_path, {}, ingest=False, data=False, publish=False)
    assert {n.split("@")[0] for n in timed} == {"pretrain", "finetune", "challenger", "index", "rank", "rerank", "evaluate"}
    # a stage that fails (out of memory at a large size) ends the day there, recorded with its error
    timed.clear()
    monkeypatch.setattr(scale, "run_stage", lambda name, cmd, work, env, check=True: timed.append(name) or
                        scale.StageTime(name, 1.0, 2.0, "exit 137" if name == "validate" else ""))
    day = scale.daily(tmp_path, {}, ingest=True)
    assert [x.stage for x in day] == ["ingest", "validate"] and day[-1].error == "exit 137"
    timed.clear()
    scale.daily(tmp_path, {}, ingest=False, data=False, publish=False)
    assert {n.split("@")[0] for n in timed} == {"pretrain", "finetune", "challenger", "index", "rank", "rerank", "evaluate"}


@pytest.mark.slow
def test_smoke_run_at_a_tiny_row_count(tmp_path: Path, tiny_params_file: Path) -> None:
    out = tmp_path / "results" / "scale"
    assert load_bench("scale").main(["--rows", "20000", "--threads", "1", "--params", str(tiny_params_file),
                                     "--train-steps", "3", "--next-day",
                                     "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    (r,) = json.loads(out.with_suffix(".json").read_text())["results"]
    assert [(x["procs"], x["threads"]) for x in r["rates"]] == [(1, 1), (1, 2), (2, 2)]
    assert all(x["positives_per_s"] > 0 for x in r["rates"]) and r["rates"][2]["steps_per_rank"] <= 2
    assert r["rates"][0]["steps_per_rank"] <= 3 and r["projection"]["workers"] >= 1
    assert r["data_path"]["seconds"] > 0
    challenger = yaml.safe_load(tiny_params_file.read_text())["publish"]["challenger"]
    for day in ("full", "incremental", "next_day_full"):
        assert "challenger" in {s["stage"] for s in r[day]}, day
    for day in ("day1_full", "day2_incremental", "day2_full"):
        assert {"popular", "sass", challenger} <= set(r["ndcg50"][day]), day
    assert r["train_full_s"] > 0 and r["train_incr_s"] > 0
    assert "| 20,000 |" in out.with_suffix(".md").read_text()
