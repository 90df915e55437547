"""Stage 2: fine-tuning on clicks, the retrieval task itself.

Batches hold the positives of one training day, so that the negatives drawn for a scenario can be
embedded once per batch with that day's item snapshot (a sample from day d never sees item
statistics from d or later, positive or negative alike). Each scenario in the batch shares
``negatives`` items drawn from its own exposure space with probability ~ exposures ** alpha.
Loss = loss(scenario vectors) + aux_weight * loss(global vectors).

Early stopping, when on, holds out the last ``holdout_days`` training days (never the test window): after
each epoch the model ranks those days' clicks against the scenario pools (each day's own pool snapshot), and training stops when the macro
NDCG@50 has not improved by more than ``min_delta`` for ``patience`` epochs, and never before
``min_epochs``: one held-out day is a noisy judge, and a model whose first epochs only learn popularity
(a flat validation curve before the personal signal takes off) must not be stopped on that plateau. Then ``refit``: "full" (true) retrains from the
start on every training day for the best number of epochs; "holdout" keeps the best epoch's weights and
trains one epoch on the held-out days, the newest, so they are not lost (a day's cost, not a window's);
"none" (false) keeps the best epoch's weights as they are. A warm-started model can also be asked to compete with
its own start (``keep_start``): the held-out days score it before the first epoch, as "epoch 0", and if no epoch
beats it the selection keeps the start (then refits as above). A model that starts from one that already knows
its scenario (a CTNet target over a source trained on every scenario) otherwise has to train ``min_epochs`` on
that scenario alone and hand over whatever those epochs left.

One stopping rule does not fit every scenario: the largest one keeps improving after the macro average, which
the small scenarios' noise dominates, has peaked. A scenario with at least ``own_epoch_min_clicks`` held-out
clicks therefore keeps the epoch best for it (and gets its own refit), when the caller asks for such
per-scenario models; training goes on while it still improves.

Weight averaging (``average_from``, train.averaging): from that epoch on, the model a phase hands over is
the mean of its epoch-end weights, not the last epoch's; early stopping judges (and keeps) that mean, and
the "holdout" refit adds the held-out day's epoch to the selected mean instead of replacing it.

The popularity prior (``prior_grid``): the log-Q corrected softmax learns the click probability *relative* to
the sampling proposal, i.e. it removes popularity from the scores on purpose, and a tab whose clicks follow
popularity then ranks below the ``popular`` row. Serving adds w_s * log1p(clicks of the item in scenario s
over the window) to the inner product; w_s is chosen per scenario from ``prior_grid`` on the held-out days, at
the epoch early stopping keeps for that scenario (with the counts as of before each held-out day), so the test
window never picks it. It is stored in the model's config (``ModelConfig.prior_weights``) and the index adds
it as one more column (evaluate.embedding_recommender.serving_prior). No held-out day (early stopping off, an
incremental day): the weights the model was warm-started with stay.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.bank import FeatureBank, click_prior, recent_days, select_positives
from ..models.retrieval import RetrievalModel
from ..params_schema import Finetune, Multitask
from .averaging import EpochAverage
from .distill import DistillInput
from .distributed import world
from .loop import LoopSettings, run_epochs, step_rng
from .losses import retrieval_loss
from .sampler import NegativeSampler
from .stream import PositiveStream, positive_ids, stream_loader

log = logging.getLogger(__name__)


def refit_mode(value: bool | str) -> str:
    """params.yaml's ``finetune.refit``: true/full, holdout, false/none."""
    mode = ("full" if value else "none") if isinstance(value, bool) else str(value)
    if mode not in ("full", "holdout", "none"):
        raise ValueError(f"finetune.refit must be true/full, holdout or false/none, got {value!r}")
    return mode


@dataclass(frozen=True)
class FinetuneJob:
    """One fine-tuning call: the ``finetune`` section it trains with (params.finetune, or a row's copy of it:
    train.recipes.finetune_job) and what the caller decides beyond those knobs."""

    knobs: Finetune
    loop: LoopSettings                   # epochs, learning rates and checkpointing (train.recipes.loop_settings)
    scenarios: list[str] | None = None   # train on these scenarios only (dssm_single, ctnet); None = all
    multitask: Multitask | None = None   # the multi-objective row: its loss weights and hard negatives
    keep_start: bool = False             # early stopping may keep the model as it started ("epoch 0"): warm starts
    input: str = "memory"                # train.input: the positives from the bank's memory, or streamed (train.stream)
    shuffle_buffer: int = 65536          # train.shuffle_buffer: rows the streamed input shuffles among
    distill: DistillInput | None = None  # the teacher's groups (train.distill): adds the distillation term


