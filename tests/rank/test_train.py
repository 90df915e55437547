"""rank.train: seeded training, the planted user x tag signal is learnt, early stopping keeps the best epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rank.world import SCENARIOS, make_frame, make_items, zero_score

from sass_retrieval.errors import BadInputError
from sass_retrieval.evaluate.gauc import gauc_within
from sass_retrieval.params_schema import Params
from sass_retrieval.rank.features import FEATURE_NAMES, training_rows
from sass_retrieval.rank.model import RankModelConfig
from sass_retrieval.rank.train import RankSettings, fit_ranker, score_rows

FAST = RankSettings(epochs=3, batch_size=256, lr=0.005, patience=1, seed=0)
CFG = RankModelConfig(emb_dim=4, hidden=(16,))


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    items = make_items(seed=5)
    frame = make_frame(items, days=6, rows_per_day=1500, seed=5)
    days = sorted(frame.date.unique())
    r = training_rows(frame, items, days, zero_score)
    return r[r.date < days[-2]], r[r.date == days[-2]], r[r.date == days[-1]]


def test_settings_from_params() -> None:
    s = RankSettings.from_params(Params().override({"train.seed": 9, "rank.lr": 0.01}))
    assert (s.epochs, s.batch_size, s.lr, s.patience, s.seed, s.progress) == (4, 1024, 0.01, 1, 9, False)
    assert RankModelConfig.from_params(Params()) == RankModelConfig(emb_dim=8, hidden=(64, 32))


def test_same_seed_identical_weights_other_seed_different(rows) -> None:
    train, valid, _ = rows
    torch.set_num_threads(1)
    a, _ = fit_ranker(train, valid, FEATURE_NAMES, SCENARIOS, FAST, CFG)
    b, _ = fit_ranker(train, valid, FEATURE_NAMES, SCENARIOS, FAST, CFG)
    c, _ = fit_ranker(train, valid, FEATURE_NAMES, SCENARIOS, RankSettings(**{**FAST.__dict__, "seed": 1}), CFG)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert not torch.equal(a.mlp[0].weight, c.mlp[0].weight)


def test_learns_the_planted_user_tag_signal_on_held_out_rows(rows) -> None:
    train, valid, test = rows
    model, report = fit_ranker(train, valid, FEATURE_NAMES, SCENARIOS, FAST, CFG)
    scores = score_rows(model, test)
    held_out = gauc_within(test.scenario.to_numpy(), test.user_id.to_numpy(), test.is_click.to_numpy(), scores)
    assert held_out > 0.7
    # the report: one entry per epoch run, the best epoch is the best validation GAUC, per-scenario GAUCs
    gaucs = [e["valid_gauc"] for e in report["epochs"]]
    assert report["best_epoch"] == 1 + int(np.argmax(gaucs))
    assert report["valid_gauc"] == pytest.approx(max(gaucs))
    assert set(report["valid_gauc_by_scenario"]) == set(SCENARIOS)
    assert set(report["field_weights"]) == {*FEATURE_NAMES, "scenario"}
    # the taste features weigh more than the item's upload type in the SE block
    fw = report["field_weights"]
    assert max(fw["user_tag_clicks"], fw["user_tag_ctr"]) > fw["upload_type"]


def test_a_model_without_the_signal_features_does_worse(rows) -> None:
    train, valid, _ = rows
    _, with_taste = fit_ranker(train, valid, ["user_tag_ctr", "user_tag_clicks", "retrieval_score"], SCENARIOS,
                               FAST, CFG)
    _, without = fit_ranker(train, valid, ["video_type", "upload_type", "retrieval_score"], SCENARIOS, FAST, CFG)
    assert with_taste["valid_gauc"] > without["valid_gauc"] + 0.1


def test_early_stopping_stops_after_patience_epochs_without_gain(rows) -> None:
    train, valid, _ = rows
    long = RankSettings(epochs=30, batch_size=2048, lr=0.05, patience=1, seed=0)
    _, report = fit_ranker(train, valid, ["upload_type", "retrieval_score"], SCENARIOS, long, CFG)
    assert len(report["epochs"]) < 30 and len(report["epochs"]) == report["best_epoch"] + 1


def test_no_rows_is_a_clear_error(rows) -> None:
    train, valid, _ = rows
    with pytest.raises(BadInputError, match="no rows"):
        fit_ranker(train.iloc[:0], valid, FEATURE_NAMES, SCENARIOS, FAST, CFG)
