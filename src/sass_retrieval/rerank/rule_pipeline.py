"""The rule pipeline a feed runs before it has a generator: sort by predicted click, scatter the tags, insert
cold-start items. It is the benchmark's reference for the generator's click-vs-diversity front: sweeping
``per_tag`` (at most this many items of one tag) and ``cold_slots`` (the last slots given to the best cold
items) traces the diversity and cold-start shares the rules can buy and the clicks they cost."""

from __future__ import annotations

import numpy as np
import torch

from .goals import PREDICTED, Slate
from .rules import Rules, breaks_rules

CLICK = PREDICTED.index("click")
DEFAULT_RULES = Rules()


def _fits(chosen: list[int], item: int, tags: np.ndarray, max_run: int) -> bool:
    t = tags[item]
    if t < 0 or len(chosen) < max_run:
        return True
    return not all(tags[c] == t for c in chosen[-max_run:])


def rule_lists(slate: Slate, length: int, per_tag: int, cold_slots: int, rules: Rules = DEFAULT_RULES) -> torch.Tensor:
    """(n, L) lists of candidate positions: click order with at most ``per_tag`` items per tag (relaxed when too
    few tags remain to fill the list), then the last ``cold_slots`` slots swapped for the best cold items."""
    ids, tags_all = slate.ids.numpy(), slate.tag.numpy()
    click, cold = slate.pred[..., CLICK].numpy(), slate.cold.numpy()
    out = np.full((len(ids), length), -1, np.int64)
    for r in range(len(ids)):
        valid = np.flatnonzero(ids[r] >= 0)
        order = valid[np.argsort(-click[r, valid], kind="stable")]
        tags = tags_all[r]
        chosen: list[int] = []
        counts: dict[int, int] = {}
        for cap in (per_tag, length):   # the scatter, then whatever keeps the hard rule if the list is short
            for i in order:
                if len(chosen) == length:
                    break
                t = int(tags[i])
                if i in chosen or (t >= 0 and counts.get(t, 0) >= cap) or not _fits(chosen, i, tags, rules.max_run):
                    continue
                chosen.append(int(i))
                counts[t] = counts.get(t, 0) + 1
        extra = [int(i) for i in order if cold[r, i] and i not in chosen]
        slot = len(chosen) - 1
        for item in extra[:cold_slots]:
            while slot >= 0:
                trial = chosen.copy()
                if cold[r, trial[slot]]:
                    slot -= 1
                    continue
                trial[slot] = item
                slot -= 1
                row = torch.tensor([trial + [-1] * (length - len(trial))])
                if not bool(breaks_rules(row, slate.tag[r: r + 1], rules)[0]):
                    chosen = trial
                    break
        out[r, : len(chosen)] = chosen
    return torch.from_numpy(out)