def _positives(bank: FeatureBank, scenarios: list[str], days: set[int], objective: str = "click",
               labels: bool = False) -> dict[str, np.ndarray]:
    """The training positives of ``scenarios`` on ``days``, from the bank's memory (models.bank.select_positives:
    ``objective`` "click", the click rows; another objective, the rows positive for it; ``labels``, every
    multi-objective row with its (n, K) labels, OBJECTIVES order, for the multi-task loss).

    A streaming bank (``train.input: stream``) holds the held-out validation days only: asking it for another day
    is an error, not an empty answer (the training days come from train.stream)."""
    files = bank.positive_files
    if files is not None and not files.holds(days):
        raise ValueError(f"train.input stream: the feature bank holds the positives of days "
                         f"{sorted(files.memory_days or ())} only, not {sorted(set(days))}; the others are streamed")
    parts = [select_positives(vars(bank.per[s]), bank.scen_index(s), days, objective, labels) for s in scenarios]
    keys = ("scen", "user", "item", "day", "seq", "stats", *(("labels",) if labels else ()))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _day_batches(days: np.ndarray, bs: int, rng: np.random.Generator) -> list[np.ndarray]:
    batches = []
    for d in np.unique(days):
        idx = rng.permutation(np.nonzero(days == d)[0])
        batches.extend(idx[i:i + bs] for i in range(0, len(idx), bs))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


@dataclass
class EmbeddedBatch:
    """One day's batch through both towers, and what scoring each row against its own scenario's negatives
    needs. Rows are kept in scenario order (``rows``: batch positions in that order), so each scenario's
    block of rows meets its block of negatives in one matmul; losses are means over rows, so the order is free.
    """

    user: Any                 # what the model's user side returned for the batch's rows (batch order)
    item: Any                 # ... and its item side for [positives; every present scenario's negatives]
    rows: torch.Tensor        # batch positions in scenario order
    counts: list[int]         # rows per present scenario, in that order
    hit: torch.Tensor         # (rows, negatives) the negative is the row's own positive: masked
    log_q: torch.Tensor | None
    n_pos: int
    n_blocks: int
    block: torch.Tensor       # each row's scenario block, scenario order
    items: torch.Tensor       # each row's positive item, scenario order
    in_batch: bool = False    # the block's other positives are negatives too (finetune.in_batch_negatives)
    batch_log_q: torch.Tensor | None = None   # (rows,) log-Q of each row's item as another row's in-batch negative


def embed_batch(model: Any, bank: FeatureBank, samplers: dict[int, NegativeSampler], pos: dict[str, np.ndarray],
                idx: np.ndarray, s: Finetune, rng: np.random.Generator, side) -> EmbeddedBatch:
    """Draw each present scenario's shared negatives and run the towers: ``side(batch, "user"|"item")``.

    The positives and every scenario's negatives go through the item tower in ONE call: a tower call has a
    fixed cost per layer (and the SASS tower has three linear maps per layer), so embedding each scenario's
    negatives separately made the step cost grow with the number of scenarios."""
    scen, day = pos["scen"][idx], int(pos["day"][idx[0]])
    user = side(bank.user_batch(pos["user"][idx], scen, pos["seq"][idx], pos["stats"][idx]), "user")
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
    item = side(bank.item_batch(all_items, all_scen, stats), "item")
    block = np.searchsorted(present, scen)                               # row -> its scenario's block
    order = np.argsort(block, kind="stable")
    neg_items = np.stack([neg for neg, _ in draws])                      # (scenarios present, negatives)
    counts = np.bincount(block, minlength=len(present))
    row_items, row_block = items[order], block[order]                    # scenario order: contiguous blocks
    log_q = batch_log_q = None
    if s.logq and s.in_batch_negatives:   # one mixture proposal for both kinds of negatives (expected_count)
        sampled, own = [], []
        for b, (k, chunk) in enumerate(zip(present, np.split(row_items, np.cumsum(counts)[:-1]), strict=True)):
            sampled.append(samplers[k].expected_count(neg_items[b], s.negatives, counts[b] - 1))
            own.append(samplers[k].expected_count(chunk, s.negatives, counts[b] - 1))  # as the block's negatives
        log_q = _log_count(np.stack(sampled))[row_block]
        batch_log_q = _log_count(np.concatenate(own))
    elif s.logq:
        log_q = torch.from_numpy(np.log(np.stack([q for _, q in draws]) * s.negatives)).float()[row_block]
    return EmbeddedBatch(user=user, item=item, rows=torch.from_numpy(order), counts=counts.tolist(),
                         hit=torch.from_numpy(row_items[:, None] == neg_items[row_block]), log_q=log_q,
                         n_pos=len(items), n_blocks=len(present), block=torch.from_numpy(row_block),
                         items=torch.from_numpy(row_items), in_batch=s.in_batch_negatives, batch_log_q=batch_log_q)


def _log_count(expected: np.ndarray) -> torch.Tensor:
    """log of expected counts as a float tensor, floored: an item no proposal can draw gets a finite log-Q."""
    return torch.from_numpy(np.log(np.maximum(expected, 1e-12))).float()


