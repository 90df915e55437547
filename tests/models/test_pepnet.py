from __future__ import annotations

import torch

from sass_retrieval.models.checkpoint import load_model
from sass_retrieval.models.pepnet import GAMMA, GateNU
from sass_retrieval.models.retrieval import ModelConfig, RetrievalModel
from sass_retrieval.models.tower import Tower
from sass_retrieval.train.checkpoint import save_checkpoint


def test_gates_start_at_one_and_stay_inside_zero_and_gamma() -> None:
    torch.manual_seed(0)
    gates = GateNU(7, [5, 3, 3], hidden=4)
    cond = torch.randn(6, 7)
    assert all(torch.equal(d, torch.ones_like(d)) for d in gates(cond))
    assert [d.shape for d in gates(cond)] == [(6, 5), (6, 3), (6, 3)]
    with torch.no_grad():
        gates.out.weight.normal_(0, 10.0)
    for d in gates(cond):
        assert bool(((d > 0) & (d < GAMMA)).all())
        assert not torch.allclose(d, torch.ones_like(d))


def test_a_pepnet_tower_starts_as_the_plain_tower_and_returns_one_vector() -> None:
    """Every delta is 1 at the start, so without the bias network the tower IS the plain (dssm) tower."""
    torch.manual_seed(0)
    pep = Tower(10, 3, 2, hidden=8, layers=3, arch="pepnet", bias_net=False)
    plain = Tower(10, 3, 2, hidden=8, layers=3, arch="dssm")
    plain.load_state_dict({k: v for k, v in pep.state_dict().items() if k.startswith("global_net.")})
    x, scen, bx = torch.randn(9, 10), torch.randint(0, 3, (9,)), torch.randn(9, 2)
    e, g = pep(x, scen, bx)
    assert e is g                                       # one vector: the single-loss path of the trainer
    assert torch.allclose(e, plain(x, scen, bx)[0], atol=1e-6)
    assert not hasattr(pep, "scenario_net") and not hasattr(pep, "gates")   # no per-scenario weights
    assert pep.scenario_drift().item() == 0.0


def test_pepnet_gates_make_the_scenario_matter_and_do_not_train_the_input_through_the_gates() -> None:
    """Once the gates have learnt something, two rows with the same features in different scenarios get different
    vectors (through b_s, the scenario bias vector the gates read), and the gradient reaching the input comes only
    through the network, not through the gates' stop-gradient copy of it."""
    torch.manual_seed(0)
    tower = Tower(10, 3, 2, hidden=8, layers=2, arch="pepnet")
    with torch.no_grad():
        tower.gate_net.out.weight.normal_(0, 1.0)
        tower.bias_proj.weight.zero_()                  # the scenario reaches the vector through the gates alone
    x, bx = torch.randn(1, 10).repeat(2, 1), torch.zeros(2, 2)
    e, _ = tower(x, torch.tensor([0, 2]), bx)
    assert not torch.allclose(e[0], e[1], atol=1e-4)

    x = torch.randn(4, 10, requires_grad=True)
    scen, bx = torch.randint(0, 3, (4,)), torch.randn(4, 2)
    tower(x, scen, bx)[0].sum().backward()
    (grad,) = torch.autograd.grad(_gated_without_gate_grad(tower, x, scen, bx).sum(), x)
    assert torch.allclose(x.grad, grad, atol=1e-6)


def _gated_without_gate_grad(tower: Tower, x: torch.Tensor, scen: torch.Tensor, bx: torch.Tensor) -> torch.Tensor:
    """The same forward with the deltas computed off the graph: the input's gradient must be the same."""
    with torch.no_grad():
        deltas = tower.gate_net(torch.cat([tower.scenario_bias(scen, bx), x], dim=-1))
    b = tower.scenario_bias(scen, bx)
    h = x
    for i, layer in enumerate(tower.global_net):
        h = tower._act(i, layer(h * deltas[i]))
    return torch.nn.functional.normalize(h + tower.bias_proj(b), dim=-1)


def test_a_pepnet_model_saves_and_loads_as_what_it_is(tmp_path) -> None:
    cfg = ModelConfig(arch="pepnet", scenarios=["a", "b"], n_user_fields=2, n_item_fields=1, user_buckets=50,
                      video_buckets=50, field_buckets=11, emb_dim=4, field_dim=2, scen_dim=2, hidden=8, layers=2,
                      gate="adaptive", gate_bias=None, bias_net=True, dropout=0.0)
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    save_checkpoint(tmp_path / "m.pt", model)
    again, _ = load_model(tmp_path / "m.pt")
    assert again.cfg.arch == "pepnet"
    assert any(k.startswith("user_tower.gate_net.") for k in again.state_dict())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
