"""bench/peer_rechub.py: torch-rechub's DSSM trains on a tiny synthetic store and serves valid lists."""

from __future__ import annotations

import numpy as np
import pytest
from support import load_bench

from sass_retrieval.data.features import scenario_map
from sass_retrieval.data.store import read_interactions, read_items, read_users
from sass_retrieval.data.synthetic import SyntheticConfig, generate
from sass_retrieval.evaluate.protocol import build_eval_set, evaluate

pytest.importorskip("torch_rechub", reason="torch-rechub is not installed (pip install -e '.[bench]')")

SCENARIOS = ["s0", "s1", "s2"]


def _load_peer():
    return load_bench("peer_rechub")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = tmp_path_factory.mktemp("rechub") / "store"
    cfg = SyntheticConfig(seed=5, users=200, items=120, scenarios=tuple(SCENARIOS), days=4, rows=5_000,
                          chunk_rows=2_000, start_date=20220425)
    generate(store, cfg, progress=False)
    dates = cfg.dates
    train = read_interactions(store, dates[0], dates[-2])
    test = read_interactions(store, dates[-1], dates[-1])
    smap = scenario_map(train["scenario"].value_counts(), SCENARIOS, 1)
    train["scenario"] = smap.apply(train["scenario"])
    test["scenario"] = smap.apply(test["scenario"])
    return {"train": train, "test": test, "users": read_users(store), "items": read_items(store),
            "names": smap.names}


@pytest.fixture(scope="module")
def trained(tiny: dict):
    peer = _load_peer()
    rec = peer.train_rechub_dssm(tiny["train"], tiny["users"], tiny["items"], tiny["names"], epochs=1,
                                 embed_dim=8, batch_size=256, seed=0, threads=1)
    return peer, rec


def _check_lists(out: np.ndarray, n: int, k: int, pool: np.ndarray) -> None:
    assert out.dtype == np.int64 and out.shape == (n, k)
    for row in out:
        valid = row >= 0
        # -1 padding only at the end, no duplicates, every id from the pool
        assert not (np.diff(valid.astype(int)) > 0).any()
        ids = row[valid]
        assert np.unique(ids).size == ids.size
        assert np.isin(ids, pool).all()
        assert ids.size == min(k, pool.size)
        assert (row[~valid] == -1).all()


def test_trains_one_epoch_and_serves_valid_top_items(tiny: dict, trained) -> None:
    _, rec = trained
    train = tiny["train"]
    users = np.unique(train["user_id"].to_numpy(np.int64))[:17]
    for s in SCENARIOS:
        pool = np.unique(train.loc[train["scenario"] == s, "video_id"].to_numpy(np.int64))
        for k in (5, pool.size + 7):  # shorter than the pool, and longer (padded)
            _check_lists(rec.top_items(s, users, k), users.size, k, pool)
    # unknown users and an unknown scenario do not crash
    _check_lists(rec.top_items(SCENARIOS[0], np.array([-5, 10**9]), 3), 2, 3, rec.pools[SCENARIOS[0]])
    assert (rec.top_items("nope", users, 4) == -1).all()
    assert rec.stats["epochs"] == 1 and rec.stats["samples_seen"] > 0
    assert rec.stats["samples_per_s"] > 0 and rec.stats["train_seconds"] > 0


def test_scored_through_the_protocol(tiny: dict, trained) -> None:
    _, rec = trained
    es = build_eval_set(tiny["train"], tiny["test"], SCENARIOS)
    res = evaluate(es, rec, ks=(5, 10))
    assert set(res["per_scenario"]) == set(SCENARIOS)
    assert 0.0 <= res["macro"]["ndcg@10"] <= 1.0


def test_deterministic_by_seed(tiny: dict, trained) -> None:
    peer, rec = trained
    again = peer.train_rechub_dssm(tiny["train"], tiny["users"], tiny["items"], tiny["names"], epochs=1,
                                   embed_dim=8, batch_size=256, seed=0, threads=1)
    users = np.unique(tiny["train"]["user_id"].to_numpy(np.int64))[:25]
    for s in SCENARIOS:
        assert np.array_equal(rec.top_items(s, users, 10), again.top_items(s, users, 10))
    assert peer.throughput(again) > 0


def test_rejects_unknown_negatives(tiny: dict) -> None:
    peer = _load_peer()
    with pytest.raises(ValueError, match="negatives"):
        peer.train_rechub_dssm(tiny["train"], tiny["users"], tiny["items"], tiny["names"], negatives="hard")
