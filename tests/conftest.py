"""Shared fixtures: a tiny synthetic project (store + split features) built once per session."""

from __future__ import annotations

import pytest
from support import TINY_SCENARIOS, run_pipeline, tiny_params, write_features, write_project

from sass_retrieval.config import make_window
from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.data.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    cfg = SyntheticConfig(seed=3, users=300, items=150, scenarios=tuple(TINY_SCENARIOS), days=5, rows=8_000,
                          chunk_rows=4_000, start_date=20220425)
    generate(root / "store", cfg, progress=False)
    window = make_window(cfg.dates[-1], train_days=3, test_days=2)
    write_features(root / "store", root / "features", window, TINY_SCENARIOS)
    return {"root": root, "store": root / "store", "features": root / "features", "window": window,
            "scenarios": TINY_SCENARIOS}


@pytest.fixture(scope="session")
def tiny_bank(tiny_project: dict):
    from sass_retrieval.models.bank import load_bank
    from sass_retrieval.train.recipes import model_config

    cfg = model_config(tiny_params({"model": {"user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97,
                                              "hidden": 16, "emb_dim": 8, "field_dim": 4}}), TINY_SCENARIOS)
    bank = load_bank(tiny_project["features"], read_users(tiny_project["store"]), read_items(tiny_project["store"]), cfg)
    return bank, cfg



@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory):
    """A tiny project folder after every stage up to evaluate; tests copy it before changing it."""
    root = write_project(tmp_path_factory.mktemp("built") / "project")
    run_pipeline(root)
    return root
