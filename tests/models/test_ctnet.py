"""CTNet: the adapter starts at zero, the source never learns from the target's loss."""

from __future__ import annotations

import copy

import pytest
import torch

from sass_retrieval.models.ctnet import CTNet, GatedAdapter
from sass_retrieval.models.retrieval import ModelConfig, RetrievalModel

CFG = dict(arch="dssm", scenarios=["a", "b"], n_user_fields=2, n_item_fields=2, user_buckets=50, video_buckets=60,
           field_buckets=11, emb_dim=6, field_dim=3, scen_dim=2, hidden=8, layers=3, gate="adaptive", gate_bias=None,
           bias_net=True, dropout=0.0)


def _batches(n: int = 12) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    scen = torch.randint(0, 2, (n,), generator=g)
    user = {"uid": torch.randint(1, 50, (n,), generator=g), "ufields": torch.randint(0, 11, (n, 2), generator=g),
            "seq": torch.randint(0, 60, (n, 4), generator=g), "ustats": torch.rand(n, 3, generator=g), "scen": scen}
    item = {"vid": torch.randint(1, 60, (n,), generator=g), "ifields": torch.randint(0, 11, (n, 2), generator=g),
            "istats": torch.rand(n, 5, generator=g), "scen": scen}
    return user, item


def _pair(seed_source: int = 1, seed_target: int = 2) -> tuple[RetrievalModel, RetrievalModel]:
    torch.manual_seed(seed_source)
    source = RetrievalModel(ModelConfig(**CFG))
    torch.manual_seed(seed_target)
    return source, RetrievalModel(ModelConfig(**CFG))


def test_adapter_at_zero_leaves_the_target_unchanged() -> None:
    source, target = _pair()
    model = CTNet(source, copy.deepcopy(target))
    u, i = _batches()
    with torch.no_grad():
        assert torch.equal(model.user_vectors(u)[0], target.user_vectors(u)[0])
        assert torch.equal(model.item_vectors(i)[0], target.item_vectors(i)[0])


def test_source_gets_no_gradient_and_stays_bit_identical_after_a_target_step() -> None:
    source, target = _pair()
    before = copy.deepcopy(source.state_dict())
    model = CTNet(source, target)
    model.train()
    assert not model.source.training                                   # the source stays a fixed function
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.5)
    u, i = _batches()
    for _ in range(3):
        opt.zero_grad()
        loss = -(model.user_vectors(u)[0] * model.item_vectors(i)[0]).sum()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in model.source.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.source.state_dict().items())
    # the adapters did learn: the zero-initialised value maps moved
    assert any(a.value.weight.abs().sum() > 0 for a in model.user_adapters)


def test_the_adapter_reads_the_source() -> None:
    """Once an adapter is non-zero, a different source changes the target's vectors."""
    source, target = _pair()
    model = CTNet(source, target)
    with torch.no_grad():
        for a in model.user_adapters:
            a.value.weight.normal_()
    u, _ = _batches()
    other, _ = _pair(seed_source=7)
    swapped = CTNet(other, target)
    swapped.user_adapters.load_state_dict(model.user_adapters.state_dict())
    with torch.no_grad():
        assert not torch.allclose(model.user_vectors(u)[0], swapped.user_vectors(u)[0])


def test_gated_adapter_is_zero_at_start() -> None:
    assert torch.equal(GatedAdapter(4)(torch.randn(3, 4)), torch.zeros(3, 4))


def test_source_and_target_must_be_plain_two_towers() -> None:
    source, _ = _pair()
    with pytest.raises(ValueError, match="arch dssm"):
        CTNet(source, RetrievalModel(ModelConfig(**{**CFG, "arch": "sass"})))


