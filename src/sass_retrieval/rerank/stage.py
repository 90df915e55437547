"""The `rerank` stage's work and the served re-ranker, one implementation for the pipeline (pipelines/rerank.py),
the service, the benchmark and the tests.

Per publishable row (its candidates differ, and the evaluator reads the row's retrieval score):

1. candidate rows of the training days (rank.candidates: the row's top ``rerank.candidates`` per request without
   the user's earlier clicks, labelled by the day's click, long view and like), features from earlier days only;
2. the evaluator (rerank.evaluator), the newest training day held out for its early stopping;
3. the generator (rerank.generator) trained by REINFORCE (rerank.reinforce) on the held-out day's requests, each a
   slate scored by the frozen evaluator; a fifth of them choose the epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import write_json
from ..params_schema import Params
from ..rank.candidates import Retrieve, candidate_rows
from ..rank.cascade import ScoredRecommender
from ..rank.days import training_days
from ..rank.features import RankStats
from ..rank.model import RankModelConfig
from ..rank.train import RankSettings
from .evaluator import STATS, ItemEvaluator, fit_evaluator, slates_from_rows
from .generator import GeneratorConfig, ListGenerator
from .goals import GOALS, WEIGHTED, Slate, spread, weight_vector
from .reinforce import ReinforceSettings, baseline_lists, train_generator
from .rules import Rules, check_pins

EVENT_LABELS = ("long_view", "is_like")   # besides is_click, the events the evaluator predicts
REPORT = "report.json"


@dataclass
class ListReranker:
    """A trained re-ranker: the frozen evaluator, the generator, the reward's scales and the default weights."""

    evaluator: ItemEvaluator
    generator: ListGenerator
    scales: dict[str, float]
    defaults: dict[str, float]
    candidates: int

    @property
    def length(self) -> int:
        return self.generator.cfg.length

    def weights(self, given: Mapping[str, float] | None = None, source: str = "weights") -> torch.Tensor:
        return weight_vector(given, self.defaults, source)

    def lists(self, slate: Slate, weights: torch.Tensor, pins: torch.Tensor | None = None) -> torch.Tensor:
        if pins is not None:
            check_pins(pins, slate.tag, slate.valid, self.generator.rules)
        return self.generator.generate(slate, weights, pins)

    def rerank(self, scenario: str, users: np.ndarray, ids: np.ndarray, scores: np.ndarray,
               weights: torch.Tensor, pins: torch.Tensor | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(n, L) served video ids (-1 where the rules ended a list early) and each goal's utility per list."""
        slate = self.evaluator.slate(scenario, users, ids, scores)
        lists = self.lists(slate, weights, pins)
        util = {g: v.numpy() for g, v in self.evaluator.utilities(slate, lists).items()}
        served = np.where(lists.numpy() >= 0, np.take_along_axis(ids, lists.clamp(min=0).numpy(), axis=1), -1)
        return served, util


class RerankRecommender:
    """The upstream recommender's top ``candidates`` turned into the generator's list; the Recommender protocol.

    Asked for k items it serves the list first, then (k > L) the remaining candidates in the upstream order."""

    def __init__(self, base: ScoredRecommender, reranker: ListReranker, weights: torch.Tensor) -> None:
        self.base, self.reranker, self.w = base, reranker, weights

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        return self.top_scored(scenario, user_ids, k)[1]

    def top_scored(self, scenario: str, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.base.top_scored(scenario, user_ids, max(self.reranker.candidates, k))
        head = self.reranker.candidates
        served, _ = self.reranker.rerank(scenario, user_ids, ids[:, :head], scores[:, :head], self.w)
        return merge_head(served, scores, ids, k)


def merge_head(head: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The re-ranked head, then the other candidates in their upstream order, k of them; scores follow ids."""
    n = len(ids)
    out_ids = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf, np.float32)
    for r in range(n):
        first = [int(x) for x in head[r] if x >= 0]
        rest = [int(x) for x in ids[r] if x >= 0 and int(x) not in set(first)]
        row = (first + rest)[:k]
        lookup = dict(zip(ids[r].tolist(), scores[r].tolist(), strict=True))
        out_ids[r, : len(row)] = row
        out_scores[r, : len(row)] = [lookup[x] for x in row]
    return out_scores, out_ids


def split_requests(slate: Slate, share: float, cap: int, seed: int) -> tuple[Slate, Slate]:
    """A seeded sample of at most ``cap`` requests, split (1 - share, share)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(slate), generator=gen)[:cap]
    cut = max(1, int(round(len(order) * (1 - share))))
    return slate.take(order[:cut]), slate.take(order[cut:])


@dataclass
class EvaluatorFit:
    """The frozen evaluator and the held-out day's requests (slates) the generator trains and is chosen on."""

    evaluator: ItemEvaluator
    report: dict[str, Any]
    train: Slate
    valid: Slate


def fit_evaluator_and_slates(params: Params, frame: pd.DataFrame, items: pd.DataFrame, train_dates: Sequence[int],
                             retrieve: Retrieve, scenarios: Sequence[str], stats: RankStats, progress: bool = False
                             ) -> EvaluatorFit:
    """Steps 1-2 of the module doc, and the held-out day's requests as slates. ``frame``: the window with run
    scenario names and columns user_id, video_id, date, is_click, long_view, is_like; ``retrieve``: the row's
    ``top_scored``."""
    r = params.rerank
    dates = training_days(train_dates, "rerank")
    rows = candidate_rows(frame, items, dates[1:], retrieve, r.candidates, r.candidates, params.train.seed,
                          extra_labels=EVENT_LABELS)
    train, valid = rows[rows["date"] != dates[-1]], rows[rows["date"] == dates[-1]]
    settings = RankSettings(**{**asdict(RankSettings.from_params(params, progress=progress)), "loss": "listwise"})
    evaluator, report = fit_evaluator(train, valid, scenarios, stats, settings, RankModelConfig.from_params(params),
                                      r.cold_max, r.features)
    report["candidate_rows"] = {"train": len(train), "valid": len(valid)}
    gen_train, gen_valid = split_requests(slates_from_rows(valid, evaluator, r.candidates), 0.2, r.train_requests,
                                          params.train.seed)
    return EvaluatorFit(evaluator, report, gen_train, gen_valid)


def fit_list_generator(params: Params, fit: EvaluatorFit, progress: bool = False,
                       fixed_w: torch.Tensor | None = None) -> tuple[ListReranker, dict[str, Any]]:
    """Step 3: the generator against ``fit``'s frozen evaluator (``fixed_w``: the per-w reference)."""
    r = params.rerank
    scales = spread(fit.train, r.length, samples=4, seed=params.train.seed)
    generator, gen_report = train_generator(
        fit.train, fit.valid, scales, GeneratorConfig(hidden=r.hidden, pointer=r.pointer, length=r.length),
        Rules(max_run=r.max_run), ReinforceSettings(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr,
                                                    seed=params.train.seed, progress=progress), fixed_w=fixed_w)
    reranker = ListReranker(fit.evaluator, generator, scales, r.weights.model_dump(), r.candidates)
    return reranker, {"evaluator": fit.report, "generator": gen_report, "scales": scales,
                      "held_out": held_out_utilities(reranker, fit.valid)}


def fit_rerank(params: Params, frame: pd.DataFrame, items: pd.DataFrame, train_dates: Sequence[int],
               retrieve: Retrieve, scenarios: Sequence[str], stats: RankStats, progress: bool = False
               ) -> tuple[ListReranker, dict[str, Any]]:
    """One row's re-ranker (the whole module doc)."""
    fit = fit_evaluator_and_slates(params, frame, items, train_dates, retrieve, scenarios, stats, progress)
    return fit_list_generator(params, fit, progress)


def held_out_utilities(reranker: ListReranker, slate: Slate) -> dict[str, dict[str, float]]:
    """Mean utilities of the generated lists (default weights) and of the upstream order's lists."""
    w = reranker.weights()
    base = baseline_lists(slate, reranker.length, reranker.generator.rules)
    gen = reranker.lists(slate, w)
    util = reranker.evaluator.utilities
    return {name: {g: float(v.mean()) for g, v in util(slate, lists).items()}
            for name, lists in (("generated", gen), ("upstream", base))}


def save_list_reranker(reranker: ListReranker, report: dict[str, Any], folder: Path) -> None:
    """models/rerank/<row>/: evaluator/, generator.pt (state dict: loads with weights_only), generator.json and
    the report; the window's statistics go once to models/rerank/stats (:func:`save_stats`)."""
    folder.mkdir(parents=True, exist_ok=True)
    reranker.evaluator.save(folder / "evaluator")
    torch.save(reranker.generator.state_dict(), folder / "generator.pt")
    write_json(folder / "generator.json", {"config": reranker.generator.cfg.to_dict(),
                                           "rules": asdict(reranker.generator.rules), "scales": reranker.scales,
                                           "defaults": reranker.defaults, "candidates": reranker.candidates})
    write_json(folder / REPORT, report)


def save_stats(stats: RankStats, rerank_dir: Path) -> None:
    stats.save(rerank_dir / STATS)


def load_list_reranker(rerank_dir: Path, row: str) -> ListReranker:
    """The re-ranker of ``row`` under ``rerank_dir`` (models/rerank, or a published version's rerank/)."""
    folder = rerank_dir / row
    meta_path = folder / "generator.json"
    for f in (meta_path, folder / "generator.pt"):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing (the rerank stage writes it)")
    meta = json.loads(meta_path.read_text())
    missing = [g for g in GOALS if g not in meta["scales"]] + [g for g in WEIGHTED if g not in meta["defaults"]]
    if missing:
        raise ValueError(f"{meta_path}: no scale or default weight for goal(s) {', '.join(sorted(set(missing)))}")
    generator = ListGenerator(GeneratorConfig(**meta["config"]), Rules(**meta["rules"]))
    try:
        generator.load_state_dict(torch.load(folder / "generator.pt", map_location="cpu", weights_only=True))
    except RuntimeError as e:   # torch's message is one line per tensor: say it once
        raise ValueError(f"{folder / 'generator.pt'}: does not fit the network generator.json describes (written by "
                         f"another version of the code?); rerun the rerank stage ({str(e).splitlines()[0]})") from None
    generator.eval()
    evaluator = ItemEvaluator.load(folder / "evaluator", RankStats.load(rerank_dir / STATS))
    return ListReranker(evaluator, generator, {k: float(v) for k, v in meta["scales"].items()},
                        {k: float(v) for k, v in meta["defaults"].items()}, int(meta["candidates"]))
