"""The benchmark evaluation protocol (docs/benchmark.md), implemented exactly.

Inputs are two interaction frames (the train window and the test window) whose ``scenario``
column is already mapped to the run's scenario names (rare raw scenarios already merged into
``other``), plus the reported scenarios. Only ``user_id``, ``video_id``, ``scenario`` and
``is_click`` are read.

Rules:

- Evaluation unit = a (user, scenario) pair where the user clicked >= 1 video in that scenario in
  the test window and has >= 1 interaction (any label, any scenario) in the train window.
- Ground truth G = the videos the user clicked in that scenario in the test window, minus the
  videos the user clicked anywhere (any scenario) in the train window. A pair whose G is empty
  after this removal is dropped: the benchmark defines G that way, and a pair with empty G has no
  relevant item, so it cannot score (it would only add zeros to every metric).
- Candidate pool of a scenario = the videos exposed (any label) in that scenario in the train
  window. A ground-truth video outside the pool is a miss and still counts in |G|.
- Videos the user clicked in the train window (any scenario) are removed from the ranked list.
  ``evaluate`` asks the recommender for ``k_max + e`` items, where ``e`` is the largest number of
  train-clicked pool videos among the batch's users (capped at the pool size), drops each user's
  train-clicked videos, and keeps the first ``k_max``; later items move up.
- Metrics (binary relevance, see ``metrics.py``) are averaged over pairs per scenario; ``macro`` is
  the unweighted mean over the reported scenarios (those with >= 1 pair), ``micro`` the mean over
  all pairs of the reported scenarios (pair-weighted).
- ``evaluate(..., keep_pairs=True)`` also returns every pair's metric values, aligned with
  ``EvalSet.pairs``; the aggregates are their means. ``slices.py`` scores sub-populations and
  ``significance.py`` turns per-pair differences between two rows into confidence intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from sass_retrieval.evaluate.metrics import METRIC_NAMES, membership, metrics_at_ks

REQUIRED_COLUMNS = ("user_id", "video_id", "scenario", "is_click")
DEFAULT_KS = (20, 50, 100)


@dataclass
class EvalSet:
    scenarios: list[str]  # reported scenarios
    pairs: dict[str, np.ndarray]  # scenario -> user ids of its evaluation pairs (sorted)
    truth: dict[str, list[set[int]]]  # scenario -> ground-truth sets aligned with pairs
    pools: dict[str, np.ndarray]  # scenario -> candidate pool video ids (exposed in that scenario in train)
    train_clicked: dict[int, np.ndarray]  # user -> videos clicked anywhere in train (sorted, unique)

    def only(self, scenarios: Iterable[str]) -> EvalSet:
        """The same pairs, ground truth and pools for some of the scenarios (e.g. those with enough pairs)."""
        keep = [str(s) for s in scenarios]
        return EvalSet(scenarios=keep, pairs={s: self.pairs[s] for s in keep}, truth={s: self.truth[s] for s in keep},
                       pools={s: self.pools[s] for s in keep}, train_clicked=self.train_clicked)

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            s: {"pairs": int(len(self.pairs[s])), "pool": int(len(self.pools[s]))} for s in self.scenarios
        }


class Recommender(Protocol):
    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int64 video ids from that scenario's pool, best first, -1 padded."""
        ...


def _check_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name} frame is missing column(s) {missing}")
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].to_numpy(dtype=np.int64),
            "video_id": df["video_id"].to_numpy(dtype=np.int64),
            "scenario": df["scenario"].astype(str).to_numpy(dtype=object),
            "is_click": df["is_click"].to_numpy(dtype=np.int64),
        }
    )
    return out


