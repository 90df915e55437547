"""Hard rules as masks on the generator's choice at each slot, never as rewards (seed 001: a rule the business
must keep cannot be traded against clicks by a weight).

Rules:

- at most ``max_run`` adjacent items of one primary tag (an unknown tag, -1, never forms a run);
- pinned items: an item that must take a given slot (an operations slot, a promoted video).

At slot t a candidate is placeable when it is valid, not yet placed, not pinned elsewhere, and placing it keeps
the run of its tag, counting the items already placed before it and the pinned items right after it, within
``max_run``; a pinned slot admits its pinned item only (looking ahead at the pins is what keeps a pinned item
placeable when its slot comes). When no candidate is placeable the list ends there: it is shorter, never
rule-breaking, and empty slots stay at the end, so dropping them cannot join two runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import BadInputError


@dataclass(frozen=True)
class Rules:
    max_run: int = 2   # at most this many adjacent items of one tag


def check_pins(pins: Tensor, tags: Tensor, valid: Tensor, rules: Rules, source: str = "pins") -> None:
    """Refuse pins no list could honour: a pin outside the candidates, an item pinned twice, or pinned items
    that alone make a run longer than ``max_run``."""
    n, length = pins.shape
    for r in range(n):
        p = pins[r]
        placed = p[p >= 0]
        if (placed >= valid.shape[1]).any() or not bool(valid[r, placed.clamp(max=valid.shape[1] - 1)].all()):
            raise BadInputError(f"{source}: request {r} pins an item that is not among its candidates")
        if len(set(placed.tolist())) != len(placed):
            raise BadInputError(f"{source}: request {r} pins one item to two slots")
        run, last = 0, None
        for t in range(length):
            tag = int(tags[r, p[t]]) if p[t] >= 0 else None
            run = run + 1 if tag is not None and tag >= 0 and tag == last else (1 if tag is not None else 0)
            last = tag
            if run > rules.max_run:
                raise BadInputError(f"{source}: request {r} pins {run} adjacent items of tag {tag}; rule max_run "
                                    f"allows {rules.max_run}")


class RuleState:
    """The rules' state while one batch of lists is built slot by slot (n requests, C candidates, L slots)."""

    def __init__(self, tags: Tensor, valid: Tensor, length: int, rules: Rules, pins: Tensor | None = None) -> None:
        n, c = tags.shape
        self.tags, self.valid, self.length, self.rules = tags, valid, length, rules
        self.pins = pins if pins is not None else torch.full((n, length), -1, dtype=torch.long)
        self.pinned = torch.zeros(n, c, dtype=torch.bool)
        rows, slots = torch.nonzero(self.pins >= 0, as_tuple=True)
        self.pinned[rows, self.pins[rows, slots]] = True
        self.placed = torch.zeros(n, c, dtype=torch.bool)
        self.last_tag = torch.full((n,), -2, dtype=torch.long)
        self.run = torch.zeros(n, dtype=torch.long)
        self.ended = torch.zeros(n, dtype=torch.bool)

    def allowed(self, t: int) -> Tensor:
        """(n, C) placeable candidates at slot t."""
        tags, known = self.tags, self.tags >= 0
        left = torch.where((tags == self.last_tag[:, None]) & known, self.run[:, None], 0)
        right = torch.zeros_like(left)
        cont = torch.ones_like(known)
        for k in range(1, self.rules.max_run + 1):
            if t + k >= self.length:
                break
            p = self.pins[:, t + k]
            ptag = torch.where(p >= 0, torch.gather(tags, 1, p.clamp(min=0)[:, None])[:, 0], -3)
            cont = cont & (p >= 0)[:, None] & (tags == ptag[:, None]) & known
            right = right + cont
        free = self.valid & ~self.placed & ~self.pinned & (left + 1 + right <= self.rules.max_run)
        pin = self.pins[:, t]
        forced = torch.zeros_like(free)
        rows = torch.nonzero(pin >= 0, as_tuple=True)[0]
        forced[rows, pin[rows]] = True
        mask = torch.where((pin >= 0)[:, None], forced, free) & ~self.ended[:, None]
        self.ended = self.ended | ~mask.any(dim=1)
        return mask

    def place(self, choice: Tensor) -> None:
        """Record slot t's choice (n,), -1 for the requests whose list has ended."""
        ok = choice >= 0
        rows = torch.nonzero(ok, as_tuple=True)[0]
        self.placed[rows, choice[rows]] = True
        tag = torch.where(ok, torch.gather(self.tags, 1, choice.clamp(min=0)[:, None])[:, 0], -2)
        same = ok & (tag == self.last_tag) & (tag >= 0)
        self.run = torch.where(same, self.run + 1, torch.where(ok, 1, 0))
        self.last_tag = tag


def breaks_rules(lists: Tensor, tags: Tensor, rules: Rules, pins: Tensor | None = None) -> Tensor:
    """(n,) True where a list breaks a rule: a run over max_run, a pin not in its slot while the list reaches
    it, a repeated item, or an empty slot before a filled one. The tests' and the benchmark's referee."""
    n, length = lists.shape
    bad = torch.zeros(n, dtype=torch.bool)
    filled = lists >= 0
    bad |= (~filled[:, :-1] & filled[:, 1:]).any(dim=1)
    t = torch.where(filled, torch.gather(tags, 1, lists.clamp(min=0)), torch.full_like(lists, -2))
    run = torch.ones(n, dtype=torch.long)
    for j in range(1, length):
        same = (t[:, j] == t[:, j - 1]) & (t[:, j] >= 0) & filled[:, j]
        run = torch.where(same, run + 1, torch.ones_like(run))
        bad |= run > rules.max_run
    s, _ = torch.sort(torch.where(filled, lists, -torch.arange(1, length + 1).expand(n, -1)), dim=1)
    bad |= (s[:, 1:] == s[:, :-1]).any(dim=1)
    if pins is not None:
        bad |= ((pins >= 0) & filled & (lists != pins)).any(dim=1)
    return bad
