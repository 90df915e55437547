import numpy as np
import pandas as pd

from sass_retrieval.evaluate.popular import PopularRecommender
from sass_retrieval.evaluate.protocol import build_eval_set, evaluate


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "video_id", "scenario", "is_click"])


TRAIN = frame(
    [
        # scenario a: 10 -> 2 clicks; 11 -> 1 click, 3 exposures; 12 -> 1 click, 2 exposures;
        # 13 and 14 -> 1 click, 1 exposure (tie -> smaller id first); 15 -> 0 clicks, 2 exposures; 16 -> 0/1
        (1, 10, "a", 1), (2, 10, "a", 1),
        (1, 11, "a", 1), (2, 11, "a", 0), (3, 11, "a", 0),
        (1, 12, "a", 1), (2, 12, "a", 0),
        (1, 14, "a", 1),
        (1, 13, "a", 1),
        (1, 16, "a", 0),
        (1, 15, "a", 0), (2, 15, "a", 0),
        # clicks in another scenario do not count for a
        (1, 16, "b", 1), (2, 16, "b", 1), (3, 16, "b", 1),
        (1, 17, "b", 0),
    ]
)  # fmt: skip


def test_ranking_order_and_ties():
    rec = PopularRecommender(TRAIN)
    assert rec.rankings["a"].tolist() == [10, 11, 12, 13, 14, 15, 16]
    assert rec.rankings["b"].tolist() == [16, 17]


def test_top_items_same_for_every_user_and_padded():
    rec = PopularRecommender(TRAIN)
    out = rec.top_items("a", np.array([1, 2, 3]), 3)
    assert out.dtype == np.int64 and out.shape == (3, 3)
    assert (out == [10, 11, 12]).all()
    out = rec.top_items("b", np.array([5]), 4)
    assert out.tolist() == [[16, 17, -1, -1]]
    assert rec.top_items("zzz", np.array([5]), 2).tolist() == [[-1, -1]]


def test_restricted_to_pool_and_scored_by_protocol():
    test = frame([(3, 10, "a", 1), (3, 99, "a", 1), (1, 17, "b", 1)])
    es = build_eval_set(TRAIN, test, ["a", "b"])
    rec = PopularRecommender(TRAIN)
    for s in ("a", "b"):
        assert set(rec.rankings[s]) == set(es.pools[s])
    res = evaluate(es, rec, ks=(1, 2))
    # user 3 (no train clicks) in a: 10 at rank 1, |G| = 2 (99 outside the pool)
    assert res["per_scenario"]["a"]["hit_rate@1"] == 1.0
    assert res["per_scenario"]["a"]["recall@2"] == 0.5
    # user 1 in b clicked 16 in train -> removed; 17 moves to rank 1
    assert res["per_scenario"]["b"]["ndcg@1"] == 1.0
