"""The cascade: retrieval's top-K through the pre-ranker, and the pair scorer the pre-ranker's rows are scored with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from support import tiny_params

from sass_retrieval.data.store import read_interactions, read_items
from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
from sass_retrieval.evaluate.protocol import build_eval_set, evaluate
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.rank.cascade import CascadeRecommender, PairScorer
from sass_retrieval.rank.features import RankStats, feature_matrix
from sass_retrieval.rank.stage import (
    exposure_gauc,
    fit_row,
    load_reranker,
    rank_rows,
    save_reranker,
    save_stats,
    teacher_scores,
)


@pytest.fixture(scope="module")
def world(tiny_project, tiny_bank):
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    w = tiny_project["window"]
    frame = read_interactions(tiny_project["store"], w.train_start, w.train_end)
    test = read_interactions(tiny_project["store"], w.test_start, w.test_end)
    for f in (frame, test):
        f["scenario"] = f["scenario"].astype(str)
    frame = frame[frame["scenario"].isin(bank.scenarios)].reset_index(drop=True)
    test = test[test["scenario"].isin(bank.scenarios)].reset_index(drop=True)
    items = read_items(tiny_project["store"])
    rec = EmbeddingRecommender({s: model for s in bank.scenarios}, bank)
    scorer = PairScorer(rec.models, bank)
    params = tiny_params({"rank": {"feature_sets": [["user_tag_ctr", "item_scenario_ctr", "retrieval_score"]],
                                   "epochs": 2, "batch_size": 256}})
    rows = rank_rows(frame, items, w.train_dates)
    stats = RankStats.from_frame(frame, items)
    reranker, report = fit_row(rows.with_scores(scorer), bank.scenarios, stats, params)
    return {"bank": bank, "rec": rec, "scorer": scorer, "reranker": reranker, "report": report, "frame": frame,
            "test": test, "rows": rows, "params": params, "items": items}


def test_pair_scores_are_the_index_scores(world) -> None:
    bank, rec, scorer = world["bank"], world["rec"], world["scorer"]
    s = bank.scenarios[0]
    users = bank.user_ids[:25]
    scores, ids = rec.top_scored(s, users, 10)
    got = scorer(s, np.repeat(users, 10), ids.reshape(-1)).reshape(len(users), 10)
    np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-5)
    assert scorer(s, np.array([-5]), ids[0, :1])[0] == 0.0, "a user outside the bank has no retrieval evidence"


def test_the_cascade_serves_retrieval_candidates_in_the_pre_rankers_order(world) -> None:
    bank, rec, reranker = world["bank"], world["rec"], world["reranker"]
    s = bank.scenarios[0]
    users = bank.user_ids[:30]
    top_k = 40
    cascade = CascadeRecommender(rec, reranker, top_k)
    scores, cand = rec.top_scored(s, users, top_k)
    served = cascade.top_items(s, users, 10)
    assert served.shape == (len(users), 10)
    for u, c, sc, out in zip(users, cand, scores, served, strict=True):
        assert set(out[out >= 0]) <= set(c[c >= 0]), "only retrieved candidates are served"
        feats = feature_matrix(reranker.stats, s, np.full(len(c), u), c, sc, reranker.names)
        logits = reranker.model.score(feats, s)
        want = c[np.argsort(-logits, kind="stable")][:10]
        np.testing.assert_array_equal(out, want)
    assert not np.array_equal(served, cand[:, :10]), "the pre-ranker changed some order"
    many = cascade.top_items(s, users[:3], top_k + 20)   # more than top_k asked: still every candidate once
    assert all(len(set(r[r >= 0])) == (r >= 0).sum() for r in many)


def test_the_cascade_goes_through_the_protocol(world, tiny_project) -> None:
    bank, rec, reranker = world["bank"], world["rec"], world["reranker"]
    train = world["frame"]
    es = build_eval_set(train, world["test"], bank.reported)
    res = evaluate(es, CascadeRecommender(rec, reranker, 60), ks=(20, 50))
    assert set(res["per_scenario"]) == set(bank.reported)
    assert 0.0 <= res["macro"]["ndcg@50"] <= 1.0


def test_a_saved_pre_ranker_reloads_to_the_same_order(world, tmp_path) -> None:
    reranker, report = world["reranker"], world["report"]
    save_stats(reranker.stats, tmp_path)
    save_reranker(reranker, report, tmp_path / "sass")
    again = load_reranker(tmp_path, "sass")
    bank, rec = world["bank"], world["rec"]
    s = bank.scenarios[1]
    users = bank.user_ids[:20]
    scores, ids = rec.top_scored(s, users, 30)
    np.testing.assert_array_equal(reranker.order(s, users, ids, scores), again.order(s, users, ids, scores))
    assert list(again.names) == list(reranker.names)


def test_gauc_and_teacher_scores_cover_the_exposures(world) -> None:
    g = exposure_gauc(world["reranker"], world["scorer"], world["test"])
    assert set(g) == set(world["test"]["scenario"].unique())
    assert all(v["rows"] > 0 and (np.isnan(v["rank"]) or 0.0 <= v["rank"] <= 1.0) for v in g.values())
    table = teacher_scores(world["reranker"], world["scorer"], world["rows"])
    rows = world["rows"]
    assert len(table) == len(rows.train) + len(rows.valid)
    assert list(table.columns) == ["date", "scenario", "user_id", "video_id", "is_click", "teacher_logit"]
    assert np.isfinite(table["teacher_logit"]).all() and table["teacher_logit"].std() > 0
    assert isinstance(table, pd.DataFrame)
