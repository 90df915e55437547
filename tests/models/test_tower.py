from __future__ import annotations

import pytest
import torch
from torch import nn

from sass_retrieval.models.tower import ScenarioLinear, Tower, segmented_linear


def per_scenario_loop(layer: ScenarioLinear, x: torch.Tensor, scen: torch.Tensor) -> torch.Tensor:
    """The reference: one matmul per scenario present, as the layer was first written."""
    w, b = layer.scenario_weights()
    out = x.new_zeros(x.shape[0], layer.out_features)
    for s in torch.unique(scen).tolist():
        rows = (scen == s).nonzero(as_tuple=True)[0]
        out[rows] = x[rows] @ w[s].T + b[s]
    return out


@pytest.mark.parametrize("mode", ["full", "star", "lowrank"])
def test_batched_scenario_layer_equals_the_per_scenario_loop(mode: str) -> None:
    torch.manual_seed(0)
    shared = nn.Linear(11, 7)
    layer = ScenarioLinear(4, 11, 7, mode, shared)
    with torch.no_grad():  # star starts equal to the shared layer: perturb so scenarios differ
        layer.weight.add_(0.3 * torch.randn_like(layer.weight))
        layer.bias.add_(0.3 * torch.randn_like(layer.bias))
    x, scen = torch.randn(50, 11), torch.randint(0, 4, (50,))
    scen[:3] = torch.tensor([3, 3, 0])
    assert torch.allclose(layer(x, scen), per_scenario_loop(layer, x, scen), atol=1e-6)
    # gradients agree too
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    layer(x1, scen).square().sum().backward()
    g_batched = layer.weight.grad.clone()
    layer.weight.grad = None
    per_scenario_loop(layer, x2, scen).square().sum().backward()
    assert torch.allclose(g_batched, layer.weight.grad, atol=1e-5)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_segmented_layer_on_sorted_rows_equals_the_per_scenario_loop() -> None:
    torch.manual_seed(2)
    layer = ScenarioLinear(4, 11, 7)
    scen = torch.sort(torch.randint(0, 4, (40,)))[0]
    scen[scen == 2] = 1                                    # a scenario with no rows
    x = torch.randn(40, 11)
    counts = torch.bincount(scen, minlength=4).tolist()
    w, b = layer.scenario_weights()
    assert torch.allclose(segmented_linear(x, counts, w, b), per_scenario_loop(layer, x, scen), atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "star"])
def test_tower_output_does_not_depend_on_the_row_order(mode: str) -> None:
    """The tower sorts rows by scenario once and restores the caller's order: shuffling the rows shuffles
    the outputs and changes nothing else, values and gradients."""
    torch.manual_seed(3)
    tower = Tower(10, 3, 2, hidden=8, layers=3, scenario_layer=mode, residual=True)
    with torch.no_grad():
        for layer in tower.scenario_net:
            layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    x, scen, bx = torch.randn(30, 10), torch.randint(0, 3, (30,)), torch.randn(30, 2)
    perm = torch.randperm(30)
    e, g = tower(x, scen, bx)
    e_p, g_p = tower(x[perm], scen[perm], bx[perm])
    assert torch.allclose(e[perm], e_p, atol=1e-6) and torch.allclose(g[perm], g_p, atol=1e-6)
    e.square().sum().backward()
    grad = tower.scenario_net[0].weight.grad.clone()
    tower.zero_grad()
    e_p.square().sum().backward()
    assert torch.allclose(grad, tower.scenario_net[0].weight.grad, atol=1e-5)


def test_star_layer_starts_as_the_shared_layer_and_does_not_own_it() -> None:
    shared = nn.Linear(6, 5)
    layer = ScenarioLinear(3, 6, 5, "star", shared)
    x, scen = torch.randn(9, 6), torch.tensor([0, 1, 2] * 3)
    assert torch.allclose(layer(x, scen), shared(x))
    assert {n for n, _ in layer.named_parameters()} == {"weight", "bias"}


def test_old_per_scenario_checkpoints_still_load() -> None:
    layer = ScenarioLinear(2, 4, 3)
    old = {f"layers.{s}.{k}": v[s] for s in range(2) for k, v in (("weight", layer.weight), ("bias", layer.bias))}
    fresh = ScenarioLinear(2, 4, 3)
    fresh.load_state_dict({k: v.detach().clone() for k, v in old.items()})
    assert torch.equal(fresh.weight, layer.weight)


def test_residual_tower_adds_the_global_vector() -> None:
    torch.manual_seed(1)
    plain = Tower(10, 3, 2, hidden=8, layers=2)
    res = Tower(10, 3, 2, hidden=8, layers=2, residual=True)
    res.load_state_dict(plain.state_dict())
    x, scen, bx = torch.randn(6, 10), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(6, 2)
    e_plain, g = plain(x, scen, bx)
    e_res, g2 = res(x, scen, bx)
    assert torch.allclose(g, g2)
    assert not torch.allclose(e_plain, e_res)


def test_unknown_scenario_layer_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="scenario layer mode"):
        ScenarioLinear(2, 3, 4, "moe")


