from __future__ import annotations

import numpy as np
import pytest
import torch

from sass_retrieval.models.hashing import hash_ids, hash_strings
from sass_retrieval.models.retrieval import ModelConfig, RetrievalModel


def test_hashing_is_stable_in_range_and_reserves_padding() -> None:
    ids = np.array([0, 1, 2**40, -1, 7])
    h = hash_ids(ids, "video_id", 101, pad=-1)
    assert h[3] == 0 and (h[[0, 1, 2, 4]] >= 1).all() and (h < 101).all()
    assert np.array_equal(h, hash_ids(ids, "video_id", 101, pad=-1))
    assert not np.array_equal(hash_ids(ids, "video_id", 10007), hash_ids(ids, "author_id", 10007))
    s = hash_strings(np.array(["a", "b", "a"]), "f", 50)
    assert s[0] == s[2] and ((s >= 1) & (s < 50)).all()


@pytest.mark.parametrize("arch", ["sass", "dssm"])
def test_unseen_ids_embed_without_error(tiny_bank, arch) -> None:
    bank, cfg = tiny_bank
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "arch": arch})
    model = RetrievalModel(cfg)
    new_users = hash_ids(np.array([10**12, 10**12 + 1]), "user_id", cfg.user_buckets)
    batch = {"uid": torch.from_numpy(new_users), "ufields": torch.from_numpy(bank.ufields[:2]),
             "seq": torch.from_numpy(hash_ids(np.array([[10**9, -1], [5, 6]]), "video_id", cfg.video_buckets, pad=-1)),
             "ustats": torch.zeros(2, 3), "scen": torch.tensor([0, 2])}
    e_s, e_g = model.user_vectors(batch)
    assert e_s.shape == (2, cfg.hidden) and torch.allclose(e_s.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(e_g).all()


def test_ablation_switches_build(tiny_bank) -> None:
    _, cfg = tiny_bank
    for over in ({"gate": "none"}, {"gate": "sigmoid"}, {"bias_net": False}, {"layers": 1}, {"layers": 4}):
        m = RetrievalModel(ModelConfig.from_dict({**cfg.to_dict(), **over}))
        assert len(m.user_tower.global_net) == over.get("layers", cfg.layers)
