"""Chain consistency: how much of what the pre-ranker would serve, retrieval hands it.

A cascade serves the pre-ranker's order over retrieval's candidates only, so what the teacher (the pre-ranker)
likes best in the whole scenario pool and retrieval does not retrieve is lost, however good the teacher is.
Chain consistency measures that loss per request: the share of the teacher's top-20 over the whole pool that
retrieval's top-200 contains, averaged over requests. Distillation (train.distill) is meant to raise it.

Both lists follow the benchmark protocol (evaluate.protocol): the videos a user clicked in the training window
are removed from both rankings (the teacher's top-20 is taken after the removal, as retrieval's ranked list is),
so neither side is credited or blamed for a video that is never served. The per-request values are kept for a
paired bootstrap (evaluate.significance) of the before/after difference on the same requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .metrics import membership
from .protocol import _csr_of

TeacherScores = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
"""teacher(scenario, users (n,), pool (m,)) -> (n, m) scores: higher is better."""


def teacher_top(teacher: TeacherScores, scenario: str, users: np.ndarray, pool: np.ndarray, k: int = 20,
                exclude: Mapping[int, np.ndarray] | None = None, chunk: int = 256) -> np.ndarray:
    """(n, k) int64: the teacher's best ``k`` videos of ``pool`` for each user, best first, after removing the
    user's ``exclude`` videos (the protocol's train-clicked ones: ``EvalSet.train_clicked``); -1 pads a row
    whose pool has fewer than ``k`` videos left. The teacher scores ``chunk`` users at a time, so the
    (users x pool) score matrix is bounded whatever the number of requests."""
    if k < 1 or chunk < 1:
        raise ValueError(f"teacher_top: k and chunk must be >= 1, got k={k}, chunk={chunk}")
    users = np.asarray(users, dtype=np.int64)
    pool = np.asarray(pool, dtype=np.int64)
    out = np.full((len(users), k), -1, dtype=np.int64)
    if not len(pool):
        return out
    take = min(k, len(pool))
    for start in range(0, len(users), chunk):
        u = users[start:start + chunk]
        scores = np.asarray(teacher(scenario, u, pool), dtype=np.float64)
        if scores.shape != (len(u), len(pool)):
            raise ValueError(f"scenario {scenario!r}: the teacher returned scores of shape {scores.shape}, "
                             f"expected ({len(u)}, {len(pool)})")
        if exclude is not None:
            scores = np.where(membership(np.broadcast_to(pool, scores.shape), _csr_of(exclude, u)), -np.inf, scores)
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        ids = pool[top]
        ids[~np.isfinite(np.take_along_axis(scores, top, axis=1))] = -1   # excluded: never a teacher pick
        out[start:start + len(u), :take] = ids
    return out


def chain_consistency_per_request(teacher_top_ids: np.ndarray, retrieval_top_ids: np.ndarray) -> np.ndarray:
    """Per request (row): the share of its teacher ids (-1 slots left out) that its retrieval ids contain; NaN
    for a row with no teacher id. Rows of both arrays are the same requests, in the same order."""
    t = np.asarray(teacher_top_ids, dtype=np.int64)
    r = np.asarray(retrieval_top_ids, dtype=np.int64)
    if t.ndim != 2 or r.ndim != 2 or t.shape[0] != r.shape[0]:
        raise ValueError(f"chain consistency: teacher ids {t.shape} and retrieval ids {r.shape} must be 2-d "
                         f"with one row per request each")
    valid = t >= 0
    kept = r >= 0
    indptr = np.zeros(len(r) + 1, dtype=np.int64)
    np.cumsum(kept.sum(1), out=indptr[1:])
    found = membership(t, (indptr, r[kept])) & valid   # r[kept] is row-major: each row's ids in turn
    n = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, found.sum(1) / np.maximum(n, 1), np.nan)


def chain_consistency(teacher_top_ids: np.ndarray, retrieval_top_ids: np.ndarray) -> float:
    """The share of the teacher's top ids that retrieval's top ids contain, averaged over the requests that have
    teacher ids (:func:`chain_consistency_per_request`); NaN without any."""
    per = chain_consistency_per_request(teacher_top_ids, retrieval_top_ids)
    per = per[~np.isnan(per)]
    return float(per.mean()) if len(per) else float("nan")
