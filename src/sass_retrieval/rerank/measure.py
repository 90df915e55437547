"""How the re-ranker is judged (bench/rerank.py and the tests): its lists against the retrieval-order top L on the
protocol's evaluation pairs (docs/benchmark.md), by the frozen evaluator and by the test days' clicks.

- ``test_slates``: each evaluation pair's candidates are the upstream's filtered top C (the protocol's
  rank_pairs: the user's training clicks removed), scored by the evaluator;
- better share: the requests whose generated list the evaluator scores above the retrieval-order list under the
  same weights (seed 001's "better percentage");
- controllability: Spearman's rho between a weight swept over a grid and the realised utility of its goal;
- Pareto dominance: every rule-pipeline point has a generator point at least as diverse and as clicky, the
  generator's front interpolated linearly between its points (a point beyond its diversity range is not
  dominated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..evaluate.protocol import EvalSet, Recommender, rank_pairs, score_rankings
from .evaluator import ItemEvaluator
from .goals import GOALS, Slate, reward, utilities


@dataclass
class TestRequests:
    """One scenario's evaluation pairs as requests: users and their slates (aligned with es.pairs)."""

    users: np.ndarray
    slate: Slate


def test_slates(es: EvalSet, upstream: Recommender, score, evaluator: ItemEvaluator, candidates: int
                ) -> dict[str, TestRequests]:
    """``score(scenario, users, videos)``: the row's retrieval score of pairs (rank.cascade.PairScorer)."""
    ranked = rank_pairs(es, upstream, candidates)
    out = {}
    for s in es.scenarios:
        users, ids = np.asarray(es.pairs[s], np.int64), ranked[s]
        scores = np.zeros(ids.shape, np.float32)
        rows, cols = np.nonzero(ids >= 0)
        if len(rows):
            scores[rows, cols] = score(s, users[rows], ids[rows, cols])
        out[s] = TestRequests(users, evaluator.slate(s, users, ids, scores))
    return out


def served(slate: Slate, lists: torch.Tensor) -> np.ndarray:
    """(n, L) video ids of lists of candidate positions, -1 for empty slots."""
    ids = torch.where(lists >= 0, torch.gather(slate.ids, 1, lists.clamp(min=0)), -1)
    return ids.numpy()


def ndcg_per_pair(es: EvalSet, ranked: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """NDCG@k of each evaluation pair's list (the protocol's binary relevance, truth = the test days' clicks)."""
    res = score_rankings(es, ranked, ks=[k], keep_pairs=True)
    return {s: res["per_pair"][s][f"ndcg@{k}"] for s in es.scenarios}


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties); 0 for a constant curve, which does not move with its weight."""
    rx, ry = pd.Series(np.asarray(x, float)).rank(), pd.Series(np.asarray(y, float)).rank()
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (diversity, click) points no other point beats on both, by diversity."""
    pts = sorted(set(points), key=lambda p: (p[0], -p[1]))
    out: list[tuple[float, float]] = []
    for d, c in sorted(pts, key=lambda p: (-p[0], -p[1])):
        if not out or c > out[-1][1]:
            out.append((d, c))
    return sorted(out)


def click_at(front_pts: Sequence[tuple[float, float]], diversity: float) -> float | None:
    """The front's best click at ``diversity`` or more: the upper envelope, linear between its points; None
    beyond the front's most diverse point."""
    pts = sorted(front_pts)
    if not pts or diversity > pts[-1][0] + 1e-12:
        return None
    best = max(c for d, c in pts if d >= diversity - 1e-12)
    for (d0, c0), (d1, c1) in zip(pts, pts[1:], strict=False):
        if d0 <= diversity <= d1 and d1 > d0:
            best = max(best, c0 + (c1 - c0) * (diversity - d0) / (d1 - d0))
    return best


def dominance(generator_pts: Sequence[tuple[float, float]], rule_pts: Sequence[tuple[float, float]]
              ) -> list[dict[str, float | bool | None]]:
    """For every rule point: the generator front's click at that diversity and whether it is at least as high."""
    f = front(generator_pts)
    out = []
    for d, c in rule_pts:
        g = click_at(f, d)
        out.append({"diversity": d, "rule_click": c, "generator_click": g, "dominated": g is not None and g >= c})
    return out


def upstream_lists(slate: Slate, length: int) -> torch.Tensor:
    """The first ``length`` candidates in the order they arrived (retrieval order): the list without a re-ranker."""
    n, c = slate.ids.shape
    out = torch.full((n, length), -1, dtype=torch.long)
    m = min(c, length)
    out[:, :m] = torch.where(slate.valid[:, :m], torch.arange(m).expand(n, -1), -1)
    return out


def pooled_utilities(tests: dict[str, TestRequests], lists: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each goal's utility averaged over every request of every scenario."""
    u = [utilities(tests[s].slate, lists[s]) for s in tests]
    return {g: float(torch.cat([x[g] for x in u]).mean()) for g in GOALS}


def better_than(tests: dict[str, TestRequests], lists: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                weights: torch.Tensor, scales: dict[str, float]) -> dict[str, np.ndarray]:
    """Per request 1.0 where the evaluator's reward at ``weights`` puts ``lists`` above ``reference``."""
    out = {}
    for s, t in tests.items():
        a = reward(utilities(t.slate, lists[s]), weights, scales)
        b = reward(utilities(t.slate, reference[s]), weights, scales)
        out[s] = (a > b).numpy().astype(np.float64)
    return out
