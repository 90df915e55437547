from __future__ import annotations

import math

import torch

from sass_retrieval.train.losses import bpr, hinge, nt_xent, sampled_softmax


def test_nt_xent_matches_a_hand_computed_case() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    tau = 0.5
    z = [a[0], a[1], b[0], b[1]]
    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        sims = {j: float(z[i] @ z[j]) / tau for j in range(4) if j != i}   # the 2n-1 others: 1 positive, 2n-2 negatives
        total += -(sims[partner[i]] - math.log(sum(math.exp(v) for v in sims.values())))
    assert math.isclose(float(nt_xent(a, b, tau)), total / 4, rel_tol=1e-5)


def test_nt_xent_prefers_aligned_views() -> None:
    a = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    assert nt_xent(a, a, 0.1) < nt_xent(a, a.roll(1, 0), 0.1)


def test_sampled_softmax_with_and_without_logq() -> None:
    pos, neg = torch.tensor([2.0]), torch.tensor([[1.0, 0.0]])
    expect = -(2.0 - math.log(math.exp(2) + math.exp(1) + 1))
    assert math.isclose(float(sampled_softmax(pos, neg)), expect, rel_tol=1e-6)
    lq = torch.log(torch.tensor([[0.5, 0.25]]))
    expect_q = -(2.0 - math.log(math.exp(2) + math.exp(1 - math.log(0.5)) + math.exp(0 - math.log(0.25))))
    assert math.isclose(float(sampled_softmax(pos, neg, None, lq)), expect_q, rel_tol=1e-6)
    masked = sampled_softmax(pos, torch.tensor([[float("-inf"), 0.0]]))
    assert math.isclose(float(masked), -(2.0 - math.log(math.exp(2) + 1)), rel_tol=1e-6)


def test_pairwise_losses_ignore_masked_negatives() -> None:
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, float("-inf")]])
    assert math.isclose(float(bpr(pos, neg)), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    assert math.isclose(float(hinge(pos, torch.tensor([[0.9, float("-inf")]]), margin=0.2)), 0.1, rel_tol=1e-5)
