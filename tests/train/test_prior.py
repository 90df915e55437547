"""The serving popularity prior: chosen per scenario on the held-out day, carried by the model's config, added
by the index (train.finetune, evaluate.embedding_recommender.serving_prior, index.faiss_index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import tiny_params

import sass_retrieval.train.finetune as ft
from sass_retrieval.evaluate.embedding_recommender import (
    EmbeddingRecommender,
    embed_items,
    embed_users,
    serving_prior,
)
from sass_retrieval.models.bank import click_prior
from sass_retrieval.models.checkpoint import load_model
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.checkpoint import save_checkpoint
from sass_retrieval.train.finetune import (
    chosen_prior_weights,
    finetune,
    held_out_ndcg,
    prior_evidence,
    prior_grid,
)
from sass_retrieval.train.recipes import finetune_job, train_row

GRID = [0.05, 0.5, 5.0]


def _ft(epochs: int, **kw):
    params = tiny_params({"finetune": {"epochs": epochs, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                               "early_stopping": True, "patience": 1, "min_epochs": 1,
                                               "refit": "none", **kw}, "train": {"checkpoint_every": 0}})
    return finetune_job(params, seed=0, progress=False)


def test_the_grid_always_starts_at_no_prior_and_ties_pick_the_smaller_weight() -> None:
    assert prior_grid(_ft(1, prior_grid=[0.5, 0.0, 0.05, 0.5]).knobs) == (0.0, 0.05, 0.5)
    assert prior_grid(_ft(1, prior_grid=[]).knobs) == (0.0,)
    point = {"prior": {"a": {"ndcg": [0.1, 0.3, 0.3], "se": [0.0, 0.01, 0.01]},
                       "b": {"ndcg": [0.2, 0.1, 0.0], "se": [0.0, 0.01, 0.01]},
                       "c": {"ndcg": [0.1, 0.3, 0.2], "se": [0.0, 0.2, 0.01]}}}
    assert chosen_prior_weights(point, (0.0, 0.05, 0.5)) == {"a": 0.05, "b": 0.0, "c": 0.5}, \
        "the best weight whose gain is clear of its noise; c's best (0.05) is within 1.96 standard errors"
    assert chosen_prior_weights({}, (0.0, 0.05)) == {}
    gains = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 1.0]])
    ev = prior_evidence(gains)
    assert ev["ndcg"] == pytest.approx([0.5, 2.5 / 3]) and ev["se"][0] == 0.0
    assert ev["se"][1] == pytest.approx(np.std([1.0, 0.0, 0.0], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="prior_grid"):
        _ft(1, prior_grid=[-0.1])


def test_held_out_ndcg_adds_the_weighted_click_prior_to_each_score(tiny_bank) -> None:
    """Against a direct computation: rank of the clicked item among the pool by cos + w * log1p(clicks before
    the day), NDCG@50 of that rank; w = 0 is validate_scenarios."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg).eval()
    day = len(bank.train_dates) - 1
    val = ft._positives(bank, bank.scenarios, {day})
    name = bank.scenarios[0]
    got = held_out_ndcg(model, bank, val, [name], (0.0, 0.5))[name].mean(0)
    assert got[0] == pytest.approx(ft.validate_scenarios(model, bank, val, [name])[name], abs=1e-6)
    si, a = bank.scen_index(name), bank.per[name]
    m = val["scen"] == si
    with torch.no_grad():
        iv = model.item_vectors(bank.item_batch(a.pool, np.full(len(a.pool), si), a.item_daily[day, a.pool]))[0].numpy()
        uv = model.user_vectors(bank.user_batch(val["user"][m], val["scen"][m], val["seq"][m], val["stats"][m]))[0].numpy()
    scores = uv @ iv.T + 0.5 * click_prior(a.item_daily[day, a.pool])[None, :]
    gains = []
    for row, item in zip(scores, val["item"][m], strict=True):
        hit = np.flatnonzero(a.pool == item)
        rank = int((row > row[hit[0]]).sum()) if len(hit) else 10**9
        gains.append(1 / np.log2(rank + 2) if rank < 50 else 0.0)
    assert got[1] == pytest.approx(float(np.mean(gains)), abs=1e-6)
    assert got[1] != pytest.approx(got[0]), "the prior changes the ranking"

    # As the protocol: a click on a video the user clicked on an earlier day (any scenario) does not count, and
    # those videos leave the user's ranking.
    earlier = ft.clicks_before(bank, [day])
    before = ft._positives(bank, bank.scenarios, set(range(day)))
    seen: dict[int, set[int]] = {}
    for u, i in zip(before["user"], before["item"], strict=True):
        seen.setdefault(int(u), set()).add(int(i))
    filtered = held_out_ndcg(model, bank, val, [name], (0.0, 0.5), earlier=earlier)[name].mean(0)
    gains, dropped = [], 0
    for row, user, item in zip(scores, val["user"][m], val["item"][m], strict=True):
        mine = seen.get(int(user), set())
        if int(item) in mine:
            dropped += 1
            continue
        row = np.where(np.isin(a.pool, list(mine)), -np.inf, row)
        hit = np.flatnonzero(a.pool == item)
        rank = int((row > row[hit[0]]).sum()) if len(hit) else 10**9
        gains.append(1 / np.log2(rank + 2) if rank < 50 else 0.0)
    assert dropped > 0 and len(gains) > 0, "the tiny data has re-clicks and new clicks on the held-out day"
    assert filtered[1] == pytest.approx(float(np.mean(gains)), abs=1e-6)


