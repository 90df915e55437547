"""Our HitRate@K, Recall@K and NDCG@K against an independent implementation: ranx.

ranx's definitions, checked in its source (ranx 0.3.x, ``ranx/metrics``), with binary qrels
(every ground-truth video has relevance 1):

- ``hit_rate@k`` is binary per query: 1.0 if any of the top k retrieved documents is relevant
  (trec_eval's ``success``). Ours is the same.
- ``recall@k`` = relevant documents in the top k / number of relevant documents in the qrels. The
  qrels hold all of G, including videos that can not be ranked (outside the pool or the list), so
  the denominator is |G|, as ours.
- ``ndcg@k`` is the Järvelin-Kekäläinen form, DCG = sum rel_i / log2(i + 1), IDCG the DCG of the
  qrels sorted by relevance and cut at k, i.e. over min(|G|, k) hits with binary relevance. Ours is
  the same (``ndcg_burges`` would use 2^rel - 1, which is also equal for binary relevance).

Conversions, the only ones needed:

- A ranked row becomes a ranx run with strictly decreasing scores (rank r gets score m - r), so the
  order is unambiguous.
- An empty slot (``-1``) still occupies its rank in our metrics. ranx has no empty slot, so each one
  becomes a unique dummy document (``pad<j>``) that is in no qrels: it takes the rank and never hits.
  Dropping them instead would move later items up and change NDCG wherever a slot precedes a hit.
- Ranked rows hold no duplicate item (ranx can not express one; ours counts a repeat once).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.evaluate.metrics import metrics_at_ks
from sass_retrieval.evaluate.protocol import build_eval_set, evaluate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ranx

KS = (20, 50, 100)
pytestmark = pytest.mark.filterwarnings("ignore::Warning")  # numba's uint64 cast notes inside ranx


def ranx_scores(ranked: np.ndarray, truth: list[set[int]], ks=KS) -> dict[str, np.ndarray]:
    """Per-row ranx scores ``{"ndcg@50": float64[n], ...}`` for our ranked matrix and truth sets."""
    n, m = ranked.shape
    qid = [f"q{i:06d}" for i in range(n)]
    qrels = ranx.Qrels({q: {f"d{v}": 1 for v in g} for q, g in zip(qid, truth, strict=True)})
    run = ranx.Run({q: {(f"d{v}" if v >= 0 else f"pad{j}"): float(m - j) for j, v in enumerate(row)}
                    for q, row in zip(qid, ranked.tolist(), strict=True)})
    names = [f"{metric}@{k}" for k in ks for metric in ("hit_rate", "recall", "ndcg")]
    ranx.evaluate(qrels, run, names, return_mean=False, threads=1, save_results_in_run=True)
    return {name: np.array([run.scores[name][q] for q in qid], dtype=np.float64) for name in names}


def random_case(seed: int, n: int = 300, m: int = 120, vocab: int = 400):
    """Rankings with -1 slots (inside and at the end), |G| from 1 to 150 (> K), and truth outside the list."""
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(vocab)[:m] for _ in range(n)]).astype(np.int64)
    holes = rng.random((n, m)) < 0.08
    ranked[holes] = -1
    short = rng.random(n) < 0.2  # some rows end in a run of empty slots
    for i in np.flatnonzero(short):
        ranked[i, rng.integers(1, m):] = -1
    truth = []
    for i in range(n):
        size = int(rng.choice([1, 2, 5, 30, 110, 150]))
        listed = ranked[i][ranked[i] >= 0]
        from_list = rng.choice(listed, size=min(size // 2 + 1, listed.size), replace=False)
        outside = rng.integers(vocab, vocab + 1000, size=size)  # never ranked (e.g. outside the pool)
        g = {int(x) for x in from_list} | {int(x) for x in outside}
        truth.append(set(list(g)[:size]) or {int(outside[0])})
    return ranked, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_agree_with_ranx(seed: int):
    ranked, truth = random_case(seed)
    assert (ranked == -1).any() and max(len(g) for g in truth) > max(KS)
    ours = metrics_at_ks(ranked, truth, KS)
    theirs = ranx_scores(ranked, truth)
    for name, expected in theirs.items():
        np.testing.assert_allclose(ours[name], expected, rtol=0, atol=1e-6, err_msg=name)
    assert 0 < ours["hit_rate@20"].mean() < 1 and ours["ndcg@100"].max() > 0


def test_hand_checked_conversion_of_an_empty_slot():
    """[-1, 7]: ours and ranx both score the hit at rank 2 (the slot is a dummy doc, not dropped)."""
    ranked = np.array([[-1, 7, 8]])
    ours = metrics_at_ks(ranked, [{7}], (2,))
    theirs = ranx_scores(ranked, [{7}], ks=(2,))
    assert ours["ndcg@2"][0] == pytest.approx(1 / np.log2(3)) == pytest.approx(theirs["ndcg@2"][0])


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "video_id", "scenario", "is_click"])


class Ordered:
    """Deterministic: every user's list is the pool ordered by a per-(user, video) hash."""

    @staticmethod
    def order(scenario: str, user: int, pool: np.ndarray) -> np.ndarray:
        keys = (pool * 2654435761 + user * 40503 + len(scenario) * 97) % 1000003
        return pool[np.argsort(keys, kind="stable")]

    def __init__(self, pools):
        self.pools = pools

    def top_items(self, scenario, user_ids, k):
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        for i, u in enumerate(user_ids):
            lst = self.order(scenario, int(u), self.pools[scenario])[:k]
            out[i, : lst.size] = lst
        return out


def test_end_to_end_protocol_per_pair_values_match_ranx():
    """evaluate(keep_pairs=True) on a tiny EvalSet vs ranx on the same filtered lists, built here by hand."""
    rng = np.random.default_rng(7)
    n = 4000
    train = frame(list(zip(rng.integers(0, 60, n).tolist(), rng.integers(0, 250, n).tolist(),
                           rng.choice(["a", "b"], n).tolist(), (rng.random(n) < 0.25).astype(int).tolist(),
                           strict=True)))
    m = 1500
    test = frame(list(zip(rng.integers(0, 70, m).tolist(), rng.integers(0, 300, m).tolist(),
                          rng.choice(["a", "b"], m).tolist(), (rng.random(m) < 0.6).astype(int).tolist(),
                          strict=True)))
    es = build_eval_set(train, test, ["a", "b"])
    ks = (20, 50, 100)
    res = evaluate(es, Ordered(es.pools), ks=ks, batch_size=16, keep_pairs=True)
    for s in es.scenarios:
        users = es.pairs[s]
        assert users.size > 10
        # the protocol's list, rebuilt independently: the full order minus train clicks, first 100, -1 padded
        lists = np.full((users.size, max(ks)), -1, dtype=np.int64)
        for i, u in enumerate(users):
            clicked = set(es.train_clicked.get(int(u), np.empty(0, dtype=np.int64)).tolist())
            kept = [v for v in Ordered.order(s, int(u), es.pools[s]).tolist() if v not in clicked][: max(ks)]
            lists[i, : len(kept)] = kept
        theirs = ranx_scores(lists, es.truth[s], ks)
        for name, expected in theirs.items():
            np.testing.assert_allclose(res["per_pair"][s][name], expected, rtol=0, atol=1e-6, err_msg=f"{s} {name}")
            assert res["per_scenario"][s][name] == pytest.approx(expected.mean(), abs=1e-9)
