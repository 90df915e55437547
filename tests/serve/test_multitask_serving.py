"""A multi-objective version (row sass_mt) served with per-request weights: one index per scenario, every weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from support import warm_user

from sass_retrieval.models.bank import click_prior

pytestmark = pytest.mark.slow

OBJ = ["click", "long_view", "like"]   # the objectives of the conftest's sass_mt model (mt_project)


def test_weights_reorder_one_index_and_match_the_weighted_sum(mt_project: Path, served_project: dict) -> None:
    from sass_retrieval.serve.loader import load_version
    from sass_retrieval.serve.query import recommend

    v = load_version(mt_project, served_project["features"], served_project["store"], row="sass_mt",
                     scenarios=["s0"])
    model, index = v.models["s0"], v.indexes["s0"]
    user = warm_user(served_project)
    row = np.array([v.user_row(user)])
    with torch.no_grad():
        hu, _ = model.objective_vectors(v.bank.serving_user_batch(row, "s0"), "user")
        pool = v.bank.per["s0"].pool
        hi, _ = model.objective_vectors(v.bank.serving_item_batch(pool, "s0"), "item")
    # the base's popularity prior, if its fine-tuning chose one, is the index's last column (train.finetune)
    prior = (model.cfg.prior_weights or {}).get("s0", 0.0) * click_prior(v.bank.per["s0"].item_stats[pool])
    answers = {}
    for w in ("click=1", "long_view=1", "click=1,long_view=0.5,like=0.2"):
        rec = recommend(v, user, "s0", 10, w)
        weights = dict.fromkeys(OBJ, 0.0) | {k: float(x) for k, x in (p.split("=") for p in w.split(","))}
        # the index's item vector is the per-objective vectors over sqrt(K) (models.multitask.item_serving_vector)
        direct = sum(weights[o] * (hu[0, k] @ hi[:, k].T) for k, o in enumerate(OBJ)).numpy() / np.sqrt(len(OBJ)) + prior
        by_id = dict(zip(v.bank.item_ids[pool].tolist(), direct.tolist(), strict=True))
        # the index's top 10 are the weighted sum's top 10 (up to float32 near-ties in the order)
        np.testing.assert_allclose([by_id[i] for i in rec.items], np.sort(direct)[::-1][:10], atol=1e-5)
        assert rec.fallback is None
        answers[w] = rec.items
    assert answers["click=1"] != answers["long_view=1"]          # the weights change the ranking...
    assert v.indexes["s0"] is index                              # ...of the same index
    assert recommend(v, user, "s0", 10).items == answers["click=1"]   # no weights: the model's own (click=1)
    with pytest.raises(ValueError, match="unknown objective 'clik'"):
        recommend(v, user, "s0", 10, "clik=1")


def test_the_service_takes_weights_and_refuses_them_for_a_single_objective_version(
        mt_project: Path, served_project: dict) -> None:
    from sass_retrieval.serve.app import create_app
    from sass_retrieval.serve.settings import ServeSettings

    user = warm_user(served_project)
    app = create_app(ServeSettings(published=served_project["published"], features=served_project["features"],
                                   store=served_project["store"], reload_interval=0))
    with TestClient(app) as c:
        r = c.get("/recommend", params={"user": user, "scenario": "s0", "k": 5, "weights": "click=1"})
        assert r.status_code == 400 and "multi-objective" in r.json()["reason"]
        assert c.get("/recommend", params={"user": user, "scenario": "s0", "k": 5}).status_code == 200
