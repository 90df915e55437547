"""The multi-task heads: one inner product of the served vectors is the weighted sum of the objectives' scores,
whatever the weights, so one index per scenario serves every weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sass_retrieval.index.faiss_index import build_index, search
from sass_retrieval.models.checkpoint import load_model
from sass_retrieval.models.multitask import (
    MultiTaskModel,
    item_serving_vector,
    parse_weights,
    weighted,
    weighted_user_vector,
)
from sass_retrieval.models.retrieval import ModelConfig, RetrievalModel
from sass_retrieval.params_schema import Index
from sass_retrieval.train.checkpoint import save_checkpoint

CFG = dict(arch="sass", scenarios=["a", "b"], n_user_fields=2, n_item_fields=2, user_buckets=50, video_buckets=60,
           field_buckets=11, emb_dim=6, field_dim=3, scen_dim=2, hidden=8, layers=2, gate="adaptive", gate_bias=None,
           bias_net=True, dropout=0.0, scenario_layer="star", residual=True)
OBJ = ["click", "long_view", "like"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_one_inner_product_is_the_weighted_sum_of_objective_scores() -> None:
    g = torch.Generator().manual_seed(0)
    u, v = _unit(torch.randn(7, 3, 5, generator=g)), _unit(torch.randn(9, 3, 5, generator=g))
    for w in (torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.3, 1.7, 0.2]), torch.rand(3, generator=g)):
        served = weighted_user_vector(u, w) @ item_serving_vector(v).T
        per_objective = torch.einsum("nkd,mkd->nmk", u, v)               # <u_k, v_k> for every pair
        expected = (per_objective * w).sum(-1) / math.sqrt(3)
        assert torch.allclose(served, expected, atol=1e-6)
    assert torch.allclose(item_serving_vector(v).norm(dim=-1), torch.ones(9))   # fits a normalised IP index


def test_per_row_weights_give_each_row_its_own_weighting() -> None:
    g = torch.Generator().manual_seed(1)
    u = _unit(torch.randn(2, 3, 4, generator=g))
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    out = weighted_user_vector(u, w)
    assert torch.equal(out[0], weighted_user_vector(u[:1], w[0])[0])
    assert torch.equal(out[1], weighted_user_vector(u[1:], w[1])[0])


def test_parse_weights() -> None:
    assert parse_weights("click=1, long_view=0.5", OBJ) == {"click": 1.0, "long_view": 0.5, "like": 0.0}
    assert parse_weights({"like": 2}, OBJ) == {"click": 0.0, "long_view": 0.0, "like": 2.0}
    for bad, word in (("clik=1", "unknown objective 'clik'"), ("click=x", "not a number"),
                      ("click=-1", ">= 0"), ("click=0", "every weight is 0"), ("", "at least one")):
        with pytest.raises(ValueError, match=word):
            parse_weights(bad, OBJ)


def _batch(n: int, side: str) -> dict:
    g = torch.Generator().manual_seed(2 if side == "user" else 3)
    scen = torch.randint(0, 2, (n,), generator=g)
    if side == "user":
        return {"uid": torch.randint(1, 50, (n,), generator=g), "ufields": torch.randint(0, 11, (n, 2), generator=g),
                "seq": torch.randint(0, 60, (n, 4), generator=g), "ustats": torch.rand(n, 3, generator=g), "scen": scen}
    return {"vid": torch.randint(1, 60, (n,), generator=g), "ifields": torch.randint(0, 11, (n, 2), generator=g),
            "istats": torch.rand(n, 5, generator=g), "scen": scen}


def test_one_index_serves_every_weighting_and_the_checkpoint_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    model = MultiTaskModel(RetrievalModel(ModelConfig(**CFG)), OBJ, head_dim=4, weights={"click": 1.0}).eval()
    users, items = _batch(5, "user"), _batch(40, "item")
    with torch.no_grad():
        iv = model.item_vectors(items)[0].numpy()
        index = build_index(iv, np.arange(40, dtype=np.int64), Index())   # refuses non-unit vectors
        hu, _ = model.objective_vectors(users, "user")
        hi, _ = model.objective_vectors(items, "item")
        for w in ("click=1", "long_view=1", "click=1,long_view=0.5,like=0.2"):
            weights = model.set_weights(w)
            scores, ids = search(index, model.user_vectors(users)[0].numpy(), 10)
            direct = sum(weights[o] * (hu[:, k] @ hi[:, k].T) for k, o in enumerate(OBJ))
            assert np.array_equal(ids, np.argsort(-direct.numpy(), axis=1, kind="stable")[:, :10])
    save_checkpoint(tmp_path / "model.pt", model)
    loaded, manifest = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, MultiTaskModel) and manifest["meta"]["multitask"]["head_dim"] == 4
    assert loaded.spec() == model.spec()
    with torch.no_grad():
        assert torch.equal(loaded.user_vectors(users)[0], model.user_vectors(users)[0])


def test_weighted_sets_every_distinct_model_of_a_row_and_restores_them() -> None:
    """A row whose large scenario kept its own epoch has two models; both answer at the asked weights."""
    shared = MultiTaskModel(RetrievalModel(ModelConfig(**CFG)), OBJ, head_dim=4, weights={"click": 1.0})
    own = MultiTaskModel(RetrievalModel(ModelConfig(**CFG)), OBJ, head_dim=4, weights={"click": 1.0, "like": 0.5})
    row = {"a": own, "b": shared, "c": shared}
    before = {id(m): m.weights.clone() for m in (shared, own)}
    with weighted(row.values(), {"long_view": 1.0}):
        for m in (shared, own):
            assert m.weights.tolist() == [0.0, 1.0, 0.0]
    for m in (shared, own):
        assert torch.equal(m.weights, before[id(m)])
    with pytest.raises(RuntimeError), weighted(row.values(), {"like": 1.0}):
        raise RuntimeError("an evaluation failed")
    assert torch.equal(own.weights, before[id(own)])     # restored on failure too
