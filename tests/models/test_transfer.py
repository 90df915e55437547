from __future__ import annotations

import pytest
import torch

from sass_retrieval.models.transfer import AdaptiveGates, fuse


def test_adaptive_gate_zero_leaves_the_pure_scenario_path() -> None:
    g, h = torch.randn(4, 8), torch.randn(4, 8)
    out = fuse(g, h, a=torch.zeros(4, 8), u=torch.full((4, 8), 0.7))
    # nothing transferred: t = 0, so h_s = (1 - u) * h' ... and with u = 0 exactly h'
    assert torch.allclose(out, 0.3 * h)
    assert torch.allclose(fuse(g, h, torch.zeros(4, 8), torch.zeros(4, 8)), h)


def test_update_gate_one_passes_the_transferred_global_signal() -> None:
    g, h = torch.randn(4, 8), torch.randn(4, 8)
    a = torch.rand(4, 8)
    assert torch.allclose(fuse(g, h, a, torch.ones(4, 8)), a * g)
    assert torch.allclose(fuse(g, h, torch.ones(4, 8), torch.ones(4, 8)), g)


def test_gate_layers_at_saturation() -> None:
    gates = AdaptiveGates(dim=6, bias_dim=3, kind="adaptive")
    g, h, b = torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 3)
    with torch.no_grad():
        gates.adaptive.weight.zero_()
        gates.adaptive.bias.fill_(-50.0)     # a -> 0
        gates.update.weight.zero_()
        gates.update.bias.fill_(-50.0)       # u -> 0
    assert torch.allclose(gates(g, h, b), h, atol=1e-6)
    with torch.no_grad():
        gates.adaptive.bias.fill_(50.0)      # a -> 1
        gates.update.bias.fill_(50.0)        # u -> 1
    assert torch.allclose(gates(g, h, b), g, atol=1e-6)


def test_other_gate_kinds() -> None:
    g, h, b = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 2)
    assert torch.equal(AdaptiveGates(4, 2, "none")(g, h, b), h)
    sig = AdaptiveGates(4, 2, "sigmoid")
    with torch.no_grad():
        sig.adaptive.weight.zero_()
        sig.adaptive.bias.fill_(50.0)
    assert torch.allclose(sig(g, h, b), h + g, atol=1e-6)
    with pytest.raises(ValueError, match="gate kind"):
        AdaptiveGates(4, 2, "bogus")


def test_gate_bias_starts_the_scenario_path_at_the_global_one() -> None:
    """A positive init bias opens both gates, so an untrained scenario layer mostly passes g through."""
    torch.manual_seed(0)
    g, h, b = torch.randn(64, 16), torch.randn(64, 16), torch.randn(64, 4)
    opened = AdaptiveGates(16, 4, "adaptive", init_bias=4.0)
    assert torch.equal(opened.update.bias, torch.full((16,), 4.0))
    err_open = (opened(g, h, b) - g).abs().mean()
    default = AdaptiveGates(16, 4, "adaptive")
    assert not torch.all(default.adaptive.bias == default.adaptive.bias[0])   # PyTorch's own init kept
    err_default = (default(g, h, b) - g).abs().mean()
    assert err_open < 0.25 * err_default


@pytest.mark.parametrize("kind", ["adaptive", "sigmoid"])
def test_fused_gate_computation_equals_the_design_equations(kind: str) -> None:
    """forward() splits W [g ; h' ; b] into blocks for speed; it must equal the equations as written."""
    torch.manual_seed(0)
    gates = AdaptiveGates(dim=6, bias_dim=3, kind=kind)
    g, h, b = torch.randn(7, 6), torch.randn(7, 6), torch.randn(7, 3)
    a = torch.sigmoid(gates.adaptive(torch.cat([g, h, b], -1)))
    if kind == "sigmoid":
        expected = h + a * g
    else:
        t = a * g
        u = torch.sigmoid(gates.update(torch.cat([t, h, b], -1)))
        expected = u * t + (1 - u) * h
    assert torch.allclose(gates(g, h, b), expected, atol=1e-6)
