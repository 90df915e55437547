"""Test helpers shared across test modules (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT_DIR = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kuairand_pure"
TINY_SCENARIOS = ["s0", "s1", "s2"]


def kuairand_available() -> bool:
    return (SHARED / "user_features_pure.csv").exists()


needs_kuairand = pytest.mark.skipif(not kuairand_available(),
                                    reason=f"KuaiRand-Pure data not found at {SHARED} (../shared is absent)")


def write_features(store: Path, out: Path, window, names: list[str], seq_len: int = 5) -> None:
    """What the split stage writes, for tests that need a features folder without the CLI."""
    from sass_retrieval.experiment import load_window, write_split

    smap, train, _ = load_window(store, window, names, 1)
    write_split(store, out, window, smap, train, seq_len)


# The tiny project's knobs. Every other key takes its value from the shipped params.yaml, so the tiny
# params are complete (they validate against sass_retrieval.params_schema) and follow new keys.
TINY_OVERRIDES = {
    "data": {"source": "synthetic", "kuairand_dir": "../shared/data/kuairand_pure", "store_dir": "data/store",
             "synthetic": {"seed": 5, "users": 300, "items": 150, "scenarios": ["s0", "s1", "s2"], "days": 5,
                           "rows": 8000, "start_date": 20220425}},
    "window": {"end_date": "auto", "test_days": 2, "train_days": 3},
    "scenarios": {"names": ["s0", "s1", "s2"], "min_scenario_rows": 100},
    "validation": {"min_rows_per_day": 100, "max_unknown_id_rate": 0.01, "max_duplicate_rate": 0.05,
                   "min_day_ratio": 0.2},
    "features": {"seq_len": 5},
    "model": {"emb_dim": 8, "field_dim": 4, "hidden": 16, "layers": 2, "gate": "adaptive", "bias_net": True,
              "user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97},
    "pretrain": {"enabled": True, "epochs": 1, "batch_size": 128, "lr": 0.01, "emb_lr": 0.01, "temperature": 0.1, "id_dropout": 0.5},
    "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "emb_lr": 0.01, "negatives": 32, "alpha": 1.0, "logq": True,
                 "temperature": 0.05, "aux_weight": 0.3, "early_stopping": True, "patience": 1, "refit": True},
    "train": {"mode": "full", "incremental_epochs": 1, "seed": 0, "threads": 1, "checkpoint_every": 0,
              "checkpoint_seconds": 0},
    "index": {"kind": "flat"},
    "rank": {"epochs": 2, "batch_size": 256},
    "rerank": {"epochs": 2, "batch_size": 64, "train_requests": 2000},
    "evaluate": {"ks": [20, 50, 100], "rows": ["popular", "dssm_mixed", "sass"], "benchmark_rows": []},
    "publish": {"tolerance": 0.005, "dir": "published"},
}


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied key by key (nested mappings merge, other values replace)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


TINY_PARAMS = merged(yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text()),
                     TINY_OVERRIDES)


def tiny_params(overrides: dict | None = None):
    """The tiny params with nested ``overrides`` merged in, as the validated ``Params`` the library reads."""
    from sass_retrieval.params_schema import validate_params

    return validate_params(merged(TINY_PARAMS, overrides or {}), source="tiny params")


def write_project(root: Path, **overrides) -> Path:
    params = yaml.safe_load(yaml.safe_dump(TINY_PARAMS))
    for dotted, value in overrides.items():
        node = params
        *head, last = dotted.split("__")
        for h in head:
            node = node[h]
        node[last] = value
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def copy_project(dst: Path) -> Path:
    """The project's files as in the work tree, in a fresh git repository with one commit: the quick start
    benchmark's copy (bench/quickstart.py), so tests and benchmarks run the same project."""
    return load_bench("quickstart").copy_project(dst)


@contextmanager
def cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_pipeline(root: Path) -> None:
    """Every stage in order, in-process, as dvc.yaml declares them."""
    from pipelines import evaluate, index, ingest, pretrain, rank, rerank, shards, split, train, validate

    with cwd(root):
        assert ingest.main([]) == 0
        assert validate.main([]) == 0
        for s in ("s0", "s1", "s2"):
            assert split.main(["--scenario", s]) == 0
        assert split.main(["--pairs"]) == 0
        assert shards.main([]) == 0
        assert pretrain.main(["--no-progress"]) == 0
        assert train.main(["--row", "sass", "--no-progress"]) == 0
        assert train.main(["--row", "dssm_mixed", "--no-progress"]) == 0
        for s in ("s0", "s1", "s2"):
            assert index.main(["--scenario", s]) == 0
        assert rank.main([]) == 0
        assert rerank.main([]) == 0
        assert evaluate.main([]) == 0


def load_bench(script: str):
    """A script of bench/ (not a package), imported as it runs: with bench/ on sys.path for its siblings."""
    return _load_script("bench", script)


def load_script(script: str):
    """A script of scripts/ (not a package), imported as it runs."""
    return _load_script("scripts", script)


def _load_script(folder: str, script: str):
    import importlib.util
    import sys

    where = Path(__file__).resolve().parents[1] / folder
    name = f"{folder}_{script}_under_test"
    if name not in sys.modules:
        if str(where) not in sys.path:
            sys.path.insert(0, str(where))
        spec = importlib.util.spec_from_file_location(name, where / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


def warm_user(project: dict, scenario: str = "s0") -> int:
    """A user with behaviour in ``scenario`` of a served test project (the model, not the popular list, answers)."""
    import pandas as pd

    users = pd.read_parquet(project["features"] / scenario / "users.parquet")
    return int(users.loc[users["exp_count"] > 0, "user_id"].iloc[0])


# The Airflow tests' project: the whole pipeline in a minute or two on 2 CPU cores.
AIRFLOW_TINY = {
    "data.synthetic.users": 300, "data.synthetic.items": 200, "data.synthetic.rows": 6000,
    "data.synthetic.days": 6,                       # 20220425 .. 20220430
    "window.train_days": 3, "window.test_days": 2,
    "scenarios.min_scenario_rows": 50, "validation.min_rows_per_day": 10,
    "model.emb_dim": 16, "model.hidden": 32, "model.user_buckets": 1009, "model.video_buckets": 1009,
    "model.field_buckets": 101,
    "pretrain.epochs": 1, "pretrain.batch_size": 128, "pretrain.max_steps_per_epoch": 15,
    "finetune.epochs": 1, "finetune.batch_size": 128, "finetune.negatives": 32, "finetune.max_steps_per_epoch": 15,
    "finetune.early_stopping": False, "finetune.refit": False,
    "train.threads": 1,
    "evaluate.benchmark_rows": [],                  # a production day: no reference rows (the demo lists dssm_single)
}


def tiny_airflow_project(dst: Path, *, commit: bool = False, overrides: dict | None = None) -> Path:
    """:func:`copy_project` with a tiny params.yaml (``commit``: committed too, for task workspaces to check out)."""
    from sass_retrieval.config import update_params_file

    copy_project(dst)
    update_params_file(dst / "params.yaml", {**AIRFLOW_TINY, **(overrides or {})})
    if commit:
        subprocess.run(["git", "-c", "user.name=sass-tests", "-c", "user.email=tests@localhost", "commit", "-q",
                        "-am", "tiny params"], cwd=dst, check=True)
    return dst


def dvc_object_key(md5: str) -> str:
    """The S3 key where the cluster's DVC remote (DVC 3) keeps an object (a folder's listing ends in .dir)."""
    from sass_retrieval.cluster.s3_server import REMOTE_URL

    prefix = REMOTE_URL.split("/", 3)[3]
    return f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"
