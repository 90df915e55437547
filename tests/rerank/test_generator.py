"""The generator: a set encoder, a hypernetwork whose layers follow w, deterministic greedy lists, and weights that
move what REINFORCE-trained lists hold."""

from __future__ import annotations

import torch
from rerank.planted import planted_slate

from sass_retrieval.rerank.generator import GeneratorConfig, ListGenerator
from sass_retrieval.rerank.goals import spread, utilities
from sass_retrieval.rerank.reinforce import ReinforceSettings, baseline_lists, train_generator
from sass_retrieval.rerank.rules import Rules


def test_the_encoder_reads_a_set_not_a_sequence() -> None:
    slate = planted_slate(n=3, c=12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    shuffled = type(slate)(slate.ids[:, perm], slate.pred[:, perm], slate.tag[:, perm], slate.cold[:, perm])
    model = ListGenerator(GeneratorConfig())
    # the arrival place is one of the inputs; with it equal, the encodings are permuted, nothing else
    enc, pooled = model.encode(slate)
    enc2, pooled2 = model.encode(shuffled)
    assert enc.shape == enc2.shape
    same_place = ListGenerator(GeneratorConfig())
    same_place.load_state_dict(model.state_dict())
    with torch.no_grad():
        same_place.phi[0].weight[:, 3] = 0.0   # drop the arrival-place input
        e1, p1 = same_place.encode(slate)
        e2, p2 = same_place.encode(shuffled)
    assert torch.allclose(e1[:, perm], e2, atol=1e-5) and torch.allclose(p1, p2, atol=1e-5)


def test_different_w_make_different_last_layers_and_the_same_w_the_same_lists() -> None:
    model = ListGenerator(GeneratorConfig())
    with torch.no_grad():   # the skip layer starts at 0 (no goal pushes before training): give it weights
        model.hyper.skip.normal_()
    a1 = model.last_layers(torch.tensor([1.0, 0.0, 0.0, 0.0]), 1)
    a2 = model.last_layers(torch.tensor([0.0, 0.0, 1.0, 0.0]), 1)
    assert all(not torch.allclose(x, y) for x, y in zip(a1, a2, strict=True))
    slate = planted_slate(n=50)
    w = torch.tensor([0.4, 0.1, 0.7, 0.2])
    assert torch.equal(model.generate(slate, w), model.generate(slate, w.clone()))


def test_trained_weights_control_the_list() -> None:
    slate = planted_slate(n=1500, c=30, seed=3)
    train, valid = slate.take(slice(0, 1200)), slate.take(slice(1200, 1500))
    scales = spread(train, 10, 4, 0)
    model, report = train_generator(train, valid, scales, GeneratorConfig(), Rules(),
                                    ReinforceSettings(epochs=10, batch_size=64, seed=0))
    base = utilities(valid, baseline_lists(valid, 10, Rules()))
    cold_share = {}
    for x in (0.0, 1.0):
        u = utilities(valid, model.generate(valid, torch.tensor([0.5, 0.0, 0.0, x])))
        cold_share[x] = float(u["cold_start"].mean())
    assert cold_share[1.0] > cold_share[0.0] + 0.05, cold_share
    click = float(utilities(valid, model.generate(valid, torch.tensor([1.0, 0.0, 0.0, 0.0])))["click"].mean())
    assert click > float(base["click"].mean()), "click-only lists beat the arrival order on clicks"
    assert report["best_valid_advantage"] > 0
