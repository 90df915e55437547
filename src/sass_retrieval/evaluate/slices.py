"""Evaluation slices: the sub-populations where a multi-scenario model is supposed to help.

The macro and micro averages of the protocol are dominated by users and videos with plenty of
data in a scenario, where a single-scenario model already does well. The claim of cross-scenario
transfer is about the others, so the report scores every row on these slices too:

- ``all``: the benchmark's evaluation set, unchanged.
- ``scenario_cold``: pairs (user u, scenario s) where u has fewer than ``cold_max`` training
  interactions (rows of any label) in s, but at least ``cold_min_other`` in the other scenarios,
  i.e. users that are new to s and known elsewhere: the population transfer is for. "Other
  scenarios" means every other scenario of the training frame, including the merged ``other`` one
  (it is training signal a multi-scenario model sees). Same pools and ground truth; a subset of pairs.
- ``tail_truth``: ground truth restricted to the scenario's tail videos, those with fewer training
  clicks in that scenario than the median over the videos clicked in it in training (each at least
  once). Never-clicked videos, in the pool or not, are tail. The median is over the clicked videos,
  not the whole pool, because in sparse tabs most of the pool was never clicked (KuaiRand-Pure's dev
  split: tabs 0 and 6), a pool median of 0 would leave nothing below it, and the small tabs are the
  ones this slice is for. Pairs with no tail video left in G are dropped.

Every slice keeps every reported scenario (possibly with 0 pairs), the same pools and the same
``train_clicked``, so :func:`evaluate_slices` can rank each pair once and score all slices from
that one ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from sass_retrieval.evaluate.protocol import (
    DEFAULT_KS,
    EvalSet,
    Recommender,
    _check_frame,
    _check_ks,
    evaluate,
    rank_pairs,
    score_rankings,
)

SLICES = ("all", "scenario_cold", "tail_truth")
SLICE_DESCRIPTIONS = {
    "all": "every evaluation pair of the benchmark",
    "scenario_cold": "users with fewer than {cold_max} training interactions in the scenario but at least "
    "{cold_min_other} in the other scenarios (new to the scenario, known elsewhere)",
    "tail_truth": "ground truth restricted to tail videos: fewer training clicks in the scenario than the "
    "median over the videos clicked in it in training (pairs left without a tail video are dropped)",
}


def _subset(es: EvalSet, keep: Mapping[str, np.ndarray], truth: Mapping[str, list[set[int]]] | None = None) -> EvalSet:
    """The same evaluation set restricted to ``keep[s]`` (boolean mask over ``es.pairs[s]``)."""
    pairs, new_truth = {}, {}
    for s in es.scenarios:
        mask = np.asarray(keep[s], dtype=bool)
        src = truth[s] if truth is not None else es.truth[s]
        pairs[s] = np.asarray(es.pairs[s], dtype=np.int64)[mask]
        new_truth[s] = [t for t, k in zip(src, mask, strict=True) if k]
    return EvalSet(scenarios=list(es.scenarios), pairs=pairs, truth=new_truth, pools=es.pools,
                   train_clicked=es.train_clicked)


def scenario_cold_mask(es: EvalSet, train: pd.DataFrame, cold_max: int = 5,
                       cold_min_other: int = 5) -> dict[str, np.ndarray]:
    """Per scenario, which pairs are scenario-cold (see the module doc); boolean over ``es.pairs[s]``."""
    if cold_max < 0 or cold_min_other < 0:
        raise ValueError(f"cold_max and cold_min_other must be >= 0, got {cold_max}, {cold_min_other}")
    tr = _check_frame(train, "train")
    total = tr["user_id"].value_counts()
    by_scenario = tr.groupby(["scenario", "user_id"]).size()
    out = {}
    for s in es.scenarios:
        users = pd.Index(np.asarray(es.pairs[s], dtype=np.int64))
        in_s = by_scenario[s] if s in by_scenario.index.get_level_values(0) else pd.Series(dtype=np.int64)
        n_in = in_s.reindex(users, fill_value=0).to_numpy(np.int64)
        n_all = total.reindex(users, fill_value=0).to_numpy(np.int64)
        out[s] = (n_in < cold_max) & (n_all - n_in >= cold_min_other)
    return out


def tail_thresholds(es: EvalSet, train: pd.DataFrame) -> dict[str, dict]:
    """Per scenario: ``{"median": median training clicks over its clicked videos, "clicks": {video: clicks}}``.

    ``clicks`` holds only videos with at least one training click in the scenario; any other video
    (including one outside the pool) has 0. A scenario without training clicks has median 0 (no tail).
    """
    tr = _check_frame(train, "train")
    clicked = tr[tr["is_click"] == 1]
    out = {}
    for s in es.scenarios:
        vc = clicked.loc[clicked["scenario"] == s, "video_id"].value_counts()
        median = float(np.median(vc.to_numpy(np.float64))) if len(vc) else 0.0
        out[s] = {"median": median, "clicks": {int(v): int(c) for v, c in vc.items()}}
    return out


def build_slices(es: EvalSet, train: pd.DataFrame, cold_max: int = 5, cold_min_other: int = 5) -> dict[str, EvalSet]:
    """``{"all": es, "scenario_cold": ..., "tail_truth": ...}`` (definitions in the module doc).

    ``train`` is the train-window frame ``es`` was built from, with the run's scenario names
    (``user_id``, ``video_id``, ``scenario``, ``is_click``). Pure: ``es`` is not modified, and the
    slices share its pools and ``train_clicked``.
    """
    cold = _subset(es, scenario_cold_mask(es, train, cold_max, cold_min_other))
    thresholds = tail_thresholds(es, train)
    tail_truth: dict[str, list[set[int]]] = {}
    keep: dict[str, np.ndarray] = {}
    for s in es.scenarios:
        med, clicks = thresholds[s]["median"], thresholds[s]["clicks"]
        restricted = [{v for v in g if clicks.get(v, 0) < med} for g in es.truth[s]]
        tail_truth[s] = restricted
        keep[s] = np.fromiter((bool(g) for g in restricted), dtype=bool, count=len(restricted))
    tail = _subset(es, keep, tail_truth)
    return {"all": es, "scenario_cold": cold, "tail_truth": tail}


def slice_summary(slices: Mapping[str, EvalSet]) -> dict[str, dict[str, int]]:
    """``{slice: {scenario: n_pairs}}``: how much evidence each slice's numbers rest on."""
    return {name: {s: int(len(sl.pairs[s])) for s in sl.scenarios} for name, sl in slices.items()}


