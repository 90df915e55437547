"""Group AUC: the AUC of each user's exposures, averaged with the user's impressions as weight.

Why not one global AUC: a pre-ranker only ever orders one request's candidates, for one user in one
scenario, so what matters is how it orders each user's items, not whether an active user's scores sit
above an idle user's. A user whose rows are all clicks (or all non-clicks) has no pair to order and is
left out; weighting by impressions (rows) follows the usual GAUC definition (DIN, COLD).

Vectorised: one lexsort by (user, score), ties get their average rank inside the user, and each user's
AUC is the Mann-Whitney statistic from the sum of its positives' ranks. Fine for millions of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _per_user_auc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUC, rows) of every user with both labels present."""
    n = len(users)
    order = np.lexsort((scores, users))
    u, s, y = users[order], scores[order], labels[order]
    new_user = np.r_[True, u[1:] != u[:-1]]
    new_tie = new_user | np.r_[True, s[1:] != s[:-1]]
    user_of = np.cumsum(new_user) - 1
    tie_of = np.cumsum(new_tie) - 1
    tie_first = np.flatnonzero(new_tie)
    tie_last = np.r_[tie_first[1:] - 1, n - 1]
    user_first = np.flatnonzero(new_user)
    rank = (tie_first[tie_of] + tie_last[tie_of]) / 2.0 - user_first[user_of] + 1.0   # 1-based, ties averaged
    rows = np.bincount(user_of).astype(np.float64)
    pos = np.bincount(user_of, weights=y)
    neg = rows - pos
    pos_rank = np.bincount(user_of, weights=rank * y)
    ok = (pos > 0) & (neg > 0)
    auc = (pos_rank[ok] - pos[ok] * (pos[ok] + 1) / 2.0) / (pos[ok] * neg[ok])
    return auc, rows[ok]


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of per-user AUC; NaN when no user has both a click and a non-click."""
    users = np.asarray(users)
    labels = np.asarray(labels).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not (len(users) == len(labels) == len(scores)):
        raise ValueError(f"gauc: users, labels and scores must have one entry per row (got {len(users)}, "
                         f"{len(labels)}, {len(scores)})")
    if np.isnan(scores).any():
        raise ValueError("gauc: scores: must not be NaN")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("gauc: labels: must be 0 or 1")
    if len(users) == 0:
        return float("nan")
    auc, rows = _per_user_auc(users, labels, scores)
    return float(np.sum(auc * rows) / np.sum(rows)) if len(auc) else float("nan")


def request_keys(groups: np.ndarray | pd.Series, users: np.ndarray) -> np.ndarray:
    """One int64 key per (group, user) pair: what GAUC averages over when a user's scenarios are separate
    requests (a pre-ranker never compares a user's candidates of two scenarios)."""
    g = pd.factorize(np.asarray(groups))[0].astype(np.int64)
    u = pd.factorize(np.asarray(users))[0].astype(np.int64)
    return g * (int(u.max()) + 1 if len(u) else 1) + u


def gauc_by(groups: np.ndarray | pd.Series, users: np.ndarray, labels: np.ndarray,
            scores: np.ndarray) -> dict[str, float]:
    """GAUC of each group (scenario), keyed by the group's name, in sorted order."""
    g = np.asarray(groups).astype(str)
    users, labels, scores = np.asarray(users), np.asarray(labels), np.asarray(scores)
    return {name: gauc(users[g == name], labels[g == name], scores[g == name]) for name in sorted(set(g))}


def gauc_within(groups: np.ndarray | pd.Series, users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Overall GAUC with each (group, user) pair as one user: every scenario's requests, pooled."""
    return gauc(request_keys(groups, users), labels, scores)
