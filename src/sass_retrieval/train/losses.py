"""Losses as pure functions of embeddings and scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over 2n views: row i of ``a`` and row i of ``b`` are positives, the other 2n-2 are negatives.

    Inputs are L2-normalised view embeddings [n, d]; the loss is the mean over all 2n anchors.
    """
    n = a.shape[0]
    z = torch.cat([a, b], dim=0)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor, log_q_pos: torch.Tensor | None = None,
                    log_q_neg: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over [positive, negatives] per row; log-Q correction when sampling was not uniform.

    pos: [B] logits, neg: [B, M] logits (use -inf to mask accidental hits). Subtracting log Q makes
    the sampled loss an unbiased stand-in for the full softmax over the scenario's pool, so a
    popularity-weighted sampler does not teach the model to push popular items down.
    """
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(s+ - s-), averaged over the valid negatives."""
    valid = torch.isfinite(neg)
    diff = pos.unsqueeze(1) - torch.where(valid, neg, torch.zeros_like(neg))
    loss = -F.logsigmoid(diff)
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def hinge(pos: torch.Tensor, neg: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    valid = torch.isfinite(neg)
    diff = torch.where(valid, margin - pos.unsqueeze(1) + neg, torch.zeros_like(neg))
    return (F.relu(diff) * valid).sum() / valid.sum().clamp(min=1)


def retrieval_loss(kind: str, pos: torch.Tensor, neg: torch.Tensor, log_q_pos: torch.Tensor | None,
                   log_q_neg: torch.Tensor | None, margin: float = 0.2) -> torch.Tensor:
    if kind == "softmax":
        return sampled_softmax(pos, neg, log_q_pos, log_q_neg)
    if kind == "bpr":
        return bpr(pos, neg)
    if kind == "hinge":
        return hinge(pos, neg, margin)
    raise ValueError(f"finetune.loss must be softmax, bpr or hinge, got {kind!r}")
