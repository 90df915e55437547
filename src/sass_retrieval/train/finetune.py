"""Stage 2: fine-tuning on clicks, the retrieval task itself.

Batches hold the positives of one training day, so that the negatives drawn for a scenario can be
embedded once per batch with that day's item snapshot (a sample from day d never sees item
statistics from d or later, positive or negative alike). Each scenario in the batch shares
``negatives`` items drawn from its own exposure space with probability ~ exposures ** alpha.
Loss = loss(scenario vectors) + aux_weight * loss(global vectors).

Early stopping, when on, holds out the last training day (never the test window): after each epoch
the model ranks that day's clicks against the scenario pools, and training stops when the macro
NDCG@50 has not improved by more than ``min_delta`` for ``patience`` epochs, and never before
``min_epochs``: one held-out day is a noisy judge, and a model whose first epochs only learn popularity
(a flat validation curve before the personal signal takes off) must not be stopped on that plateau. Then ``refit``: "full" (true) retrains from the
start on every training day for the best number of epochs; "holdout" keeps the best epoch's weights and
trains one epoch on the held-out day, the newest, so it is not lost (a day's cost, not a window's);
"none" (false) keeps the best epoch's weights as they are.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..models.retrieval import RetrievalModel
from .bank import FeatureBank, recent_days
from .loop import LoopSettings, run_epochs, step_rng
from .losses import retrieval_loss
from .sampler import NegativeSampler

log = logging.getLogger(__name__)


def refit_mode(value: bool | str) -> str:
    """params.yaml's ``finetune.refit``: true/full, holdout, false/none."""
    mode = ("full" if value else "none") if isinstance(value, bool) else str(value)
    if mode not in ("full", "holdout", "none"):
        raise ValueError(f"finetune.refit must be true/full, holdout or false/none, got {value!r}")
    return mode


@dataclass
class FinetuneSettings:
    """Values come from params.yaml's ``finetune`` section (train.recipes.finetune_settings): no defaults here."""

    KEYS: ClassVar[tuple[str, ...]] = ("batch_size", "negatives", "alpha", "logq", "loss", "margin", "temperature",
                                       "aux_weight", "early_stopping", "patience", "min_epochs", "min_delta",
                                       "refit", "recent_days")
    loop: LoopSettings
    batch_size: int
    negatives: int
    alpha: float
    logq: bool
    loss: str
    margin: float
    temperature: float
    aux_weight: float
    early_stopping: bool
    patience: int
    min_epochs: int                      # never stop before this many epochs (see the module docstring)
    min_delta: float                     # a validation gain must exceed this to count as an improvement
    refit: bool | str                    # True/"full" | "holdout" | False/"none": see the module docstring
    recent_days: int                     # train on the newest n training days only (incremental); 0 = all
    scenarios: list[str] | None = None   # train on these scenarios only (dssm_single); None = all

    def __post_init__(self) -> None:
        # a misspelt refit fails when the settings are read, not after the selection run has trained
        self.refit = refit_mode(self.refit)



def _positives(bank: FeatureBank, scenarios: list[str], days: set[int]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("scen", "user", "item", "day", "seq", "stats")}
    for s in scenarios:
        a = bank.per[s]
        m = np.isin(a.pos_day, list(days))
        cols["scen"].append(np.full(int(m.sum()), bank.scen_index(s)))
        cols["user"].append(a.pos_user[m])
        cols["item"].append(a.pos_item[m])
        cols["day"].append(a.pos_day[m])
        cols["seq"].append(a.pos_seq[m])
        cols["stats"].append(a.pos_stats[m])
    return {k: np.concatenate(v) for k, v in cols.items()}