def test_the_anchor_is_the_targets_start_and_is_neither_trained_nor_saved() -> None:
    """scenario_drift (what ctnet.anchor_l2 multiplies) is 0 at the start, sum ||w - w_start||^2 over the target's
    tower weights after a step, and its gradient pulls the towers back toward the start (not the source, not the
    sparse embedding tables, which it leaves out)."""
    source, target = _pair()
    model = CTNet(source, target)
    assert model.scenario_drift().item() == 0.0
    assert not any(k.startswith("anchor") for k in model.state_dict())
    start = {n: p.detach().clone() for n, p in target.named_parameters()}
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.01)
    towers = [n for n in start if n.split(".")[0] in ("user_tower", "item_tower")]
    expected = sum(((target.get_parameter(n) - start[n]) ** 2).sum() for n in towers)
    assert torch.allclose(model.scenario_drift(), expected)
    model.scenario_drift().backward()
    assert target.user_emb.weight.grad is None                     # the sparse tables are not anchored
    assert all(torch.allclose(target.get_parameter(n).grad, 2 * 0.01 * torch.ones_like(start[n])) for n in towers)
    assert all(p.grad is None for p in model.source.parameters())


def _settings():
    """A loop at lr and emb_lr 0.01, no checkpoints: what the optimiser tests build their optimiser from."""
    from sass_retrieval.train.loop import LoopSettings

    return LoopSettings(epochs=1, lr=0.01, emb_lr=0.01, weight_decay=0.0, seed=0, checkpoint_every=0,
                        checkpoint_seconds=0, progress=False, max_steps_per_epoch=0)


def _steps(model: CTNet, n: int = 3) -> None:
    from sass_retrieval.train.loop import make_optimizer

    settings = _settings()
    opt = make_optimizer(model, settings)
    u, i = _batches()
    for _ in range(n):
        opt.zero_grad()
        (-(model.user_vectors(u)[0] * model.item_vectors(i)[0]).sum()).backward()
        opt.step()


def test_without_an_output_adapter_the_last_layer_adds_nothing_and_serves_alike_when_reloaded() -> None:
    """adapt_output=False: the last adapter stays exactly zero through training, so a model rebuilt with the
    default (as serving rebuilds it from a checkpoint) gives the same vectors; the hidden adapters learn."""
    source, target = _pair()
    model = CTNet(source, target, adapt_output=False)
    _steps(model)
    for adapters in (model.user_adapters, model.item_adapters):
        assert torch.equal(adapters[-1].value.weight, torch.zeros_like(adapters[-1].value.weight))
        assert torch.equal(adapters[-1].value.bias, torch.zeros_like(adapters[-1].value.bias))
        assert adapters[0].value.weight.abs().sum() > 0
    reloaded = CTNet(source, copy.deepcopy(target))
    reloaded.load_state_dict(model.state_dict())
    u, i = _batches()
    with torch.no_grad():
        assert torch.equal(reloaded.user_vectors(u)[0], model.user_vectors(u)[0])
        assert torch.equal(reloaded.item_vectors(i)[0], model.item_vectors(i)[0])


def test_adapter_lr_scales_only_the_adapters_learning_rate() -> None:
    """The optimizer gives the adapters lr x adapter_lr and every other dense weight lr; with a near-zero scale the
    adapters barely move while the target's towers train as before."""
    from sass_retrieval.train.loop import make_optimizer

    source, target = _pair()
    model = CTNet(source, target, adapter_lr=1e-6)
    settings = _settings()
    adam = make_optimizer(model, settings).opts[0]
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in adam.param_groups}
    adapter_ids = {id(p) for m in (model.user_adapters, model.item_adapters) for p in m.parameters()}
    assert sorted(by_lr) == pytest.approx([1e-8, 0.01]) and by_lr[min(by_lr)] == adapter_ids
    tower_before = copy.deepcopy(target.user_tower.state_dict())
    _steps(model)
    assert max(a.value.weight.abs().max().item() for a in model.user_adapters) < 1e-6
    assert any(not torch.equal(v, tower_before[k]) for k, v in target.user_tower.state_dict().items())


