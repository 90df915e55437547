"""Training the generator against the frozen evaluator with REINFORCE (seed 001).

loss = -(R_w(generated) - R_w(baseline)) * log P(generated), the baseline list being the first L candidates in
the order they arrived (the retrieval / pre-ranker order): the generator is pushed toward lists the evaluator
prefers to what the upstream stages would serve, and the baseline removes most of the reward's variance
without a learnt critic. w is drawn per batch, each weight uniform on [0, 1], so the hypernetwork learns the
whole weight space; ``fixed_w`` trains the per-w reference instead. Everything random follows ``seed``.

Two additions to the bare estimator, both because the weights must stay able to change the list: the batch's
mean advantage is subtracted as well (one w per batch, so it is a baseline of that w and keeps the estimator
unbiased), and an entropy bonus keeps the sampled lists varied; without them the policy collapses early to one
list that is good for the average w, and no later w can move it (docs/lab/notes.md). The advantages are also
divided by their standard deviation in the batch: a w that weighs a goal with a tiny spread (a cold-start item
in one request of a hundred) would otherwise take steps a hundred times larger than the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from .generator import GeneratorConfig, ListGenerator
from .goals import WEIGHTED, Slate, reward, utilities
from .rules import Rules, RuleState


@dataclass(frozen=True)
class ReinforceSettings:
    epochs: int = 6
    batch_size: int = 256
    lr: float = 0.002
    entropy: float = 0.05    # weight of the entropy bonus (see train_generator)
    seed: int = 0
    progress: bool = False


def baseline_lists(slate: Slate, length: int, rules: Rules) -> torch.Tensor:
    """The upstream order's list under the hard rules: at each slot, the first placeable candidate."""
    n, c = slate.ids.shape
    state = RuleState(slate.tag, slate.valid, length, rules)
    out = []
    order = torch.arange(c, dtype=torch.float32).expand(n, c)
    for t in range(length):
        mask = state.allowed(t)
        choice = torch.where(mask.any(dim=1), torch.where(mask, -order, -math.inf).argmax(dim=1), -1)
        state.place(choice)
        out.append(choice)
    return torch.stack(out, dim=1)


def sample_weights(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, len(WEIGHTED), generator=gen)


def train_generator(train: Slate, valid: Slate, scales: Mapping[str, float], cfg: GeneratorConfig, rules: Rules,
                    settings: ReinforceSettings, fixed_w: torch.Tensor | None = None
                    ) -> tuple[ListGenerator, dict[str, Any]]:
    """Train on ``train``'s requests; the report holds per epoch the mean advantage over the baseline on the
    held-out requests ``valid`` at fresh random weights (the same weights every epoch) and the kept epoch."""
    torch.manual_seed(settings.seed)
    model = ListGenerator(cfg, rules)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    base_train = baseline_lists(train, cfg.length, rules)
    base_valid = baseline_lists(valid, cfg.length, rules)
    valid_w = sample_weights(len(valid), torch.Generator().manual_seed(settings.seed + 1)) if fixed_w is None \
        else fixed_w.expand(len(valid), -1)
    valid_base_r = reward(utilities(valid, base_valid), valid_w, scales)
    history, best, best_state = [], -math.inf, None
    n = len(train)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        batches = list(order.split(settings.batch_size))
        total = 0.0
        for idx in tqdm(batches, desc=f"rerank epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress,
                        leave=False):
            part = train.take(idx)
            w = sample_weights(1, gen)[0] if fixed_w is None else fixed_w
            lists, logp, ent = model(part, w, sample=True, generator=gen)
            with torch.no_grad():
                adv = reward(utilities(part, lists), w, scales) - reward(utilities(part, base_train[idx]), w, scales)
            total += float(adv.sum())
            adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(adv) > 1 else adv - adv.mean()
            loss = -(adv * logp).mean() - settings.entropy * ent.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        lists = model.generate(valid, valid_w)
        gain = float((reward(utilities(valid, lists), valid_w, scales) - valid_base_r).mean())
        history.append({"epoch": epoch + 1, "train_advantage": total / max(n, 1), "valid_advantage": gain})
        if gain > best:
            best, best_state = gain, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, {"epochs": history, "best_valid_advantage": best, "train_requests": n,
                   "valid_requests": len(valid)}
