"""The feature bank: a serving-only bank serves the same vectors as the full one, and can not train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import TINY_PARAMS, TINY_SCENARIOS, merged

from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.bank import load_bank, recent_days
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.pretrain import pretrain
from sass_retrieval.train.recipes import finetune_settings, pretrain_settings


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
        assert len(a.pos_seq) == 0 and a.item_daily.shape[0] == 0  # the training samples were not loaded
    assert lean.user_pairs is None


def test_training_on_a_serving_only_bank_is_refused(tiny_project, tiny_bank, tmp_path) -> None:
    _, cfg = tiny_bank
    lean = load_bank(tiny_project["features"], read_users(tiny_project["store"]), read_items(tiny_project["store"]),
                     cfg, serving_only=True)
    params = merged(TINY_PARAMS, {"finetune": {"epochs": 1, "early_stopping": False}, "train": {"checkpoint_every": 0}})
    with pytest.raises(ValueError, match="serving_only"):
        finetune(RetrievalModel(cfg), lean, finetune_settings(params, 0, progress=False), tmp_path)
    with pytest.raises(ValueError, match="serving_only"):
        pretrain(RetrievalModel(cfg), lean, pretrain_settings(params, 0, progress=False), tmp_path)


def test_histories_hashed_in_blocks_equal_hashing_at_once() -> None:
    import pandas as pd

    from sass_retrieval.data.features import PAD
    from sass_retrieval.models.hashing import hash_ids
    from sass_retrieval.train.bank import hash_histories

    rng = np.random.default_rng(0)
    values = rng.integers(1, 10**9, size=(1001, 4))
    values[rng.random(values.shape) < 0.3] = PAD
    frame = pd.DataFrame(values, columns=list("abcd"))
    blocks = hash_histories(frame, list("abcd"), 100003, chunk=64)
    assert blocks.dtype == np.int32
    assert np.array_equal(blocks, hash_ids(values, "video_id", 100003, pad=PAD))


def test_recent_days_are_the_newest_training_days() -> None:
    assert recent_days(5, 1) == {4}
    assert recent_days(5, 2) == {3, 4}
    assert recent_days(5, 0) == {0, 1, 2, 3, 4}
    assert recent_days(2, 9) == {0, 1}
    with pytest.raises(ValueError):
        recent_days(0, 1)