def scored_loss(eb: EmbeddedBatch, vec_u: torch.Tensor, vec_i: torch.Tensor, s: Finetune,
                keep: torch.Tensor | None = None, hard: torch.Tensor | None = None,
                hard_weight: float = 1.0) -> torch.Tensor:
    """The retrieval loss of (n, d) user vectors against (n_pos + blocks * negatives, d) item vectors; ``keep``
    (scenario order) limits it to some rows: an objective's loss over the rows positive for it.

    ``hard`` (scenario order): the batch rows whose item is a negative FOR THIS OBJECTIVE although the user
    engaged with it (clicked, not long-viewed): their items join the sampled negatives of every row of the same
    scenario block, without log-Q (they are not drawn from the exposure sampler). They carry what separates one
    objective from another; exposure-sampled negatives are mostly items nobody clicked, on which every objective
    agrees. Each counts ``hard_weight`` (multitask.hard_negative_weight) times in the softmax's denominator (its logit + log w): the
    weight sets how hard an objective's loss pushes the items it disagrees with the others on."""
    u = vec_u[eb.rows]
    pos_items = vec_i[:eb.n_pos][eb.rows]
    pos_logit = (u * pos_items).sum(-1) / s.temperature
    negs = vec_i[eb.n_pos:].view(eb.n_blocks, s.negatives, -1)
    every = torch.cat([chunk @ negs[k].T for k, chunk in enumerate(u.split(eb.counts))])
    neg_logit = (every / s.temperature).masked_fill(eb.hit, float("-inf"))
    log_q = eb.log_q
    with_hard = hard is not None and bool(hard.any())
    if eb.in_batch or with_hard:
        pair = (u @ pos_items.T) / s.temperature           # every row against the batch's positives
        other = (eb.block[:, None] == eb.block[None, :]) & (eb.items[:, None] != eb.items[None, :])
        parts = [neg_logit]
        q_parts = None if log_q is None else [log_q]   # None with finetune.logq off: no correction at all
        if eb.in_batch:   # mixed negatives: the block's other positives, drawn by click share (embed_batch)
            parts.append(pair.masked_fill(~other, float("-inf")))
            if q_parts is not None:   # embed_batch sets batch_log_q whenever it sets log_q with in-batch negatives
                q_parts.append(eb.batch_log_q[None, :].expand_as(pair))   # type: ignore[index]
        if with_hard:     # not drawn by any proposal: no log-Q, a weight instead
            parts.append((pair + math.log(hard_weight)).masked_fill(~(other & hard[None, :]), float("-inf")))
            if q_parts is not None:
                q_parts.append(pair.new_zeros(pair.shape))
        neg_logit = torch.cat(parts, dim=1)
        log_q = None if q_parts is None else torch.cat(q_parts, dim=1)
    if keep is not None:
        if not bool(keep.any()):
            return vec_u.new_zeros(())
        pos_logit, neg_logit = pos_logit[keep], neg_logit[keep]
        log_q = None if log_q is None else log_q[keep]
    return retrieval_loss(s.loss, pos_logit, neg_logit, None, log_q, s.margin)


def _tower_side(model: RetrievalModel):
    return lambda batch, side: model.user_vectors(batch) if side == "user" else model.item_vectors(batch)


def batch_loss(model: RetrievalModel, bank: FeatureBank, samplers: dict[int, NegativeSampler],
               pos: dict[str, np.ndarray], idx: np.ndarray, s: Finetune,
               rng: np.random.Generator, distill: DistillInput | None = None) -> torch.Tensor:
    """Sampled-softmax (or pairwise) loss of one day's batch: scenario vectors + aux_weight x global vectors,
    plus, with ``distill``, the distillation term on teacher groups of the batch's day (train.distill; drawn
    after the batch's negatives, so those are the same with and without it).

    Each row is scored against its own scenario's negatives only (``scored_loss``). Scoring every row against
    every scenario's negatives and gathering the own block (the previous way) cost one matmul per scenario
    present on the whole batch, and its backward a zero-filled (rows, scenarios, negatives) buffer: a large
    part of dssm_mixed's step on KuaiRand."""
    eb = embed_batch(model, bank, samplers, pos, idx, s, rng, _tower_side(model))
    (u_s, u_g), (i_s, i_g) = eb.user, eb.item
    # dssm and star return one vector as both scenario and global vector: one loss term weighted 1 + aux_weight
    # (star's scenario layers still drift from the shared ones: the penalty applies; dssm's drift is 0)
    if u_s is u_g and i_s is i_g:
        total = (1.0 + s.aux_weight) * scored_loss(eb, u_s, i_s, s)
    else:
        total = scored_loss(eb, u_s, i_s, s)
        if s.aux_weight:
            total = total + s.aux_weight * scored_loss(eb, u_g, i_g, s)
    if hasattr(model, "extra_loss"):   # the arch's own term (dat's mimic loss), before any other forward pass
        total = total + model.extra_loss(eb)
    if distill is not None:
        term = distill.term(model, bank, int(pos["day"][idx[0]]), s, rng)
        total = total if term is None else total + term
    return with_scenario_l2(total, model, s)


