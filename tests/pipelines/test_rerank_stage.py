"""The rerank stage end to end on the tiny project: a re-ranker per publishable row that loads back and builds the
same lists, the rules kept, and the stage switched off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support import cwd

from pipelines import rerank
from sass_retrieval.rerank.goals import GOALS, WEIGHTED
from sass_retrieval.rerank.rules import breaks_rules
from sass_retrieval.rerank.stage import load_list_reranker

pytestmark = pytest.mark.slow


def test_every_publishable_row_gets_a_re_ranker_that_loads_back(built_project: Path) -> None:
    root = built_project / "models/rerank"
    for rel in ("stats/rank_stats.json", "sass/generator.pt", "sass/generator.json", "sass/report.json",
                "sass/evaluator/evaluator.json", "sass/evaluator/click/ranker.pt", "dssm_mixed/generator.pt"):
        assert (root / rel).exists(), rel
    rep = json.loads((root / "sass/report.json").read_text())
    assert set(rep["scales"]) == set(GOALS) and rep["generator"]["epochs"]
    assert set(rep["evaluator"]) >= {"click", "long_view", "like", "candidate_rows"}
    reranker = load_list_reranker(root, "sass")
    assert set(reranker.defaults) == set(WEIGHTED) and reranker.candidates == 50
    stats = reranker.evaluator.stats
    users = stats.users[:20]
    ids = np.tile(stats.videos[:50], (len(users), 1))
    scores = np.zeros(ids.shape, np.float32)
    a, util = reranker.rerank(stats.scenarios[0], users, ids, scores, reranker.weights())
    b, _ = load_list_reranker(root, "sass").rerank(stats.scenarios[0], users, ids, scores, reranker.weights())
    assert a.shape == (20, reranker.length) and np.array_equal(a, b), "a reloaded re-ranker builds the same lists"
    assert np.isin(a[a >= 0], ids).all() and set(util) == set(GOALS)
    slate = reranker.evaluator.slate(stats.scenarios[0], users, ids, scores)
    lists = reranker.lists(slate, reranker.weights())
    assert not breaks_rules(lists, slate.tag, reranker.generator.rules).any()
    w = reranker.weights({"diversity": 1.0, "click": 0.0})
    assert not torch.equal(reranker.generator.last_layers(w, 1)[0], reranker.generator.last_layers(
        reranker.weights(), 1)[0])


def test_rerank_off_writes_only_the_reason(built_project: Path, tmp_path: Path) -> None:
    root = tmp_path / "off"
    shutil.copytree(built_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rerank"] = {**params.get("rerank", {}), "enabled": False}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with cwd(root):
        assert rerank.main([]) == 0
    assert sorted(p.name for p in (root / "models/rerank").iterdir()) == ["off.json"]
    assert "rerank.enabled" in json.loads((root / "models/rerank/off.json").read_text())["rerank"]


def test_evaluation_measures_the_re_ranked_lists_and_the_report_shows_them(built_project: Path, tmp_path: Path
                                                                            ) -> None:
    from pipelines import report

    metrics = json.loads((built_project / "metrics/metrics.json").read_text())
    rr = metrics["rerank"]
    assert set(rr) == {"sass", "dssm_mixed"}
    for c in rr.values():
        assert set(c["utilities"]["upstream"]) == set(GOALS) == set(c["utilities"]["reranked"])
        share = c["better_share"]["macro"]
        assert 0.0 <= share["share"] <= 1.0 and share["lo"] <= share["diff"] <= share["hi"]
        assert c["ndcg"]["metric"] == "ndcg@10" and {"diff", "lo", "hi"} <= set(c["ndcg"]["delta"]["macro"])
    root = tmp_path / "report"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        assert report.main([]) == 0
    html = (root / "reports/run/index.html").read_text()
    assert "Re-ranking" in html and "evaluator prefers re-ranked" in html
