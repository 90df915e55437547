"""Test helpers shared across test modules (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sass_retrieval.data.features import pretrain_pairs, scenario_map, split_scenario
from sass_retrieval.data.store import read_interactions, read_items, read_users

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kuairand_pure"
TINY_SCENARIOS = ["s0", "s1", "s2"]


def kuairand_available() -> bool:
    return (SHARED / "user_features_pure.csv").exists()


needs_kuairand = pytest.mark.skipif(not kuairand_available(),
                                    reason=f"KuaiRand-Pure data not found at {SHARED} (../shared is absent)")


def write_features(store: Path, out: Path, window, names: list[str], seq_len: int = 5) -> None:
    """What the split stage writes, for tests that need a features folder without the CLI."""
    train = read_interactions(store, window.train_start, window.train_end)
    smap = scenario_map(train["scenario"].value_counts(), names, 1)
    train["scenario"] = smap.apply(train["scenario"])
    users, items = read_users(store), read_items(store)
    meta = {"scenarios": smap.names, "reported": list(smap.reported), "train_dates": window.train_dates,
            "test_dates": window.test_dates, "seq_len": seq_len, "mapping": smap.mapping}
    for s in smap.names:
        f = split_scenario(train[train["scenario"] == s], users, items, window.train_dates, seq_len)
        (out / s).mkdir(parents=True, exist_ok=True)
        for key in ("users", "items", "item_daily", "positives", "exposure_dist"):
            getattr(f, key).to_parquet(out / s / f"{key}.parquet", index=False)
        (out / s / "meta.json").write_text(json.dumps(meta))
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    pretrain_pairs(train, "user_id").to_parquet(out / "pairs" / "users.parquet", index=False)
    pretrain_pairs(train, "video_id").to_parquet(out / "pairs" / "items.parquet", index=False)