def with_scenario_l2(loss: torch.Tensor, model: Any, s: Finetune) -> torch.Tensor:
    """``loss + scenario_l2 x drift``: every scenario layer pulled toward the global layer it started from.

    The data pull a scenario's layers by the gradient of its own rows, the penalty pulls every scenario equally
    hard, so a sparse scenario stays close to the global network and a large one moves where its data say.
    STAR's W_global ⊙ M_s starts every scenario at the global network; this keeps the sparse ones near it."""
    return loss + s.scenario_l2 * model.scenario_drift() if s.scenario_l2 else loss


def multitask_batch_loss(model: Any, bank: FeatureBank, samplers: dict[int, NegativeSampler],
                         pos: dict[str, np.ndarray], idx: np.ndarray, s: Finetune,
                         rng: np.random.Generator, mt: Multitask) -> torch.Tensor:
    """sum_k lambda_k x (loss of objective k over the rows positive for k), on one pass through the towers:
    the batch holds the rows positive for any objective, every objective shares the batch's negatives."""
    eb = embed_batch(model, bank, samplers, pos, idx, s, rng, model.objective_vectors)
    (u_s, u_g), (i_s, i_g) = eb.user, eb.item
    labels = torch.from_numpy(pos["labels"][idx][eb.rows.numpy()] == 1)
    total = u_s.new_zeros(())
    for k, name in enumerate(model.objectives):
        lam = float(getattr(mt.loss_weights, name, 0.0))
        if lam == 0:
            continue
        hard = ~labels[:, k] if mt.hard_negatives else None
        term = scored_loss(eb, u_s[:, k], i_s[:, k], s, labels[:, k], hard, mt.hard_negative_weight)
        if u_g is u_s:   # a dssm base: its one vector is both paths, as in batch_loss
            term = (1.0 + s.aux_weight) * term
        elif s.aux_weight:
            term = term + s.aux_weight * scored_loss(eb, u_g[:, k], i_g[:, k], s, labels[:, k], hard,
                                                     mt.hard_negative_weight)
        total = total + lam * term
    return with_scenario_l2(total, model, s)


@dataclass
class HeldOutDay:
    """One scenario's held-out clicks of one day ranked against its pool: the model's inner products (columns in
    sorted pool order), and what scoring them needs. One forward pass per scenario and day serves the early-stopping
    score and every prior weight (:func:`day_gains`)."""

    cos: torch.Tensor          # (clicks, pool) inner products, columns in ``sorted_pool`` order
    users: np.ndarray
    items: np.ndarray
    sorted_pool: np.ndarray
    prior: torch.Tensor        # (pool,) log1p(the video's clicks in the scenario before the day), sorted pool order
    day: int


@torch.no_grad()
def held_out_days(model: RetrievalModel, bank: FeatureBank, pos: dict[str, np.ndarray],
                  scenarios: list[str]) -> dict[str, list[HeldOutDay]]:
    """Per scenario, its held-out days scored by ``model`` (in eval mode; training mode is restored), with the
    item statistics of each click's own day (the held-out days may be several)."""
    model.eval()
    out: dict[str, list[HeldOutDay]] = {}
    for name in scenarios:
        si = bank.scen_index(name)
        a = bank.per[name]
        pool = a.pool
        order = np.argsort(pool)
        sorted_pool, order_t = pool[order], torch.from_numpy(order)   # once per scenario, not per held-out day
        in_scenario = pos["scen"] == si
        out[name] = []
        for day in np.unique(pos["day"][in_scenario]):
            m = in_scenario & (pos["day"] == day)
            stats = a.item_daily[int(day), pool]
            iv, _ = model.item_vectors(bank.item_batch(pool, np.full(len(pool), si), stats))
            uv, _ = model.user_vectors(bank.user_batch(pos["user"][m], pos["scen"][m], pos["seq"][m], pos["stats"][m]))
            out[name].append(HeldOutDay(cos=(uv @ iv.T)[:, order_t], users=pos["user"][m], items=pos["item"][m],
                                        sorted_pool=sorted_pool, prior=torch.from_numpy(click_prior(stats))[order_t],
                                        day=int(day)))
    model.train()
    return out