def test_finetune_chooses_each_scenarios_weight_at_its_served_epoch_and_the_index_applies_it(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    report = finetune(model, bank, _ft(3, prior_grid=GRID), tmp_path)
    weights = report["prior_weights"]
    assert weights == model.cfg.prior_weights and set(weights) <= set(bank.scenarios) and weights
    grid = (0.0, *GRID)
    served = next(p for p in report["validation"] if p["epoch"] == report["best_epoch"])
    assert weights == chosen_prior_weights(served, grid)
    assert cfg.prior_weights is None, "the caller's config is not changed behind its back"
    for n, ev in report["prior_evidence"].items():   # what the run report shows of each choice
        ndcg, se = served["prior"][n]["ndcg"], served["prior"][n]["se"]
        i, b = grid.index(weights[n]), int(np.argmax(ndcg))
        assert ev["w"] == weights[n] and ev["gain"] == pytest.approx(ndcg[i] - ndcg[0])
        assert ev["best_w"] == grid[b] and ev["best_gain"] == pytest.approx(ndcg[b] - ndcg[0])
        assert ev["best_se"] == (pytest.approx(se[b]) if b else 0.0) and ev["margin_z"] == ft.PRIOR_Z
        assert ev["w"] == 0 or ev["gain"] > ft.PRIOR_Z * ev["se"], "a chosen weight cleared the margin"
    assert set(report["prior_evidence"]) == set(weights)

    name = next((n for n, w in weights.items() if w > 0), None)
    if name is None:                       # every scenario chose no prior: force one to test the index
        name = bank.scenarios[0]
        model.cfg.prior_weights = {name: 0.5}
    w = model.cfg.prior_weights[name]
    a = bank.per[name]
    rec = EmbeddingRecommender({name: model}, bank)
    users = bank.user_ids[np.unique(a.pos_user)[:20]]
    got = rec.top_items(name, users, 10)
    assert rec.index_for(name).d == cfg.hidden + 1
    sc = (embed_users(model, bank, name, bank.user_rows(users)) @ embed_items(model, bank, name, a.pool).T
          + w * click_prior(a.item_stats[a.pool])[None, :])
    want = bank.item_ids[a.pool][np.argsort(-sc, axis=1, kind="stable")[:, :10]]
    assert np.mean([len(set(x) & set(y)) for x, y in zip(got, want, strict=True)]) >= 9.8


def test_no_grid_no_prior_and_a_checkpoint_or_a_warm_start_keeps_the_weights(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    report = finetune(model, bank, _ft(2, prior_grid=[]), tmp_path / "off")
    assert "prior_weights" not in report and model.cfg.prior_weights is None
    assert all("prior" not in p for p in report["validation"])
    name = bank.scenarios[0]
    assert serving_prior(model, bank, name, bank.per[name].pool) is None

    model.cfg.prior_weights = {name: 0.25}
    save_checkpoint(tmp_path / "model.pt", model)
    loaded, _ = load_model(tmp_path / "model.pt")
    assert loaded.cfg.prior_weights == {name: 0.25}
    np.testing.assert_allclose(serving_prior(loaded, bank, name, bank.per[name].pool),
                               0.25 * click_prior(bank.per[name].item_stats[bank.per[name].pool]))

    params = tiny_params({"finetune": {"epochs": 1, "batch_size": 128, "negatives": 32, "early_stopping": False},
                                  "model": {k: getattr(cfg, k) for k in ("user_buckets", "video_buckets", "field_buckets",
                                                                         "hidden", "emb_dim", "field_dim")},
                                  "train": {"checkpoint_every": 0}})
    warm, _ = train_row("dssm_mixed" if cfg.arch == "dssm" else "sass", bank, params, 0, tmp_path / "warm",
                        pretrained=loaded, init=loaded, progress=False)
    assert warm[name].cfg.prior_weights == {name: 0.25}, "an incremental day without a held-out day keeps them"


@pytest.mark.parametrize("pool", [7, 50, 400])
def test_capped_rank_equals_the_full_count_below_k(pool: int) -> None:
    """The top-k shortcut ranks a target exactly as counting every score above it does, wherever the rank can
    earn NDCG@k (below k), with ties (scores rounded to a few values) and masked (-inf) columns."""
    g = torch.Generator().manual_seed(pool)
    scores = torch.round(torch.randn(300, pool, generator=g) * 4) / 4
    scores[torch.rand(300, pool, generator=g) < 0.1] = -torch.inf
    target = torch.randint(0, pool, (300,), generator=g)
    full = (scores > scores.gather(1, target.unsqueeze(1))).sum(1)
    got = ft.capped_rank(scores, target, 50)
    assert torch.equal(torch.where(full < 50, full, 50), got)
    assert bool((full >= 50).any()) == (pool > 50), "the test covers both sides of k where it can"


def test_the_prior_grid_is_scored_only_at_epochs_that_become_a_serving_pick(tiny_bank, tmp_path, monkeypatch) -> None:
    """Epochs that early stopping only waits through are not scored on the grid; the serving pick's evidence is
    there, so the weights are chosen as if every epoch had been scored. Validation scripted: macro peaks at 2."""
    bank, cfg = tiny_bank
    scored: list[int] = []
    real_gains, real_validate = ft.scenario_gains, ft.validate_scenarios

    def counting(days, grid, *a, **kw):
        if len(grid) > 1:
            scored.append(len(days))
        return real_gains(days, grid, *a, **kw)

    def scripted(model, bank_, pos, scenarios, k=50, days=None):
        real_validate(model, bank_, pos, scenarios, k, days)
        epoch = len(scored) + 1
        return {n: 0.5 if epoch == 2 else 0.1 * epoch for n in scenarios}

    monkeypatch.setattr(ft, "scenario_gains", counting)
    monkeypatch.setattr(ft, "validate_scenarios", scripted)
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), bank, _ft(8, prior_grid=GRID, patience=2), tmp_path)
    n = len(report["validation"][0]["prior"])
    assert n == len(bank.reported) and report["best_epoch"] == 2
    assert scored == [n, n, 0, 0], "epochs 1 and 2 improve, 3 and 4 only wait"
    assert set(report["prior_weights"]) == set(bank.reported)
