"""The goals a served list is judged on, each a utility of the whole list, and the weighted reward.

A request's candidates form a :class:`Slate`: per candidate the evaluator's per-item predictions (click,
long view, like), its primary tag and whether it is a cold-start item. A list is an (n, L) array of candidate
positions into the slate (-1 = an empty slot, when the hard rules leave nothing placeable).

Utilities, each in [0, 1] so that weights mean the same thing whatever the goal:

- ``click``, ``long_view``, ``like``: the expected count of the event over the list with a position discount
  1 / log2(2 + position), divided by the discount's sum, so a list of certain events scores 1;
- ``diversity``: distinct primary tags among the L slots / L (seed 001's "variety" goal);
- ``cold_start``: the share of the L slots holding an item with at most ``rerank.cold_max`` exposures in the
  training window (new items need impressions to be learnt at all).

``WEIGHTED`` are the goals the business sets weights on. Long views are reported but not weighted: on
KuaiRand-Pure a long view is almost always a click (P(click | long view) ~ 0.997), so its weight could not move
the list apart from the click weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError

PREDICTED = ("click", "long_view", "like")            # per-item predictions of the evaluator
GOALS = ("click", "long_view", "like", "diversity", "cold_start")
WEIGHTED = ("click", "like", "diversity", "cold_start")
SCALE_FLOOR = 1e-3
"""The least spread a goal's scale takes: a goal that random lists barely move (no cold-start item among most
requests' candidates) would otherwise turn one such item into a reward that drowns every other goal."""


@dataclass
class Slate:
    """A batch of requests' candidates (n requests, C candidates each, in the order they arrived)."""

    ids: Tensor          # (n, C) int64 video ids, -1 where a request has fewer candidates
    pred: Tensor         # (n, C, len(PREDICTED)) float32 probabilities
    tag: Tensor          # (n, C) int64 primary tag, -1 unknown (never equal to another unknown)
    cold: Tensor         # (n, C) bool

    @property
    def valid(self) -> Tensor:
        return self.ids >= 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: Tensor | np.ndarray | slice) -> Slate:
        return Slate(self.ids[rows], self.pred[rows], self.tag[rows], self.cold[rows])


def discounts(length: int) -> Tensor:
    return 1.0 / torch.log2(torch.arange(length, dtype=torch.float32) + 2.0)


def _gather(x: Tensor, lists: Tensor) -> Tensor:
    """x[(n, C, ...)] at the list's positions -> (n, L, ...); empty slots read position 0 (masked by callers)."""
    idx = lists.clamp(min=0)
    if x.dim() == 2:
        return torch.gather(x, 1, idx)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def distinct_tags(tags: Tensor, filled: Tensor) -> Tensor:
    """Distinct known tags per row of (n, L), counting each unknown (-1) tag as its own."""
    t = torch.where(filled, tags, torch.full_like(tags, -2))
    s, _ = torch.sort(t, dim=1)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    new |= s == -1   # unknown tags never repeat one another
    return (new & (s != -2)).sum(dim=1)


def utilities(slate: Slate, lists: Tensor) -> dict[str, Tensor]:
    """Every goal's utility (n,) of each request's list (n, L) of candidate positions."""
    n, length = lists.shape
    filled = lists >= 0
    disc = discounts(length) * filled
    norm = discounts(length).sum()
    pred = _gather(slate.pred, lists)
    out = {g: (pred[..., i] * disc).sum(dim=1) / norm for i, g in enumerate(PREDICTED)}
    out["diversity"] = distinct_tags(_gather(slate.tag, lists), filled).float() / length
    out["cold_start"] = (_gather(slate.cold, lists) & filled).sum(dim=1).float() / length
    return out


def reward(util: Mapping[str, Tensor], weights: Tensor, scales: Mapping[str, float]) -> Tensor:
    """R_w = sum over WEIGHTED goals of w_g * u_g / scale_g; ``weights`` (n, len(WEIGHTED)) or (len(WEIGHTED),).
    Dividing by each goal's spread over random lists makes a weight of 1 move every goal about as much."""
    w = weights if weights.dim() == 2 else weights.unsqueeze(0)
    return sum(w[:, i] * util[g] / float(scales[g]) for i, g in enumerate(WEIGHTED))


def weight_vector(weights: Mapping[str, float] | None, defaults: Mapping[str, float],
                  source: str = "weights") -> Tensor:
    """A full weight vector in WEIGHTED order from a partial mapping (missing goals take ``defaults``);
    unknown goals and weights outside [0, 1] are refused in one line naming the goal."""
    given = dict(weights or {})
    unknown = sorted(set(given) - set(WEIGHTED))
    if unknown:
        raise BadInputError(f"{source}: unknown goal(s) {', '.join(unknown)}: must be among {', '.join(WEIGHTED)}")
    out = []
    for g in WEIGHTED:
        v = float(given.get(g, defaults[g]))
        if not 0.0 <= v <= 1.0 or v != v:
            raise BadInputError(f"{source}: weight of {g} is {v}: must be in [0, 1]")
        out.append(v)
    return torch.tensor(out, dtype=torch.float32)


def parse_weights(text: str | None, source: str = "weights") -> dict[str, float]:
    """``"click:1,diversity:0.3"`` -> {"click": 1.0, "diversity": 0.3} (the service's and CLI's syntax)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition(":")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise BadInputError(f"{source}: {part!r} is not goal:weight (e.g. click:1,diversity:0.3)") from None
    return out


def spread(slate: Slate, length: int, samples: int, seed: int) -> dict[str, float]:
    """Each goal's standard deviation over random lists of the slate's valid candidates: the reward's scales."""
    gen = torch.Generator().manual_seed(seed)
    vals: dict[str, list[Tensor]] = {g: [] for g in GOALS}
    for _ in range(samples):
        noise = torch.rand(slate.ids.shape, generator=gen).masked_fill(~slate.valid, 2.0)
        lists = torch.argsort(noise, dim=1)[:, :length]
        lists = torch.where(torch.gather(slate.valid, 1, lists), lists, torch.full_like(lists, -1))
        for g, v in utilities(slate, lists).items():
            vals[g].append(v)
    return {g: max(float(torch.cat(v).std()), SCALE_FLOOR) for g, v in vals.items()}