@pytest.mark.parametrize("mode", ["full", "star", "lowrank"])
def test_drift_is_the_squared_distance_of_every_scenario_layer_from_the_shared_one(mode: str) -> None:
    torch.manual_seed(4)
    shared = nn.Linear(6, 5)
    layer = ScenarioLinear(3, 6, 5, mode, shared)
    with torch.no_grad():
        layer.weight.add_(0.2 * torch.randn_like(layer.weight))
        layer.bias.add_(0.2 * torch.randn_like(layer.bias))
    w, b = layer.scenario_weights()
    expected = sum(((w[s] - shared.weight) ** 2).sum() + ((b[s] - shared.bias) ** 2).sum() for s in range(3))
    assert torch.allclose(layer.drift(), expected, atol=1e-5)
    layer.drift().backward()
    assert shared.weight.grad is None                    # the penalty moves the scenario, never the shared layer
    assert layer.weight.grad.abs().sum() > 0


def test_a_star_tower_starts_with_no_drift_and_a_dssm_tower_has_none() -> None:
    assert Tower(10, 3, 2, hidden=8, layers=3, scenario_layer="star").scenario_drift().item() == 0.0
    assert Tower(10, 3, 2, hidden=8, layers=3, arch="dssm").scenario_drift().item() == 0.0
    assert Tower(10, 3, 2, hidden=8, layers=3, scenario_layer="full").scenario_drift().item() > 0.0


def test_partitioned_norm_starts_as_batch_norm_and_moves_each_scenario_on_its_own() -> None:
    """At the start gamma_s = 1, beta_s = 0: plain batch normalisation. A scenario's own shift moves only its rows."""
    from sass_retrieval.models.tower import PartitionedNorm

    pn = PartitionedNorm(3, 4)
    x = torch.randn(12, 4) * 5 + 2
    scen = torch.tensor([0, 1, 2] * 4)
    ref = torch.nn.functional.batch_norm(x, None, None, training=True)
    assert torch.allclose(pn(x, scen), ref, atol=1e-5)
    with torch.no_grad():
        pn.beta_s[1] += 3.0
    moved = pn(x, scen) - ref
    assert torch.allclose(moved[scen == 1], torch.full((4, 4), 3.0), atol=1e-5)
    assert torch.allclose(moved[scen != 1], torch.zeros(8, 4), atol=1e-5)


def test_tower_with_scenario_norm_does_not_depend_on_row_order() -> None:
    """Serving (eval mode, running statistics): a row's vector is the same wherever it sits in the batch."""
    torch.manual_seed(0)
    tower = Tower(10, 3, 3, hidden=8, layers=2, scenario_layer="star", residual=True, scenario_norm=True)
    x, scen, bx = torch.randn(9, 10), torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2]), torch.randn(9, 3)
    tower.train()
    tower(x, scen, bx)                 # one training batch moves the running statistics
    tower.eval()
    perm = torch.randperm(9)
    a, _ = tower(x, scen, bx)
    b, _ = tower(x[perm], scen[perm], bx[perm])
    assert torch.allclose(a[perm], b, atol=1e-6)


def test_a_star_tower_starts_as_the_plain_tower_and_returns_one_vector() -> None:
    """arch="star": M_s = 1 and c_s = 0 at the start, so without the bias network the tower IS the plain (dssm)
    tower with the same shared weights; it returns its one vector as both scenario and global vector."""
    torch.manual_seed(5)
    star = Tower(10, 3, 2, hidden=8, layers=3, arch="star", bias_net=False)
    plain = Tower(10, 3, 2, hidden=8, layers=3, arch="dssm")
    plain.load_state_dict({k: v for k, v in star.state_dict().items() if k.startswith("global_net.")})
    x, scen, bx = torch.randn(12, 10), torch.tensor([2, 0, 1] * 4), torch.randn(12, 2)
    e, g = star(x, scen, bx)
    assert e is g
    assert torch.allclose(e, plain(x, scen, bx)[0], atol=1e-6)
    assert not hasattr(star, "gates")                   # no transfer gates, no second network


def test_a_star_tower_adapts_each_scenario_and_trains_the_shared_layer_through_all_of_them() -> None:
    torch.manual_seed(6)
    tower = Tower(10, 3, 2, hidden=8, layers=2, arch="star", scenario_layer="full")   # star whatever it says
    assert all(layer.mode == "star" for layer in tower.scenario_net)
    x, bx = torch.randn(6, 10), torch.randn(6, 2)
    scen = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        tower.scenario_net[0].weight[1].mul_(2.0)       # scenario 1's mask moves away from the shared layer
    moved = tower(x, scen, bx)[0]
    moved.square().sum().backward()
    with torch.no_grad():
        tower.scenario_net[0].weight[1].div_(2.0)
        back = tower(x, scen, bx)[0]
    changed = ~torch.isclose(moved, back).all(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]   # only scenario 1's rows
    assert tower.global_net[0].weight.grad.abs().sum() > 0   # the shared W learns through W * M_s
    with torch.no_grad():
        tower.scenario_net[0].weight[1].mul_(2.0)
    assert tower.scenario_drift().item() > 0


def test_a_star_tower_does_not_depend_on_the_row_order() -> None:
    torch.manual_seed(7)
    tower = Tower(10, 3, 2, hidden=8, layers=3, arch="star", scenario_norm=True).eval()
    with torch.no_grad():
        for layer in tower.scenario_net:
            layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    x, scen, bx = torch.randn(30, 10), torch.randint(0, 3, (30,)), torch.randn(30, 2)
    perm = torch.randperm(30)
    assert torch.allclose(tower(x, scen, bx)[0][perm], tower(x[perm], scen[perm], bx[perm])[0], atol=1e-6)