def _shares_ranking(sl: EvalSet, base: EvalSet) -> bool:
    """Whether ``sl`` ranks exactly like ``base`` (same pools and train clicks), so rankings can be shared."""
    if sl.train_clicked is not base.train_clicked:
        return False
    for s in sl.scenarios:
        if s not in base.pools:
            return False
        a, b = sl.pools[s], base.pools[s]
        if a is not b and not np.array_equal(a, b):
            return False
    return True


def evaluate_slices(slices: Mapping[str, EvalSet], rec: Recommender, ks: Iterable[int] = DEFAULT_KS,
                    batch_size: int = 2048, keep_pairs: bool = False) -> dict[str, dict]:
    """``{slice: evaluate(slice, rec, ks, batch_size, keep_pairs)}``, asking ``rec`` once per pair.

    Slices that share pools and ``train_clicked`` with the first slice (all of
    :func:`build_slices`'s do) are ranked together: the union of their pairs is ranked once with
    :func:`~sass_retrieval.evaluate.protocol.rank_pairs` and each slice scores its rows of that
    ranking. For a recommender whose top-k lists are prefixes of its longer lists (every one in this
    project) this is exactly what separate ``evaluate`` calls give, for one ranking instead of one per
    slice, and all slices are guaranteed to score the very same lists. Other slices are evaluated on
    their own.
    """
    ks = _check_ks(ks)
    if not slices:
        return {}
    base = next(iter(slices.values()))
    shared = [name for name, sl in slices.items() if _shares_ranking(sl, base)]
    out: dict[str, dict] = {}
    if shared:
        scenarios = list(dict.fromkeys(s for name in shared for s in slices[name].scenarios))
        union = {s: np.unique(np.concatenate([np.asarray(slices[n].pairs[s], dtype=np.int64)
                                              for n in shared if s in slices[n].pairs] or [np.empty(0, np.int64)]))
                 for s in scenarios}
        ranking_set = EvalSet(scenarios=scenarios, pairs=union, truth={s: [] for s in scenarios},
                              pools={s: base.pools[s] for s in scenarios}, train_clicked=base.train_clicked)
        ranked = rank_pairs(ranking_set, rec, ks[-1], batch_size)
        for name in shared:
            sl = slices[name]
            rows = {s: ranked[s][np.searchsorted(union[s], np.asarray(sl.pairs[s], dtype=np.int64))]
                    for s in sl.scenarios}
            out[name] = score_rankings(sl, rows, ks, keep_pairs, batch_size)
    for name, sl in slices.items():
        if name not in out:
            out[name] = evaluate(sl, rec, ks, batch_size, keep_pairs)
    return {name: out[name] for name in slices}
