"""The plain two-tower's variants (model.arch senet, dat, parallel; seed 003): shapes, determinism, the SE field
weights, dat's mimic loss and its stop-gradient, parallel's folded query against brute force through the FAISS
index, checkpoint round trips and a short fine-tuning run of each on the tiny fixture."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import tiny_params

from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
from sass_retrieval.index.faiss_index import build_index, search
from sass_retrieval.models.bank import ITEM_FIELDS, USER_FIELDS
from sass_retrieval.models.checkpoint import load_model
from sass_retrieval.models.dat import mimic_loss
from sass_retrieval.models.embed import embed_items, embed_users
from sass_retrieval.models.parallel_tower import fused_score
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.params_schema import Index
from sass_retrieval.train.checkpoint import save_checkpoint
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.recipes import finetune_job

VARIANTS = ("senet", "dat", "parallel")


def batches(bank, scenario: str, n: int = 40) -> tuple[dict, dict]:
    a = bank.per[scenario]
    users = np.arange(min(n, len(a.user_stats)))
    return bank.serving_user_batch(users, scenario), bank.serving_item_batch(a.pool[:n], scenario)


def model_of(cfg, arch: str, seed: int = 0) -> RetrievalModel:
    torch.manual_seed(seed)
    return RetrievalModel(replace(cfg, arch=arch))


@pytest.mark.parametrize("arch", VARIANTS)
def test_shapes_unit_item_vectors_and_determinism(tiny_bank, arch: str) -> None:
    bank, cfg = tiny_bank
    ub, ib = batches(bank, "s0")
    a, b = model_of(cfg, arch).eval(), model_of(cfg, arch).eval()
    (u, u_g), (i, _) = a.user_vectors(ub), a.item_vectors(ib)
    dim = cfg.hidden * (3 if arch == "parallel" else 1)
    assert a.serving_dim == dim and u.shape == (len(ub["uid"]), dim) and i.shape == (len(ib["vid"]), dim)
    assert u_g is u, "a plain two-tower's variant has one vector per side"
    assert torch.allclose(i.norm(dim=-1), torch.ones(len(i)), atol=1e-5), "the index wants unit item vectors"
    assert torch.equal(u, b.user_vectors(ub)[0]) and torch.equal(i, b.item_vectors(ib)[0])   # same seed, same model
    assert not torch.equal(u, model_of(cfg, arch, seed=1).eval().user_vectors(ub)[0])
    assert float(a.scenario_drift()) == 0.0


def test_senet_field_weights_sum_to_the_field_count_and_start_at_one(tiny_bank) -> None:
    bank, cfg = tiny_bank
    model = model_of(cfg, "senet")
    ub, ib = batches(bank, "s1")
    x = model.user_input(ub)
    w = model.user_tower.field_se.weights(x)
    n_fields = len(model.field_groups("user"))
    assert w.shape == (len(x), n_fields) and n_fields == len(USER_FIELDS) + 4
    assert torch.allclose(w.sum(-1), torch.full((len(x),), float(n_fields)))
    assert torch.allclose(w, torch.ones_like(w)), "the excitation starts at zero: every field at weight 1"
    fw = model.field_weights(ub, ib)
    assert list(fw["user"]) == ["user_id", *USER_FIELDS, "click_sequence", "user_stats", "scenario"]
    assert list(fw["item"]) == ["video_id", *ITEM_FIELDS, "item_stats", "scenario"]
    # a moved excitation reweights fields per row, still summing to the field count
    with torch.no_grad():
        model.user_tower.field_se.excite[2].weight.normal_(std=1.0)
    w = model.user_tower.field_se.weights(x)
    assert torch.allclose(w.sum(-1), torch.full((len(x),), float(n_fields)), atol=1e-4)
    assert w.std() > 0.01 and (w >= 0).all()
    with pytest.raises(ValueError, match="senet only"):
        model_of(cfg, "dssm").field_weights(ub, ib)


def test_mimic_loss_is_zero_on_negative_rows_and_ignores_their_values() -> None:
    torch.manual_seed(0)
    au, ai, pu, pi = (torch.randn(6, 4) for _ in range(4))
    none = torch.zeros(6, dtype=torch.bool)
    assert float(mimic_loss(au, ai, pu, pi, none)) == 0.0
    some = torch.tensor([True, False, True, False, False, True])
    base = mimic_loss(au, ai, pu, pi, some)
    au2, pi2 = au.clone(), pi.clone()
    au2[~some] += 5.0
    pi2[~some] -= 3.0
    assert torch.allclose(base, mimic_loss(au2, ai, pu, pi2, some))
    manual = ((au - pi)[some].square().sum(-1) + (ai - pu)[some].square().sum(-1)).mean()
    assert torch.allclose(base, manual)
    x = au.clone().requires_grad_()
    mimic_loss(x, ai, pu, pi, some).backward()
    assert torch.equal(x.grad[~some], torch.zeros_like(x.grad[~some])) and x.grad[some].abs().sum() > 0


def test_dat_mimic_term_trains_the_augment_vectors_only(tiny_bank) -> None:
    """The stop-gradient: the mimic term alone leaves every tower and embedding weight without a gradient."""
    bank, cfg = tiny_bank
    model = model_of(cfg, "dat").train()
    ub, ib = batches(bank, "s0", 30)
    n = min(len(ub["uid"]), len(ib["vid"]))
    ub, ib = {k: v[:n] for k, v in ub.items()}, {k: v[:n] for k, v in ib.items()}
    eb = SimpleNamespace(user=model.user_vectors(ub), item=model.item_vectors(ib), rows=torch.randperm(n), n_pos=n)
    loss = model.extra_loss(eb)
    assert loss.item() > 0
    loss.backward()

    def has_gradient(p: torch.nn.Parameter) -> bool:
        g = p.grad
        return g is not None and bool((g.coalesce().values() if g.is_sparse else g).abs().sum() > 0)

    trained = {name for name, p in model.named_parameters() if has_gradient(p)}
    assert trained == {"user_augment.weight", "item_augment.weight"}
    assert model.latest_augment == {}, "the recorded augment vectors are consumed"
    with torch.no_grad():   # no training forward recorded: nothing to fit
        model.user_vectors(ub)
    assert model.latest_augment == {}
    assert float(model_of(cfg, "senet").extra_loss(eb)) == 0.0


def test_dat_augment_vector_enters_its_own_tower(tiny_bank) -> None:
    bank, cfg = tiny_bank
    model = model_of(cfg, "dat").eval()
    ub, ib = batches(bank, "s0", 10)
    before = model.user_vectors(ub)[0]
    with torch.no_grad():
        model.user_augment.weight[ub["uid"][0]] += 1.0
    after = model.user_vectors(ub)[0]
    assert not torch.allclose(before[0], after[0]) and torch.allclose(before[1:], after[1:])
    assert torch.equal(model.item_vectors(ib)[0], model.item_vectors(ib)[0])


def test_parallel_index_top_k_equals_brute_force_scoring_of_the_fused_model(tiny_bank) -> None:
    bank, cfg = tiny_bank
    model = model_of(cfg, "parallel").eval()
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.8, -0.4, 0.3]))   # unequal fusion weights
    scenario, k = "s1", 10
    a = bank.per[scenario]
    users = np.arange(min(30, len(a.user_stats)))
    ids = bank.item_ids[a.pool]
    index = build_index(embed_items(model, bank, scenario, a.pool), ids, Index())
    got_scores, got = search(index, embed_users(model, bank, scenario, users), k)
    with torch.no_grad():
        up = model.user_parts(bank.serving_user_batch(users, scenario))
        ip = model.item_parts(bank.serving_item_batch(a.pool, scenario))
        brute = fused_score(up, ip, model.fusion_weights()).numpy()
        manual = sum(w * (up[:, j] @ ip[:, j].T) for j, w in enumerate(model.fusion_weights())).numpy()
    assert np.allclose(brute, manual, atol=1e-5)
    order = np.argsort(-brute, axis=1, kind="stable")[:, :k]
    assert np.allclose(got_scores, np.take_along_axis(brute, order, 1), atol=1e-5)
    top_brute = ids[order]
    for row in range(len(users)):   # ties may swap places, the set of the top k scores may not
        kth = np.sort(brute[row])[-k]
        sure = set(ids[brute[row] > kth + 1e-5])
        assert sure <= set(got[row]) and set(got[row]) <= set(ids[brute[row] >= kth - 1e-5])
    assert (got == top_brute).mean() > 0.95
    rec = EmbeddingRecommender({scenario: model}, bank)   # the evaluation's path: the same ranking
    assert np.array_equal(rec.top_items(scenario, bank.user_ids[users], k), got)


@pytest.mark.parametrize("arch", VARIANTS)
def test_checkpoint_round_trip(tiny_bank, tmp_path: Path, arch: str) -> None:
    bank, cfg = tiny_bank
    model = model_of(cfg, arch, seed=4)
    with torch.no_grad():   # move every weight off its initialisation (senet's excitation starts at zero)
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "model.pt", model)
    loaded, manifest = load_model(tmp_path / "model.pt")
    assert manifest["config"]["arch"] == arch and loaded.cfg == model.cfg
    ub, ib = batches(bank, "s2")
    model.eval()
    assert torch.equal(loaded.user_vectors(ub)[0], model.user_vectors(ub)[0])
    assert torch.equal(loaded.item_vectors(ib)[0], model.item_vectors(ib)[0])


@pytest.mark.parametrize("arch", VARIANTS)
def test_a_short_finetune_trains_every_variant(tiny_bank, tmp_path: Path, arch: str) -> None:
    bank, cfg = tiny_bank
    params = tiny_params({"finetune": {"epochs": 1, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                       "early_stopping": False, "max_steps_per_epoch": 4},
                          "train": {"checkpoint_every": 0}})
    model = model_of(cfg, arch)
    ub, ib = batches(bank, "s0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fw0 = model.field_weights(ub, ib) if arch == "senet" else None
    report = finetune(model, bank, finetune_job(params, seed=0, progress=False), tmp_path)
    assert isinstance(report, dict)
    moved = {k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(before[k], v)}
    tower = {k for k in moved if k.startswith(("user_tower.", "item_tower."))}
    assert tower, f"{arch}: fine-tuning moved no tower weight"
    if arch == "dat":   # the mimic loss ran (train.finetune.batch_loss consumed every recorded augment)
        assert {"user_augment.weight", "item_augment.weight"} <= moved and model.latest_augment == {}
    if arch == "parallel":
        assert "fusion_logits" in moved and any(".cross." in k for k in tower) and any(".fm." in k for k in tower)
    if arch == "senet":
        fw = model.field_weights(ub, ib)
        assert any(abs(fw["user"][f] - fw0["user"][f]) > 1e-4 for f in fw["user"]), "the SE weights learnt nothing"
        for side in ("user", "item"):
            assert abs(sum(fw[side].values()) - len(fw[side])) < 1e-3
    model.eval()
    vecs = embed_items(model, bank, "s0", bank.per["s0"].pool)
    assert np.isfinite(vecs).all()