def _day_batches(days: np.ndarray, bs: int, rng: np.random.Generator) -> list[np.ndarray]:
    batches = []
    for d in np.unique(days):
        idx = rng.permutation(np.nonzero(days == d)[0])
        batches.extend(idx[i:i + bs] for i in range(0, len(idx), bs))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def batch_loss(model: RetrievalModel, bank: FeatureBank, samplers: dict[int, NegativeSampler],
               pos: dict[str, np.ndarray], idx: np.ndarray, s: FinetuneSettings,
               rng: np.random.Generator) -> torch.Tensor:
    """Sampled-softmax (or pairwise) loss of one day's batch.

    The positives and every scenario's shared negatives go through the item tower in ONE call: a tower
    call has a fixed cost per layer (and the SASS tower has three linear maps per layer), so embedding
    each scenario's negatives separately made the step cost grow with the number of scenarios.
    """
    scen, day = pos["scen"][idx], int(pos["day"][idx[0]])
    u_s, u_g = model.user_vectors(bank.user_batch(pos["user"][idx], scen, pos["seq"][idx], pos["stats"][idx]))
    items = pos["item"][idx]
    present = [int(k) for k in np.unique(scen)]
    draws = [samplers[k].sample(rng, (s.negatives,)) for k in present]   # drawn in scenario order
    all_items = np.concatenate([items] + [neg for neg, _ in draws])
    all_scen = np.concatenate([scen] + [np.full(s.negatives, k) for k in present])
    first = bank.per[bank.scenarios[present[0]]].item_daily
    stats = np.empty((len(all_items), first.shape[-1]), dtype=first.dtype)
    for k in present:                            # each row's item statistics in its own scenario, that day
        m = all_scen == k
        stats[m] = bank.per[bank.scenarios[k]].item_daily[day, all_items[m]]
    i_s_all, i_g_all = model.item_vectors(bank.item_batch(all_items, all_scen, stats))
    # Each row is scored against its own scenario's negatives only: the rows are put in scenario order once
    # and each scenario's block of rows meets its block of negatives in one matmul. Scoring every row against
    # every scenario's negatives and gathering the own block (the previous way) cost one matmul per scenario
    # present on the whole batch, and its backward a zero-filled (rows, scenarios, negatives) buffer: half of
    # dssm_mixed's step on KuaiRand. The loss is a mean over rows, so the row order does not matter.
    n_pos, n_neg = len(items), s.negatives
    block = np.searchsorted(present, scen)                               # row -> its scenario's block
    order = np.argsort(block, kind="stable")
    counts = np.bincount(block, minlength=len(present)).tolist()
    rows = torch.from_numpy(order)
    neg_items = np.stack([neg for neg, _ in draws])                      # (scenarios present, negatives)
    hit = torch.from_numpy(items[order, None] == neg_items[block[order]])  # accidental hits: masked
    log_q = (torch.from_numpy(np.log(np.stack([q for _, q in draws]) * n_neg)).float()[block[order]]
             if s.logq else None)
    # dssm returns one vector as both scenario and global vector: one loss term weighted 1 + aux_weight
    same = u_s is u_g and i_s_all is i_g_all
    terms = [(u_s, i_s_all, 1.0 + s.aux_weight)] if same else [(u_s, i_s_all, 1.0), (u_g, i_g_all, s.aux_weight)]
    total = torch.zeros(())
    for vec_u, vec_i, w in terms:
        if w == 0:
            continue
        u = vec_u[rows]
        pos_logit = (u * vec_i[:n_pos][rows]).sum(-1) / s.temperature
        negs = vec_i[n_pos:].view(len(present), n_neg, -1)
        every = torch.cat([chunk @ negs[k].T for k, chunk in enumerate(u.split(counts))])
        neg_logit = (every / s.temperature).masked_fill(hit, float("-inf"))
        total = total + w * retrieval_loss(s.loss, pos_logit, neg_logit, None, log_q, s.margin)
    return total