def _group_sorted(users: np.ndarray, videos: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique (user, video) pairs grouped by user: (sorted users, per-user sorted video arrays)."""
    if users.size == 0:
        return np.empty(0, dtype=np.int64), []
    order = np.lexsort((videos, users))
    u, v = users[order], videos[order]
    keep = np.ones(u.size, dtype=bool)
    keep[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    u, v = u[keep], v[keep]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    return u[starts], np.split(v, starts[1:])


def build_eval_set(train: pd.DataFrame, test: pd.DataFrame, scenarios: Iterable[str], label: str = "is_click") -> EvalSet:
    """Evaluation pairs, ground truth and pools of the reported ``scenarios`` (see module doc).

    ``label``: the test-window column that makes a video relevant (``is_click``, the benchmark's; ``long_view`` or
    ``is_like`` score a multi-objective row per objective, data.schema.OBJECTIVES). Only the ground truth
    changes: pairs are the users with >= 1 such video, and the removal of train-window clicks, the pools and
    the exclusion from the ranked list stay the protocol's."""
    scenarios = [str(s) for s in scenarios]
    if len(set(scenarios)) != len(scenarios):
        raise ValueError(f"duplicate reported scenarios: {scenarios}")
    tr = _check_frame(train, "train")
    if label != "is_click":
        if label not in test.columns:
            raise ValueError(f"test frame has no label column {label!r} (has {sorted(test.columns)})")
        test = test.drop(columns="is_click").rename(columns={label: "is_click"})
    te = _check_frame(test, "test")

    tr_click = tr[tr["is_click"] == 1]
    clk_users, clk_videos = _group_sorted(
        tr_click["user_id"].to_numpy(np.int64), tr_click["video_id"].to_numpy(np.int64)
    )
    train_clicked = {int(u): v for u, v in zip(clk_users, clk_videos, strict=True)}
    train_users = np.unique(tr["user_id"].to_numpy(np.int64))
    # (user, video) keys clicked in train, for the removal from G
    clicked_pairs = tr_click[["user_id", "video_id"]].drop_duplicates()

    te_click = te[(te["is_click"] == 1) & te["user_id"].isin(train_users)]
    te_click = te_click.merge(clicked_pairs, on=["user_id", "video_id"], how="left", indicator=True)
    te_click = te_click[te_click["_merge"] == "left_only"]

    pairs: dict[str, np.ndarray] = {}
    truth: dict[str, list[set[int]]] = {}
    pools: dict[str, np.ndarray] = {}
    for s in scenarios:
        pools[s] = np.unique(tr.loc[tr["scenario"] == s, "video_id"].to_numpy(np.int64))
        sub = te_click[te_click["scenario"] == s]
        users, groups = _group_sorted(sub["user_id"].to_numpy(np.int64), sub["video_id"].to_numpy(np.int64))
        pairs[s] = users
        truth[s] = [{int(x) for x in g} for g in groups]
    return EvalSet(scenarios=scenarios, pairs=pairs, truth=truth, pools=pools, train_clicked=train_clicked)


def _csr_of(sets_by_user: Mapping[int, np.ndarray], users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    empty = np.empty(0, dtype=np.int64)
    rows = [sets_by_user.get(int(u), empty) for u in users]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64, copy=False) if rows else empty
    return indptr, indices


def _excluded_in_pool(indptr: np.ndarray, indices: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Per row, how many of its excluded videos are in the pool (only those can be returned)."""
    in_pool = np.isin(indices, pool).astype(np.int64)
    cums = np.concatenate([[0], np.cumsum(in_pool)])
    return cums[indptr[1:]] - cums[indptr[:-1]]


def _validate_ranked(ranked: np.ndarray, scenario: str, n: int, k: int, pool: np.ndarray) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != n:
        raise ValueError(
            f"scenario {scenario!r}: top_items returned shape {ranked.shape}, expected ({n}, {k})"
        )
    if ranked.shape[1] > k:
        raise ValueError(f"scenario {scenario!r}: top_items returned {ranked.shape[1]} columns for k={k}")
    if ranked.size and not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"scenario {scenario!r}: top_items must return integer ids, got {ranked.dtype}")
    ranked = ranked.astype(np.int64, copy=False)
    if ranked.shape[1] < k:  # a recommender may cap k at its pool size; pad with empty slots
        ranked = np.concatenate([ranked, np.full((n, k - ranked.shape[1]), -1, dtype=np.int64)], axis=1)
    ranked = np.where(ranked < 0, -1, ranked)
    valid = ranked >= 0
    if not np.isin(ranked[valid], pool).all():
        bad = np.setdiff1d(ranked[valid], pool)[:5]
        raise ValueError(
            f"scenario {scenario!r}: top_items returned videos outside the pool, e.g. {bad.tolist()}"
        )
    srt = np.sort(ranked, axis=1)
    if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        raise ValueError(f"scenario {scenario!r}: top_items returned a video twice in one user's list")
    return ranked


def filter_ranked(ranked: np.ndarray, excluded: tuple[np.ndarray, np.ndarray], k: int) -> np.ndarray:
    """Drop each row's excluded videos (CSR sets) and empty slots, move later items up, keep ``k``."""
    keep = (ranked >= 0) & ~membership(ranked, excluded)
    order = np.argsort(~keep, axis=1, kind="stable")
    out = np.take_along_axis(ranked, order, axis=1)
    out[~np.take_along_axis(keep, order, axis=1)] = -1
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((out.shape[0], k - out.shape[1]), -1, dtype=np.int64)], axis=1)
    return out[:, :k]