def test_target_emb_lr_scales_or_freezes_only_the_targets_embedding_tables() -> None:
    """emb_lr puts the target's sparse tables in a SparseAdam group at emb_lr x finetune.emb_lr; 0 freezes them (no
    gradient, bit-identical after training) while the towers still learn; a negative scale is refused."""
    from sass_retrieval.train.loop import make_optimizer

    source, target = _pair()
    settings = _settings()
    scaled = CTNet(source, copy.deepcopy(target), emb_lr=0.25)
    sparse = make_optimizer(scaled, settings).opts[1]
    assert [g["lr"] for g in sparse.param_groups] == pytest.approx([0.0025])
    assert {id(p) for p in sparse.param_groups[0]["params"]} == {id(p) for p in scaled._tables()}
    frozen = CTNet(source, target, emb_lr=0.0)
    tables = {k: v.clone() for k, v in target.state_dict().items() if k.split(".")[0] in
              ("user_emb", "video_emb", "user_fields", "item_fields")}
    tower = copy.deepcopy(target.user_tower.state_dict())
    _steps(frozen)
    assert len(tables) == 4 and all(torch.equal(v, target.state_dict()[k]) for k, v in tables.items())
    assert any(not torch.equal(v, tower[k]) for k, v in target.user_tower.state_dict().items())
    with pytest.raises(ValueError, match="emb_lr"):
        CTNet(source, copy.deepcopy(target), emb_lr=-1.0)


def test_the_state_holds_the_target_and_adapters_and_loading_it_keeps_the_source() -> None:
    """Training copies and saves the state every epoch: the frozen source (its own checkpoint) is not in it, and a
    load puts the target and adapters back strictly over whatever source the model holds."""
    source, target = _pair()
    model = CTNet(source, target)
    state = model.state_dict()
    assert not any(k.startswith("source.") for k in state)
    assert any(k.startswith("target.") for k in state) and any(k.startswith("user_adapters.") for k in state)
    other_source, other_target = _pair(3, 4)
    other = CTNet(other_source, other_target)
    before = copy.deepcopy(other_source.state_dict())
    other.load_state_dict(state)
    assert all(torch.equal(v, other_target.state_dict()[k]) for k, v in target.state_dict().items())
    assert all(torch.equal(v, other_source.state_dict()[k]) for k, v in before.items())
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({k: v for k, v in state.items() if not k.startswith("target.")})


def test_adapter_effect_is_zero_at_the_start_and_measures_how_far_the_source_moves_the_vectors() -> None:
    """0 while the adapters are at zero; positive once they carry the source; larger the more they carry."""
    source, target = _pair()
    model = CTNet(source, target).eval()
    u, i = _batches()
    assert model.adapter_effect(u, "user") == pytest.approx(0.0, abs=1e-6)
    assert model.adapter_effect(i, "item") == pytest.approx(0.0, abs=1e-6)
    effects = []
    for scale in (0.01, 1.0):
        with torch.no_grad():
            for a in model.item_adapters:
                torch.nn.init.constant_(a.value.weight, scale)
        effects.append(model.adapter_effect(i, "item"))
    assert 0.0 < effects[0] < effects[1] <= 2.0
    assert model.adapter_effect(u, "user") == pytest.approx(0.0, abs=1e-6)   # the user side still at zero


def test_source_view_shows_the_source_every_row_as_that_scenarios() -> None:
    """source_view='a': the source reads scenario b's rows as a's (the target still reads them as b's), so rows of
    a are served as without a view and rows of b are not; an unknown scenario is refused."""
    source, target = _pair()
    plain = CTNet(source, copy.deepcopy(target))
    with torch.no_grad():
        for a in (*plain.user_adapters, *plain.item_adapters):
            a.value.weight.normal_()
    viewed = CTNet(source, copy.deepcopy(target), source_view="a")
    viewed.load_state_dict(plain.state_dict())
    u, _ = _batches()
    in_a = u["scen"] == 0
    with torch.no_grad():
        p, v = plain.eval().user_vectors(u)[0], viewed.eval().user_vectors(u)[0]
    assert torch.equal(p[in_a], v[in_a]) and not torch.allclose(p[~in_a], v[~in_a])
    with pytest.raises(ValueError, match="source_view 'c'"):
        CTNet(source, target, source_view="c")