@torch.no_grad()
def validate_day(model: RetrievalModel, bank: FeatureBank, pos: dict[str, np.ndarray], scenarios: list[str],
                 k: int = 50) -> float:
    """Macro NDCG@k of ranking each held-out click against its scenario's pool (that day's snapshot)."""
    model.eval()
    scores = []
    for name in scenarios:
        si = bank.scen_index(name)
        m = pos["scen"] == si
        if not m.any():
            continue
        a = bank.per[name]
        day = int(pos["day"][m][0])
        pool = a.pool
        iv, _ = model.item_vectors(bank.item_batch(pool, np.full(len(pool), si), a.item_daily[day, pool]))
        uv, _ = model.user_vectors(bank.user_batch(pos["user"][m], pos["scen"][m], pos["seq"][m], pos["stats"][m]))
        sc = uv @ iv.T
        target = torch.from_numpy(np.searchsorted(np.sort(pool), pos["item"][m]))
        order = torch.from_numpy(np.argsort(pool))
        sc = sc[:, order]
        in_pool = torch.from_numpy(np.isin(pos["item"][m], pool))
        tgt = sc.gather(1, target.clamp(max=len(pool) - 1).unsqueeze(1))
        rank = (sc > tgt).sum(1)
        ndcg = torch.where(in_pool & (rank < k), 1.0 / torch.log2(rank.float() + 2.0), torch.zeros(()))
        scores.append(float(ndcg.mean()))
    model.train()
    return float(np.mean(scores)) if scores else float("nan")


def finetune(model: RetrievalModel, bank: FeatureBank, s: FinetuneSettings, out_dir: Path) -> dict[str, Any]:
    bank.require_training_samples("fine-tuning")
    scenarios = s.scenarios or bank.scenarios
    samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                for n in scenarios}
    all_days = recent_days(len(bank.train_dates), s.recent_days)
    out_dir = Path(out_dir)
    report: dict[str, Any] = {}

    def train_on(days: set[int], settings: LoopSettings, tag: str, on_epoch_end=None) -> dict[str, Any]:
        pos = _positives(bank, scenarios, days)
        if len(pos["user"]) == 0:
            raise ValueError(f"fine-tuning ({tag}): no clicks in the training days for scenarios {scenarios}")

        def batches(epoch: int) -> Iterator[tuple[int, Any]]:
            plan = _day_batches(pos["day"], s.batch_size, step_rng(settings.seed, epoch, -1))
            for step, idx in enumerate(plan):
                yield step, (lambda idx=idx, step=step: batch_loss(model, bank, samplers, pos, idx, s,
                                                                   step_rng(settings.seed, epoch, step)))

        n = len(_day_batches(pos["day"], s.batch_size, np.random.default_rng(0)))
        return run_epochs(model, settings, lambda e: n, batches, out_dir / f"resume-{tag}.pt",
                          out_dir / f"loss-{tag}.csv", f"finetune[{tag}]", on_epoch_end)

    last = max(all_days)
    if s.early_stopping and len(all_days) > 1:
        val = _positives(bank, scenarios, {last})
        reported = [n for n in scenarios if n in bank.reported] or scenarios
        initial = copy.deepcopy(model.state_dict())
        best = {"score": -1.0, "epoch": 0, "state": None}
        curve: list[dict[str, float]] = []

        def check(epoch: int) -> tuple[bool, dict[str, float]]:
            """Stop?, and the epoch's validation metric for DVCLive."""
            score = validate_day(model, bank, val, reported)
            curve.append({"epoch": epoch + 1, "val_ndcg@50": score})
            log.info("validation (last training day) macro NDCG@50 after epoch %d: %.4f", epoch + 1, score)
            if score > best["score"] + s.min_delta:
                best.update(score=score, epoch=epoch + 1, state=copy.deepcopy(model.state_dict()))
            return epoch + 1 >= s.min_epochs and epoch + 1 - best["epoch"] >= s.patience, {"val_ndcg@50": score}

        report["select"] = train_on(all_days - {last}, s.loop, "select", check)
        report["validation"] = curve
        report["best_epoch"] = best["epoch"]
        report["best_val_ndcg@50"] = best["score"]
        if s.refit == "full":
            model.load_state_dict(initial)
            report["refit"] = train_on(all_days, replace(s.loop, epochs=max(best["epoch"], 1)), "refit")
        else:
            model.load_state_dict(best["state"])
            if s.refit == "holdout":
                report["refit"] = train_on({last}, replace(s.loop, epochs=1), "refit")
    else:
        report["refit"] = train_on(all_days, s.loop, "full")
    return report
