"""rank.model: field layout, normalisation, SE weights, unknown inputs, files round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sass_retrieval.rank.features import FEATURE_NAMES, SPECS
from sass_retrieval.rank.model import PreRanker, RankModelConfig, load_ranker, save_ranker


def random_features(n: int, names=FEATURE_NAMES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.poisson(3.0, n).astype(np.float32) if SPECS[name].kind == "numeric"
                   else rng.integers(-1, 5_000_000_000, n).astype(np.int64)) for name in names}


def test_scores_shape_and_field_weights() -> None:
    torch.manual_seed(0)
    model = PreRanker(FEATURE_NAMES, ["a", "b"], RankModelConfig(emb_dim=4, hidden=(16,)))
    feats = random_features(50)
    s = model.score(feats, "a")
    assert s.shape == (50,) and s.dtype == np.float32 and np.isfinite(s).all()
    w = model.field_weights(feats, "b")
    assert w.shape == (len(FEATURE_NAMES) + 1,) and ((w > 0) & (w < 1)).all()
    assert model.field_names == [*FEATURE_NAMES, "scenario"]
    # an unknown scenario and unseen category codes are served, not refused
    assert np.isfinite(model.score(feats, "never_trained")).all()
    assert not np.allclose(model.score(feats, "a"), model.score(feats, "b"))   # the scenario field matters


def test_normalisation_standardises_numeric_fields_with_log_for_counts() -> None:
    model = PreRanker(["user_tag_clicks", "user_tag_ctr", "video_type"], ["a"], RankModelConfig())
    feats = random_features(1000, model.names)
    model.fit_normalisation(feats)
    assert model.num_mean[0].item() == pytest.approx(np.log1p(feats["user_tag_clicks"]).mean(), rel=1e-5)
    assert model.num_mean[1].item() == pytest.approx(feats["user_tag_ctr"].mean(), rel=1e-5)
    z = (model._numeric({n: torch.from_numpy(feats[n]) for n in model.layout.numeric}) - model.num_mean) / model.num_std
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert "num_mean" in model.state_dict() and "num_std" in model.state_dict()


def test_field_vectors_follow_the_names_order() -> None:
    names = ["video_type", "retrieval_score", "duration_bucket", "user_tag_ctr"]
    model = PreRanker(names, ["a"], RankModelConfig(emb_dim=3))
    feats = random_features(7, names)
    x = {n: torch.from_numpy(v) for n, v in feats.items()}
    e = model.field_vectors(x, torch.zeros(7, dtype=torch.long))
    assert e.shape == (7, 5, 3)
    codes = torch.remainder(x["duration_bucket"], model.cfg.buckets)
    torch.testing.assert_close(e[:, 2], model.cat_tables["duration_bucket"](codes))
    z = (x["retrieval_score"] - model.num_mean[0]) / model.num_std[0]
    torch.testing.assert_close(e[:, 1], z[:, None] * model.num_weight[0] + model.num_bias[0])


def test_save_load_round_trip_gives_identical_scores(tmp_path) -> None:
    torch.manual_seed(1)
    names = ["user_tag_ctr", "video_type", "retrieval_score"]
    model = PreRanker(names, ["a", "b", "c"], RankModelConfig(emb_dim=5, hidden=(8, 4)))
    feats = random_features(64, names, seed=2)
    model.fit_normalisation(feats)
    save_ranker(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "ranker.json").read_text())
    assert meta["names"] == names and meta["config"]["hidden"] == [8, 4]
    back = load_ranker(tmp_path / "m")
    for scenario in ("a", "c", "zzz"):
        np.testing.assert_array_equal(model.score(feats, scenario), back.score(feats, scenario))
    with pytest.raises(FileNotFoundError, match="ranker.json"):
        load_ranker(tmp_path / "nothing")


def test_missing_feature_is_named() -> None:
    model = PreRanker(["user_tag_ctr", "retrieval_score"], ["a"], RankModelConfig())
    with pytest.raises(KeyError, match="retrieval_score"):
        model.score({"user_tag_ctr": np.zeros(3, np.float32)}, "a")
