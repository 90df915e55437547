"""The feature bank: a serving-only bank serves the same vectors as the full one, and can not train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from support import TINY_SCENARIOS, tiny_params

from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.models.bank import load_bank, recent_days
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.pretrain import pretrain
from sass_retrieval.train.recipes import finetune_job, loop_settings


def test_serving_only_bank_serves_the_same_batches(tiny_project, tiny_bank) -> None:
    full, cfg = tiny_bank
    lean = load_bank(tiny_project["features"], read_users(tiny_project["store"]), read_items(tiny_project["store"]),
                     cfg, serving_only=True)
    assert np.array_equal(lean.user_ids, full.user_ids) and np.array_equal(lean.item_ids, full.item_ids)
    for s in TINY_SCENARIOS:
        a, b = lean.per[s], full.per[s]
        assert np.array_equal(a.pool, b.pool) and np.array_equal(a.pos_user, b.pos_user)
        rows = np.arange(len(full.user_ids))
        for k, v in full.serving_user_batch(rows, s).items():
            assert torch.equal(v, lean.serving_user_batch(rows, s)[k]), k
        for k, v in full.serving_item_batch(b.pool, s).items():
            assert torch.equal(v, lean.serving_item_batch(a.pool, s)[k]), k
        assert np.array_equal(a.pos_item, b.pos_item) and np.array_equal(a.pos_day, b.pos_day)
        assert len(a.pos_seq) == 0 and a.item_daily.shape[0] == 0  # the training samples were not loaded
        assert len(a.mt_user) == len(a.mt_labels) == len(a.mt_seq) == 0
    assert lean.user_pairs is None


def test_training_on_a_serving_only_bank_is_refused(tiny_project, tiny_bank, tmp_path) -> None:
    _, cfg = tiny_bank
    lean = load_bank(tiny_project["features"], read_users(tiny_project["store"]), read_items(tiny_project["store"]),
                     cfg, serving_only=True)
    params = tiny_params({"finetune": {"epochs": 1, "early_stopping": False}, "train": {"checkpoint_every": 0}})
    with pytest.raises(ValueError, match="serving_only"):
        finetune(RetrievalModel(cfg), lean, finetune_job(params, 0, progress=False), tmp_path)
    with pytest.raises(ValueError, match="serving_only"):
        pretrain(RetrievalModel(cfg), lean, params.pretrain, loop_settings(params.pretrain, params.train, 0, False), tmp_path)


def test_histories_hashed_in_blocks_equal_hashing_at_once() -> None:
    from sass_retrieval.data.features import PAD
    from sass_retrieval.models.bank import hash_histories
    from sass_retrieval.models.hashing import hash_ids

    rng = np.random.default_rng(0)
    values = rng.integers(1, 10**9, size=(1001, 4))
    values[rng.random(values.shape) < 0.3] = PAD
    frame = pd.DataFrame(values, columns=list("abcd"))
    blocks = hash_histories(frame, list("abcd"), 100003, chunk=64)
    assert blocks.dtype == np.int32
    assert np.array_equal(blocks, hash_ids(values, "video_id", 100003, pad=PAD))
    order = rng.permutation(len(frame))    # rows in another order, as the bank puts the click rows first
    assert np.array_equal(hash_histories(frame, list("abcd"), 100003, chunk=64, rows=order), blocks[order])


def test_recent_days_are_the_newest_training_days() -> None:
    assert recent_days(5, 1) == {4}
    assert recent_days(5, 2) == {3, 4}
    assert recent_days(5, 0) == {0, 1, 2, 3, 4}
    assert recent_days(2, 9) == {0, 1}
    with pytest.raises(ValueError):
        recent_days(0, 1)


# ---- positives of every objective: pos_* stay the clicks, mt_* add the other objectives' rows


def _train_rows(tiny_project, s: str) -> pd.DataFrame:
    """The scenario's training rows from the store, in the split's order (user, time, video)."""
    from sass_retrieval.data.store import read_interactions

    w = tiny_project["window"]
    train = read_interactions(tiny_project["store"], w.train_start, w.train_end)
    train = train[train["scenario"] == s].sort_values(["user_id", "time_ms", "video_id"], kind="stable")
    return train.reset_index(drop=True)


def test_bank_click_positives_are_the_clicked_rows(tiny_project, tiny_bank) -> None:
    from sass_retrieval.data.features import sequence_matrix
    from sass_retrieval.models.bank import hash_histories
    from sass_retrieval.models.hashing import hash_ids

    bank, cfg = tiny_bank
    for s in TINY_SCENARIOS:
        a = bank.per[s]
        train = _train_rows(tiny_project, s)
        clicks = train[train["is_click"] == 1].reset_index(drop=True)
        assert np.array_equal(a.pos_user, bank.user_rows(clicks["user_id"].to_numpy()))
        assert np.array_equal(a.pos_item, bank.item_rows(clicks["video_id"].to_numpy()))
        assert np.array_equal(a.pos_day, np.searchsorted(bank.train_dates, clicks["date"].to_numpy()))
        _, hist = sequence_matrix(clicks, a.pos_seq.shape[1], before_day=True)
        assert np.array_equal(a.pos_seq, hash_ids(hist, "video_id", cfg.video_buckets, pad=-1).astype(a.pos_seq.dtype))
        # and bit for bit what the click rows of positives.parquet give on their own
        pos = pd.read_parquet(tiny_project["features"] / s / "positives.parquet")
        click_rows = pos[pos["is_click"] == 1].reset_index(drop=True)
        cols = [c for c in pos.columns if c.startswith("seq_")]
        assert np.array_equal(a.pos_seq, hash_histories(click_rows, cols, cfg.video_buckets))
        assert a.pos_seq.dtype == np.int32 and a.pos_stats.dtype == np.float32


def test_multi_objective_rows_carry_the_source_labels(tiny_project, tiny_bank) -> None:
    from sass_retrieval.data.schema import OBJECTIVES

    bank, _ = tiny_bank
    labels = list(OBJECTIVES.values())
    for s in TINY_SCENARIOS:
        a = bank.per[s]
        train = _train_rows(tiny_project, s)
        union = train[train[labels].eq(1).any(axis=1)]
        n_click = len(a.pos_user)
        assert len(a.mt_user) == len(union) > n_click
        assert a.mt_labels.dtype == np.int8 and a.mt_labels.shape == (len(union), len(OBJECTIVES))
        # click rows first (pos_* are their head), then the other objectives' rows, each in the split's order
        src = pd.concat([union[union["is_click"] == 1], union[union["is_click"] != 1]])
        assert np.array_equal(a.mt_labels, src[labels].to_numpy(np.int8))
        assert np.array_equal(a.mt_user, bank.user_rows(src["user_id"].to_numpy()))
        assert np.array_equal(a.mt_item, bank.item_rows(src["video_id"].to_numpy()))
        assert np.array_equal(a.mt_day, np.searchsorted(bank.train_dates, src["date"].to_numpy()))
        for mt, pos in ((a.mt_user, a.pos_user), (a.mt_item, a.pos_item), (a.mt_day, a.pos_day),
                        (a.mt_seq, a.pos_seq), (a.mt_stats, a.pos_stats)):
            assert np.array_equal(mt[:n_click], pos)
        assert (a.mt_labels[:n_click, 0] == 1).all() and (a.mt_labels[n_click:, 0] == 0).all()


def test_a_long_view_without_a_click_is_a_multi_objective_row_not_a_click_positive(tiny_project, tiny_bank) -> None:
    bank, _ = tiny_bank
    s = TINY_SCENARIOS[0]
    a = bank.per[s]
    train = _train_rows(tiny_project, s)
    key = ["user_id", "video_id", "date"]
    clicked = set(map(tuple, train.loc[train["is_click"] == 1, key].values.tolist()))
    viewed = train[(train["long_view"] == 1) & (train["is_click"] == 0)]
    row = next(r for r in viewed[key].values.tolist() if tuple(r) not in clicked)   # no click of it that day
    u, i, d = bank.user_rows([row[0]])[0], bank.item_rows([row[1]])[0], bank.train_dates.index(row[2])
    in_mt = (a.mt_user == u) & (a.mt_item == i) & (a.mt_day == d)
    assert in_mt.any() and (a.mt_labels[in_mt][:, :2] == [0, 1]).all()
    assert not ((a.pos_user == u) & (a.pos_item == i) & (a.pos_day == d)).any()


def test_a_split_written_before_the_other_objectives_still_loads(tiny_project, tiny_bank, tmp_path) -> None:
    """positives.parquet of an older split: the click rows, no label columns. Every row counts as a click."""
    import shutil

    full, cfg = tiny_bank
    old = tmp_path / "features"
    shutil.copytree(tiny_project["features"], old)
    for s in TINY_SCENARIOS:
        path = old / s / "positives.parquet"
        pos = pd.read_parquet(path)
        pos[pos["is_click"] == 1].drop(columns=["is_click", "long_view", "is_like"]).to_parquet(path, index=False)
    bank = load_bank(old, read_users(tiny_project["store"]), read_items(tiny_project["store"]), cfg)
    for s in TINY_SCENARIOS:
        a, b = bank.per[s], full.per[s]
        for name in ("pos_user", "pos_item", "pos_day", "pos_seq", "pos_stats"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert np.array_equal(a.mt_user, a.pos_user) and (a.mt_labels == [1, 0, 0]).all()
    lean = load_bank(old, read_users(tiny_project["store"]), read_items(tiny_project["store"]), cfg, serving_only=True)
    assert np.array_equal(lean.per[TINY_SCENARIOS[0]].pos_item, full.per[TINY_SCENARIOS[0]].pos_item)