def metric_names(ks: Iterable[int]) -> list[str]:
    return [f"{m}@{k}" for k in sorted({int(k) for k in ks}) for m in METRIC_NAMES]


def _check_ks(ks: Iterable[int]) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def rank_pairs(es: EvalSet, rec: Recommender, k: int, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """The filtered top-``k`` list of every evaluation pair: ``{scenario: int64 (n_pairs, k)}``.

    Aligned with ``es.pairs[scenario]``; ``-1`` marks empty slots (always at the end). This is the
    ranking half of :func:`evaluate` (the request size and the removal of train-clicked videos are
    described in the module doc); it is separate so that one ranking can be scored against several
    ground truths (the slices in ``slices.py``) without asking the recommender again. ``es.truth`` is
    not read.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    out: dict[str, np.ndarray] = {}
    for s in es.scenarios:
        users = np.asarray(es.pairs[s], dtype=np.int64)
        pool = np.asarray(es.pools[s], dtype=np.int64)
        parts = [np.empty((0, k), dtype=np.int64)]
        for start in range(0, users.size, batch_size):
            u = users[start : start + batch_size]
            excl = _csr_of(es.train_clicked, u)
            extra = int(min(_excluded_in_pool(*excl, pool).max(initial=0), pool.size))
            k_req = k + extra
            ranked = _validate_ranked(rec.top_items(s, u, k_req), s, u.size, k_req, pool)
            parts.append(filter_ranked(ranked, excl, k))
        out[s] = np.concatenate(parts, axis=0)
    return out


def score_rankings(
    es: EvalSet,
    ranked: Mapping[str, np.ndarray],
    ks: Iterable[int] = DEFAULT_KS,
    keep_pairs: bool = False,
    batch_size: int = 2048,
) -> dict:
    """Score already filtered rankings (as :func:`rank_pairs` returns them) against ``es.truth``.

    The scoring half of :func:`evaluate`, same result format. ``ranked[s]`` must have one row per
    pair of ``es.pairs[s]`` and at least ``max(ks)`` columns; only the first ``k`` count at ``k``.
    Aggregates are computed from the per-pair values (a scenario's value is their mean, micro the
    mean over all pairs of the scored scenarios), so they equal the means of ``per_pair`` exactly.
    """
    ks = _check_ks(ks)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    names = metric_names(ks)
    per_scenario: dict[str, dict] = {}
    per_pair: dict[str, dict[str, np.ndarray]] = {}
    for s in es.scenarios:
        n = len(es.pairs[s])
        truth = es.truth[s]
        if len(truth) != n:
            raise ValueError(f"scenario {s!r}: {len(truth)} truth sets for {n} pairs")
        if s not in ranked:
            raise ValueError(f"scenario {s!r}: no ranking")
        r = np.asarray(ranked[s])
        if r.ndim != 2 or r.shape[0] != n or (n and r.shape[1] < ks[-1]):
            raise ValueError(f"scenario {s!r}: ranking of shape {r.shape}, expected ({n}, >= {ks[-1]})")
        chunks: dict[str, list[np.ndarray]] = {m: [np.empty(0, dtype=np.float64)] for m in names}
        for start in range(0, n, batch_size):
            values = metrics_at_ks(r[start : start + batch_size], truth[start : start + batch_size], ks)
            for m in names:
                chunks[m].append(values[m])
        per_pair[s] = {m: np.concatenate(chunks[m]).astype(np.float64, copy=False) for m in names}
        row: dict = {"pairs": int(n), "pool": int(len(es.pools[s]))}
        for m in names:
            row[m] = float(per_pair[s][m].mean()) if n else float("nan")
        per_scenario[s] = row

    scored = [s for s in es.scenarios if per_scenario[s]["pairs"] > 0]
    macro = {
        m: (float(np.mean([per_scenario[s][m] for s in scored])) if scored else float("nan")) for m in names
    }
    micro = {
        m: (float(np.concatenate([per_pair[s][m] for s in scored]).mean()) if scored else float("nan"))
        for m in names
    }
    out: dict = {"per_scenario": per_scenario, "macro": macro, "micro": micro}
    if keep_pairs:
        out["per_pair"] = per_pair
    return out


def evaluate(
    es: EvalSet,
    rec: Recommender,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 2048,
    keep_pairs: bool = False,
) -> dict:
    """Score ``rec`` on ``es``.

    Returns ``{"per_scenario": {s: {"pairs": n, "pool": size, "hit_rate@20": ..., "recall@20": ...,
    "ndcg@20": ..., ...}}, "macro": {metric: ...}, "micro": {metric: ...}}``. A scenario without
    pairs has NaN metrics and is left out of the macro and micro averages.

    With ``keep_pairs`` the result also holds ``"per_pair": {s: {metric: float64[n_pairs]}}``,
    aligned with ``es.pairs[s]``: what a paired significance test (``significance.py``) needs, since
    two rows scored on the same pairs differ far less from pair to pair than their means suggest.
    """
    ks = _check_ks(ks)
    for s in es.scenarios:  # fail before asking the recommender anything
        if len(es.truth[s]) != len(es.pairs[s]):
            raise ValueError(f"scenario {s!r}: {len(es.truth[s])} truth sets for {len(es.pairs[s])} pairs")
    return score_rankings(es, rank_pairs(es, rec, ks[-1], batch_size), ks, keep_pairs, batch_size)


def format_table(
    results_by_row: Mapping[str, dict], metrics: Iterable[str] = ("ndcg@50", "hit_rate@50"), digits: int = 4
) -> str:
    """Markdown table: one row per model, one column per scenario (pairs/pool in the header), macro, micro.

    Each cell holds the requested metrics separated by `` / `` in the order given. All rows must
    have been evaluated on the same pairs and pools (otherwise they are not comparable).
    """
    metrics = list(metrics)
    if not results_by_row:
        raise ValueError("no results to format")
    scenarios: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    for model, res in results_by_row.items():
        for s, row in res["per_scenario"].items():
            size = (int(row["pairs"]), int(row["pool"]))
            if s not in sizes:
                scenarios.append(s)
                sizes[s] = size
            elif sizes[s] != size:
                raise ValueError(
                    f"row {model!r} scenario {s!r} has pairs/pool {size}, other rows {sizes[s]}: not comparable"
                )

    def cell(values: Mapping[str, float] | None) -> str:
        if values is None:
            return "–"
        out = []
        for m in metrics:
            v = values.get(m)
            out.append("–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}")
        return " / ".join(out)

    header = (
        ["model"]
        + [f"{s} (pairs {sizes[s][0]:,}, pool {sizes[s][1]:,})" for s in scenarios]
        + ["macro", "micro"]
    )
    lines = [
        f"cells: {' / '.join(metrics)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for model, res in results_by_row.items():
        cells = [cell(res["per_scenario"].get(s)) for s in scenarios]
        cells += [cell(res.get("macro")), cell(res.get("micro"))]
        lines.append("| " + " | ".join([model, *cells]) + " |")
    return "\n".join(lines) + "\n"