def capped_rank(scores: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, how many scores are strictly above the target column's: exact below ``k``, ``k`` otherwise.

    Only the top k of a row can be above a target that ranks below k, so comparing the target with the row's
    top k (a partial selection) gives the same NDCG@k as comparing it with the whole pool, in less time on the
    held-out days' (clicks x pool) matrices, scored once per prior weight and epoch."""
    t = scores.gather(1, target.unsqueeze(1))
    top = scores.topk(min(k, scores.shape[1]), dim=1, sorted=False).values
    return (top > t).sum(1)


def day_gains(d: HeldOutDay, prior_grid: tuple[float, ...], k: int, n_items: int,
              earlier: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Every held-out click's NDCG@k gain (rows) once per weight w of ``prior_grid`` (columns): the scores are
    the inner product plus w * the prior (the serving prior, module docstring).

    ``earlier`` (that day's :func:`clicks_before`): as the benchmark protocol scores the test window, a held-out
    click on a video the user clicked on an earlier day is not counted, and those videos leave the user's ranking.
    Why for the prior: popular videos are re-clicked most, so counting re-clicks rewards a popularity prior the
    test window (which removes them) does not."""
    cos, items = d.cos, d.items
    if earlier is not None:
        cos = cos.clone()   # the mask writes -inf; the unmasked scores may be scored again
        keep = _mask_earlier(cos, d.users, items, d.sorted_pool, earlier, n_items)
        cos, items = cos[torch.from_numpy(keep)], items[keep]
    if not len(items):
        return torch.zeros(0, len(prior_grid))
    n = len(d.sorted_pool)
    target = torch.from_numpy(np.searchsorted(d.sorted_pool, items)).clamp(max=n - 1)
    in_pool = torch.from_numpy(np.isin(items, d.sorted_pool))
    cols = []
    for w in torch.tensor(prior_grid, dtype=torch.float32):
        rank = capped_rank(cos + w * d.prior if w > 0 else cos, target, k)
        cols.append(torch.where(in_pool & (rank < k), 1.0 / torch.log2(rank.float() + 2.0), torch.zeros(())))
    return torch.stack(cols, dim=1)


def scenario_gains(days: dict[str, list[HeldOutDay]], prior_grid: tuple[float, ...], k: int, n_items: int,
                   earlier: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Per scenario with held-out clicks left to count, the (clicks x grid) gains of all its days."""
    out = {}
    for name, scored in days.items():
        gains = [day_gains(d, prior_grid, k, n_items, None if earlier is None else earlier[d.day]) for d in scored]
        gains = [g for g in gains if len(g)]
        if gains:
            out[name] = torch.cat(gains).numpy().astype(np.float64)
    return out


def validate_scenarios(model: RetrievalModel, bank: FeatureBank, pos: dict[str, np.ndarray], scenarios: list[str],
                       k: int = 50, days: dict[str, list[HeldOutDay]] | None = None) -> dict[str, float]:
    """Per scenario with held-out clicks: NDCG@k of ranking each of them against its pool, with the item
    statistics of the click's own day; the mean over the scenario's clicks. ``days``: already scored by
    :func:`held_out_days` (the caller scores the prior grid on them too)."""
    days = held_out_days(model, bank, pos, scenarios) if days is None else days
    return {n: float(v[:, 0].mean()) for n, v in scenario_gains(days, (0.0,), k, len(bank.item_ids)).items()}


def held_out_ndcg(model: RetrievalModel, bank: FeatureBank, pos: dict[str, np.ndarray], scenarios: list[str],
                  prior_grid: tuple[float, ...], k: int = 50,
                  earlier: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Per scenario, every held-out click's NDCG@k gain (rows) once per weight of ``prior_grid`` (columns), with
    the clicks ``earlier`` (:func:`clicks_before`) removed as the protocol removes them (:func:`day_gains`)."""
    return scenario_gains(held_out_days(model, bank, pos, scenarios), prior_grid, k, len(bank.item_ids), earlier)


def clicks_before(bank: FeatureBank, days: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per day: (user rows, item rows) of every click on an earlier training day in any scenario, sorted by user
    row; what the benchmark protocol removes from a user's ranking and ground truth (:func:`held_out_ndcg`)."""
    before = set(range(max(days, default=0)))
    files = bank.positive_files
    clicks = (_positives(bank, bank.scenarios, before) if files is None or files.holds(before) else
              positive_ids(bank, bank.scenarios, before))   # a streaming bank: a read of the id columns
    out = {}
    for day in days:
        m = clicks["day"] < day
        order = np.argsort(clicks["user"][m], kind="stable")
        out[int(day)] = (clicks["user"][m][order], clicks["item"][m][order])
    return out


def _mask_earlier(scores: torch.Tensor, users: np.ndarray, items: np.ndarray, sorted_pool: np.ndarray,
                  earlier: tuple[np.ndarray, np.ndarray], n_items: int) -> np.ndarray:
    """Set each row's earlier-clicked pool videos to -inf (in place; columns in ``sorted_pool`` order); returns the
    rows whose clicked video is not one of them (the clicks the protocol counts)."""
    prev_u, prev_i = earlier
    keep = ~np.isin(users * n_items + items, prev_u * n_items + prev_i)
    left, right = np.searchsorted(prev_u, users, "left"), np.searchsorted(prev_u, users, "right")
    counts = right - left
    if counts.sum():
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(left - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        hit = prev_i[starts + np.arange(counts.sum())]
        col = np.searchsorted(sorted_pool, hit).clip(max=len(sorted_pool) - 1)
        ok = sorted_pool[col] == hit
        scores[torch.from_numpy(rows[ok]), torch.from_numpy(col[ok])] = -torch.inf
    return keep


def prior_grid(s: Finetune) -> tuple[float, ...]:
    """The candidate prior weights, 0 (no prior) first: the weight stays 0 unless another one does better."""
    return (0.0, *sorted({float(w) for w in s.prior_grid if w > 0}))


PRIOR_Z = 1.96   # a prior weight must beat no prior by this many standard errors of the paired held-out gain


def prior_evidence(gains: np.ndarray) -> dict[str, list[float]]:
    """A scenario's held-out gains (clicks x grid, :func:`held_out_ndcg`) as a validation-curve entry: the mean NDCG
    of every weight, and the standard error of its paired difference from no prior (column 0)."""
    diff = gains - gains[:, :1]
    se = diff.std(0, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.full(gains.shape[1], np.inf)
    return {"ndcg": [float(x) for x in gains.mean(0)], "se": [float(x) for x in se]}


def chosen_prior_weights(point: dict[str, Any], grid: tuple[float, ...]) -> dict[str, float]:
    """Per scenario of a validation-curve point, the grid weight with the best held-out NDCG among those whose gain
    over no prior exceeds PRIOR_Z standard errors, else 0. Why the margin: most held-out days are a few hundred
    clicks, and a weight picked on their noise costs the test window (docs/lab/notes.md, the popularity prior;
    docs/lab/params-history.md, "finetune.prior_grid")."""
    out = {}
    for n, ev in point.get("prior", {}).items():
        ndcg, se = np.asarray(ev["ndcg"]), np.asarray(ev["se"])
        clear = ndcg - ndcg[0] > PRIOR_Z * se
        clear[0] = True
        out[n] = grid[int(np.argmax(np.where(clear, ndcg, -np.inf)))]
    return out


def prior_summary(evidence: dict[str, list[float]], grid: tuple[float, ...], chosen: float) -> dict[str, float | None]:
    """What the run report shows of one scenario's choice (:func:`prior_evidence` at its serving epoch): the chosen
    weight's held-out gain over no prior with the paired standard error, and the weight the held-out day liked
    best with its gain, chosen or not. Why show both: a best weight left at 0 says the day's gain was inside its
    noise (``PRIOR_Z``), which is the answer to "why no prior on this tab?"."""
    ndcg, se = np.asarray(evidence["ndcg"]), np.asarray(evidence["se"])
    i, b = grid.index(chosen), int(np.argmax(ndcg))

    def finite(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None   # one held-out click: no standard error (JSON has no inf)

    return {"w": chosen, "gain": float(ndcg[i] - ndcg[0]), "se": finite(se[i]) if i else 0.0,
            "best_w": grid[b], "best_gain": float(ndcg[b] - ndcg[0]), "best_se": finite(se[b]) if b else 0.0,
            "margin_z": PRIOR_Z}


def own_epoch_scenarios(val: dict[str, np.ndarray], bank: FeatureBank, scenarios: list[str], min_clicks: int) -> list[str]:
    """The scenarios whose held-out day has at least ``min_clicks`` clicks (0: none): each keeps the epoch best
    for it instead of the one best for the macro average. Why: on KuaiRand the largest tab (75% of the rows)
    still improves after the macro average, which the small tabs' noise dominates, has peaked
    (docs/lab/params-history.md, "finetune.own_epoch_min_clicks"); a small tab's own held-out day is too noisy
    to pick from."""
    if not min_clicks or len(scenarios) < 2:
        return []
    return [n for n in scenarios if int((val["scen"] == bank.scen_index(n)).sum()) >= min_clicks]


class SelectionMemory:
    """What early stopping remembers across epochs: the best epoch for the macro average and for each scenario
    that picks its own (score, epoch, weights, weight average), and the validation curve. It travels in the
    selection phase's resume checkpoint (train.loop.run_epochs), so a run killed after epoch 5 and resumed still
    knows that epoch 2 was best, and picks what an uninterrupted run would."""

    def __init__(self, own: list[str]) -> None:
        self.best = self.fresh()
        self.own_best = {n: self.fresh() for n in own}
        self.curve: list[dict[str, Any]] = []

    @staticmethod
    def fresh() -> dict[str, Any]:
        return {"score": -1.0, "epoch": 0, "state": None, "average": None}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "own_best": self.own_best, "curve": self.curve}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.best, self.own_best, self.curve = state["best"], state["own_best"], state["curve"]


def finetune(model: RetrievalModel, bank: FeatureBank, job: FinetuneJob, out_dir: Path,
             own_models: dict[str, torch.nn.Module] | None = None) -> dict[str, Any]:
    """Train ``model`` (in place); returns the training report. ``own_models``, when given, receives a model for
    each scenario that kept an epoch of its own (``own_epoch_min_clicks``, :func:`own_epoch_scenarios`) different
    from the one ``model`` ends at; every other scenario is served by ``model``.

    The report carries its wall ``seconds``, the optimiser ``steps`` of every phase and, with early stopping, the
    ``validation_seconds`` spent scoring the held-out days: what a row's cost is made of, model by model
    (bench/ctnet_cost.py)."""
    t = time.perf_counter()
    report = _finetune(model, bank, job, out_dir, own_models)
    phases = [report.get("select"), report.get("refit"),
              *(e.get("refit") for e in report.get("own_epoch", {}).values())]
    report["steps"] = sum(int(p["steps"]) for p in phases if p)
    report["seconds"] = time.perf_counter() - t
    return report


def _finetune(model: RetrievalModel, bank: FeatureBank, job: FinetuneJob, out_dir: Path,
              own_models: dict[str, torch.nn.Module] | None) -> dict[str, Any]:
    bank.require_training_samples("fine-tuning")
    s, refit = job.knobs, refit_mode(job.knobs.refit)
    scenarios = job.scenarios or bank.scenarios
    samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                for n in scenarios}
    all_days = recent_days(len(bank.train_dates), s.recent_days)
    streamed = job.input == "stream"
    if s.in_batch_negatives:   # the click share of every training positive: the in-batch negatives' proposal
        clicks = (positive_ids(bank, scenarios, set(all_days), s.objective, users=False) if streamed else
                  _positives(bank, scenarios, set(all_days), s.objective))
        for k, sampler in samplers.items():
            sampler.with_clicks(clicks["item"][clicks["scen"] == k], len(bank.item_ids))
    out_dir = Path(out_dir)
    report: dict[str, Any] = {}

    multi = job.multitask is not None
    if multi and job.distill is not None:
        raise ValueError("distill.enabled: the multi-objective row has no distillation term (its heads score "
                         "objectives the teacher does not)")
    step_loss = (functools.partial(multitask_batch_loss, mt=job.multitask) if multi else
                 functools.partial(batch_loss, distill=job.distill))
    if job.distill is not None:
        report["distill"] = {"groups": {str(bank.train_dates[d]): len(g) for d, g in job.distill.days.items()},
                             "dropped": dict(job.distill.dropped)}

    def train_on(days: set[int], settings: LoopSettings, tag: str, on_epoch_end=None,
                 average: EpochAverage | None = None,
                 memory: SelectionMemory | None = None) -> tuple[dict[str, Any], EpochAverage]:
        """One training phase; returns its report and the average of its epochs (not yet in the model)."""
        average = average if average is not None else EpochAverage(model, s.average_from)
        batches, n_batches = (streamed_batches if streamed else memory_batches)(days, settings)
        if n_batches(0) == 0:
            raise ValueError(f"fine-tuning ({tag}): no {s.objective} positives in the training days for "
                             f"scenarios {scenarios}")
        rep = run_epochs(model, settings, n_batches, batches, out_dir / f"resume-{tag}.pt",
                         out_dir / f"loss-{tag}", f"finetune[{tag}]", on_epoch_end, average, memory)
        rep["averaged_epochs"] = average.count
        return rep, average

    def memory_batches(days: set[int], settings: LoopSettings):
        """The epoch plan over the positives in the bank's memory (:func:`_day_batches`)."""
        pos = _positives(bank, scenarios, days, s.objective, labels=multi)

        def batches(epoch: int) -> Iterator[tuple[int, Any]]:
            plan = _day_batches(pos["day"], s.batch_size, step_rng(settings.seed, epoch, -1))
            for step, idx in enumerate(plan):
                yield step, (lambda idx=idx, step=step: step_loss(model, bank, samplers, pos, idx, s,
                                                                   step_rng(settings.seed, epoch, step)))

        n = len(_day_batches(pos["day"], s.batch_size, np.random.default_rng(0)))
        return batches, lambda e: n

    def streamed_batches(days: set[int], settings: LoopSettings):
        """The rank's batches streamed from the row groups (train.stream). Step k*world + rank is the rank's k-th
        batch: run_epochs' every-N-th-step rule then gives each rank its own stream, its step count (the stream's
        equalised count times world) and its resume skip by step index, as with the in-memory plan."""
        rank, n_proc = world()
        stream = PositiveStream(bank, scenarios, days, s.objective, multi, s.batch_size, job.shuffle_buffer,
                                settings.seed, rank, n_proc)

        def batches(epoch: int) -> Iterator[tuple[int, Any]]:
            stream.set_epoch(epoch)
            for k, pos in stream_loader(stream):
                step = k * n_proc + rank
                idx = np.arange(len(pos["user"]))
                yield step, (lambda pos=pos, idx=idx, step=step: step_loss(model, bank, samplers, pos, idx, s,
                                                                            step_rng(settings.seed, epoch, step)))

        return batches, stream.steps

    held = set(sorted(all_days)[-s.holdout_days:])
    if s.early_stopping and len(all_days) > len(held):
        val = _positives(bank, scenarios, held, s.objective)   # a multi-task model: at its serving weights
        reported = [n for n in scenarios if n in bank.reported] or scenarios
        own = own_epoch_scenarios(val, bank, reported, s.own_epoch_min_clicks) if own_models is not None else []
        initial = copy.deepcopy(model.state_dict())

        memory = SelectionMemory(own)
        selection = EpochAverage(model, s.average_from)
        grid = prior_grid(s)
        earlier = clicks_before(bank, sorted(held)) if len(grid) > 1 else None

        def better(entry: dict[str, Any], score: float) -> bool:
            return score > entry["score"] + s.min_delta

        def keep_if_better(entry: dict[str, Any], score: float, epoch: int) -> None:
            if better(entry, score):
                entry.update(score=score, epoch=epoch + 1, state=copy.deepcopy(model.state_dict()),
                             average=selection.state_dict())

        def check(epoch: int) -> tuple[bool, dict[str, float]]:
            """Stop?, and the epoch's validation metric for DVCLive. With averaging on, what is judged (and
            kept) is the mean of the epochs so far, the model this phase would hand over. Training goes on
            while the macro average or a scenario that picks its own epoch still improves."""
            started = time.perf_counter()
            point: dict[str, Any] = {"epoch": epoch + 1}
            days = held_out_days(selection.model, bank, val, reported) if len(grid) > 1 else None
            per = validate_scenarios(selection.model, bank, val, reported, days=days)
            score = float(np.mean(list(per.values()))) if per else float("nan")
            if days is not None:
                # the weights are read at the epoch that serves a scenario (the macro pick, or its own pick):
                # scored only where this epoch becomes that pick, as most late epochs (patience) never do
                serving = set(reported) if better(memory.best, score) else set()
                serving |= {n for n in own if better(memory.own_best[n], per[n])}
                by_weight = scenario_gains({n: days[n] for n in reported if n in serving}, grid, 50,
                                           len(bank.item_ids), earlier)
                point["prior"] = {n: prior_evidence(v) for n, v in by_weight.items()}
            point["val_ndcg@50"] = score
            if own:
                point["own"] = {n: per[n] for n in own}
            memory.curve.append(point)
            log.info("validation (held-out days) macro NDCG@50 after epoch %d: %.4f", epoch + 1, score)
            keep_if_better(memory.best, score, epoch)
            for n in own:
                keep_if_better(memory.own_best[n], per[n], epoch)
            waited = all(epoch + 1 - e["epoch"] >= s.patience for e in (memory.best, *memory.own_best.values()))
            report["validation_seconds"] = report.get("validation_seconds", 0.0) + time.perf_counter() - started
            return epoch + 1 >= s.min_epochs and waited, {"val_ndcg@50": score}

        def apply(entry: dict[str, Any], tag: str) -> tuple[dict[str, Any] | None, EpochAverage]:
            """Put the selected epoch in the model and refit it: its refit report and average (not yet finished)."""
            if refit == "full":
                model.load_state_dict(initial)
                return train_on(all_days, replace(job.loop, epochs=max(entry["epoch"], 1)), tag)
            model.load_state_dict(entry["state"])
            selection.load_state_dict(entry["average"])
            if refit == "holdout":   # the held-out day's epoch joins the selected mean
                return train_on(held, replace(job.loop, epochs=1), tag, average=selection.continued())
            return None, selection

        if job.keep_start:   # the start is a candidate: scored as "epoch 0" before any training
            check(-1)
        report["select"], _ = train_on(all_days - held, job.loop, "select", check, selection, memory)
        best = memory.best
        report["validation"] = memory.curve
        report["best_epoch"] = best["epoch"]
        report["best_val_ndcg@50"] = best["score"]
        separate: list[str] = []
        for n, entry in memory.own_best.items():
            report.setdefault("own_epoch", {})[n] = {"best_epoch": entry["epoch"], "best_val_ndcg@50": entry["score"]}
            if entry["epoch"] == best["epoch"]:
                continue          # the macro pick is this scenario's pick too: it is served by the shared model
            rep, avg = apply(entry, f"refit-{n}")
            avg.finish()
            if rep is not None:
                report["own_epoch"][n]["refit"] = rep
            own_models[n] = copy.deepcopy(model)   # type: ignore[index]
            separate.append(n)
        if separate:
            report["own_models"] = sorted(separate)   # the scenarios not served by the shared model
        rep, average = apply(best, "refit")
        if rep is not None:
            report["refit"] = rep
        average.finish()
        if len(grid) > 1:
            points = {p["epoch"]: p for p in memory.curve}   # each scenario's weight at the epoch that serves it
            serving = {n: memory.own_best[n]["epoch"] if n in separate else best["epoch"] for n in reported}
            evidence = {n: points[e]["prior"][n] for n, e in serving.items() if n in points[e].get("prior", {})}
            weights = chosen_prior_weights({"prior": evidence}, grid)
            report["prior_weights"] = weights
            report["prior_evidence"] = {n: prior_summary(ev, grid, weights[n]) for n, ev in evidence.items()}
            for m in (model, *(own_models[n] for n in separate)):   # type: ignore[index]
                # merged, not replaced: models trained one scenario at a time may share one config (ctnet)
                m.cfg.prior_weights = {**(m.cfg.prior_weights or {}), **weights}
            log.info("popularity prior weights chosen on the held-out days: %s", weights)
        return report
    report["refit"], average = train_on(all_days, job.loop, "full")
    average.finish()
    return report
