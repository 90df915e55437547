"""The cascade in service: a published version holds its row's pre-ranker, `sass serve` answers in the
pre-ranker's order (the order evaluation scored), the gate re-scores the version in service the same way,
and a broken pre-ranker is refused at load with one line while the old version stays in service.

Version A of the served project is published by the publish stage from a project whose rank stage ran
(tests/support.run_pipeline), so it holds a trained pre-ranker; version B is installed by hand without one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from serve.versions import assert_refused_in_one_line, reload_a_broken_version, warm_users

pytestmark = pytest.mark.slow

K = 10


@pytest.fixture(scope="module")
def version_a(served_project: dict):
    from sass_retrieval.serve.loader import load_version

    return load_version(served_project["a"], served_project["features"], served_project["store"])


def cascade_of(version, top_k: int):
    """evaluate's cascade over the version's own indexes and a fresh load of its pre-ranker."""
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.rank.cascade import CascadeRecommender
    from sass_retrieval.rank.stage import load_reranker

    base = EmbeddingRecommender(dict(version.models), version.bank, indexes=dict(version.indexes))
    return base, CascadeRecommender(base, load_reranker(version.path / "rank", version.row), top_k)


# ------------------------------------------------------------------------------------------------ publish


def test_the_published_version_holds_the_winners_pre_ranker(served_project: dict) -> None:
    from sass_retrieval.config import load_params

    a, row, other = served_project["a"], served_project["row_a"], served_project["row_b"]
    rank = served_project["root"] / "models" / "rank"
    assert (a / "rank" / row / "ranker.pt").read_bytes() == (rank / row / "ranker.pt").read_bytes()
    assert (a / "rank" / row / "ranker.json").read_text() == (rank / row / "ranker.json").read_text()
    assert sorted(p.name for p in (a / "rank" / "stats").iterdir()) == sorted(p.name for p in (rank / "stats").iterdir())
    assert not (a / "rank" / other).exists()   # only the served row's pre-ranker
    top_k = load_params(served_project["root"] / "params.yaml").rank.top_k
    assert json.loads((a / "served.json").read_text())["rank"] == {"top_k": top_k}
    last = json.loads((served_project["published"] / "decisions.jsonl").read_text().splitlines()[-1])
    assert last["version"] == a.name and last["stages"] == ["retrieval", "rank", "rerank"]   # + its re-ranker


def test_a_pre_ranker_without_its_statistics_is_not_published(tmp_path: Path) -> None:
    from sass_retrieval.errors import MissingPrerequisiteError
    from sass_retrieval.publish_run import rank_sources

    rank = tmp_path / "models" / "rank"
    (rank / "sass").mkdir(parents=True)
    with pytest.raises(MissingPrerequisiteError, match="stats: missing"):
        rank_sources("sass", rank)
    (rank / "stats").mkdir()
    assert rank_sources("sass", rank) == {"rank/sass": rank / "sass", "rank/stats": rank / "stats"}
    assert rank_sources("dssm_mixed", rank) == {}   # that row has none (or the stage was off): retrieval order


# ------------------------------------------------------------------------------------------------ serving


def test_served_lists_are_the_cascades_order(version_a, served_project: dict) -> None:
    from dataclasses import replace

    from sass_retrieval.index.faiss_index import search
    from sass_retrieval.serve.query import recommend, user_vectors

    # the cascade alone: the list re-ranker version A also holds is tests/serve/test_rerank_serving.py's
    version_a = replace(version_a, list_reranker=None)
    assert version_a.reranker is not None and version_a.stages == ["retrieval", "rank"]
    assert version_a.rank_top_k == json.loads((version_a.path / "served.json").read_text())["rank"]["top_k"]
    _, cascade = cascade_of(version_a, version_a.rank_top_k)
    reordered = 0
    for s in version_a.scenarios:
        for user in warm_users(served_project, s, 6):
            rec = recommend(version_a, user, s, K)
            assert rec.fallback is None and rec.stages == ("retrieval", "rank")
            expected = [int(i) for i in cascade.top_items(s, np.array([user]), K)[0] if i >= 0]
            assert rec.items == expected, (s, user)
            row = np.array([version_a.user_row(user)])
            scores, ids = search(version_a.indexes[s], user_vectors(version_a.models[s], version_a.bank, s, row),
                                 version_a.rank_top_k)
            assert set(rec.items) <= set(ids[0].tolist())           # every item was a retrieved candidate
            by_id = dict(zip(ids[0].tolist(), scores[0].tolist(), strict=True))
            assert rec.scores == [round(by_id[i], 6) for i in rec.items]   # each with its retrieval score
            reordered += rec.items != [int(i) for i in ids[0][:K] if i >= 0]
    assert reordered > 0, "the pre-ranker never changed retrieval's order: it is not applied"


def test_a_version_without_a_pre_ranker_serves_retrieval_order(served_project: dict) -> None:
    from sass_retrieval.index.faiss_index import search
    from sass_retrieval.serve.loader import load_version
    from sass_retrieval.serve.query import recommend, user_vectors

    b = load_version(served_project["b"], served_project["features"], served_project["store"])
    assert b.reranker is None and b.stages == ["retrieval"] and b.describe()["rank"] is None
    user = warm_users(served_project, "s1", 1)[0]
    rec = recommend(b, user, "s1", K)
    _, ids = search(b.indexes["s1"], user_vectors(b.models["s1"], b.bank, "s1", np.array([b.user_row(user)])), K)
    assert rec.stages == ("retrieval",) and rec.items == [int(i) for i in ids[0] if i >= 0]


def test_a_workspace_serves_its_rank_stages_pre_ranker_unless_the_stage_was_off(served_project: dict,
                                                                                 tmp_path: Path) -> None:
    from sass_retrieval.config import load_params
    from sass_retrieval.serve.loader import load_version

    root, row = served_project["root"], served_project["row_b"]
    v = load_version(root, served_project["features"], served_project["store"], row=row, scenarios=["s2"])
    assert v.stages[:2] == ["retrieval", "rank"] and v.rank_top_k == load_params(root / "params.yaml").rank.top_k
    assert list(v.reranker.names) == json.loads((root / "models" / "rank" / row / "ranker.json").read_text())["names"]
    off = tmp_path / "ws"
    for part in (f"models/{row}", f"indexes/{row}"):
        shutil.copytree(root / part, off / part)
    (off / "models" / "rank").mkdir()
    (off / "models" / "rank" / "off.json").write_text('{"rank": "disabled"}\n')
    v = load_version(off, served_project["features"], served_project["store"], row=row, scenarios=["s2"])
    assert v.reranker is None and v.stages == ["retrieval"]
    lost = tmp_path / "lost"   # the evaluation found the pre-ranker no better than retrieval order: not served
    for part in (f"models/{row}", f"indexes/{row}", "models/rank", "metrics"):
        shutil.copytree(root / part, lost / part)
    m = json.loads((lost / "metrics" / "metrics.json").read_text())
    m["cascade"][row]["served"] = False
    (lost / "metrics" / "metrics.json").write_text(json.dumps(m))
    v = load_version(lost, served_project["features"], served_project["store"], row=row, scenarios=["s2"])
    assert v.reranker is None and v.stages == ["retrieval"]


def _ranker_without_s2(folder: Path) -> None:
    """Replace the pre-ranker in ``folder`` by one of the same shape that knows only s0 and s1."""
    from sass_retrieval.rank.model import PreRanker, RankModelConfig, save_ranker

    meta = json.loads((folder / "ranker.json").read_text())
    save_ranker(PreRanker(meta["names"], ["s0", "s1"], RankModelConfig.from_dict(meta["config"])), folder)


BREAKAGES = {
    "truncated model": (lambda v, row: (v / "rank" / row / "ranker.pt").write_bytes(
        (v / "rank" / row / "ranker.pt").read_bytes()[:100]), "could not be loaded"),
    "missing statistics": (lambda v, row: (v / "rank" / "stats" / "rank_stats.json").unlink(), "rank_stats.json"),
    "missing model": (lambda v, row: (v / "rank" / row / "ranker.json").unlink(), "ranker.json"),
    "unknown scenario": (lambda v, row: _ranker_without_s2(v / "rank" / row), "not the served ['s2']"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_pre_ranker_is_refused_at_load_with_one_line(breakage: str, served_project: dict,
                                                              tmp_path: Path) -> None:
    breaking, words = BREAKAGES[breakage]
    assert_refused_in_one_line(served_project, tmp_path, breaking, "rank", words)


def test_the_old_version_stays_in_service_when_the_new_pre_ranker_is_broken(served_project: dict,
                                                                             published_copy: Path) -> None:
    from sass_retrieval.serve.query import recommend

    def corrupt(v: Path, row: str) -> None:
        (v / "rank" / row / "ranker.pt").write_bytes(b"not a state dict")

    service = reload_a_broken_version(served_project, published_copy, corrupt)
    assert service.current.reranker is not None and "pre-ranker" in service.error
    user = warm_users(served_project, "s0", 1)[0]
    assert recommend(service.current, user, "s0", K).stages[:2] == ("retrieval", "rank")
    service.stop()


def test_version_reports_the_pre_rankers_features(version_a) -> None:
    d = version_a.describe()
    meta = json.loads((version_a.path / "rank" / version_a.row / "ranker.json").read_text())
    assert d["stages"][:2] == ["retrieval", "rank"]
    assert d["rank"] == {"features": meta["names"], "top_k": version_a.rank_top_k, "scenarios": meta["scenarios"]}


# ----------------------------------------------------------------------------------- the gate's re-scoring


def test_the_gate_rescores_the_version_in_service_as_it_is_served(version_a, served_project: dict,
                                                                  published_copy: Path) -> None:
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.evaluate.published import score_published
    from sass_retrieval.publish import point_current
    from sass_retrieval.rank.cascade import CascadeRecommender

    users = {s: np.array(warm_users(served_project, s, 6)) for s in version_a.scenarios}

    def lists(rec) -> dict:   # what `score` sees: the top K of a few users per scenario
        return {"rec": rec, **{s: rec.top_items(s, u, K) for s, u in users.items()}}

    got = score_published(published_copy, version_a.bank, lists)
    assert isinstance(got["rec"], CascadeRecommender) and got["rec"].top_k == version_a.rank_top_k
    _, cascade = cascade_of(version_a, version_a.rank_top_k)
    for s, u in users.items():   # the flat index evaluation builds and the published flat index agree
        np.testing.assert_array_equal(got[s], cascade.top_items(s, u, K))
    assert score_published(published_copy, version_a.bank, lists, rank_top_k=K)["rec"].top_k == K
    point_current(published_copy, published_copy / "versions" / served_project["b"].name)
    plain = score_published(published_copy, version_a.bank, lists)["rec"]
    assert type(plain) is EmbeddingRecommender   # a version without a pre-ranker: retrieval order


def test_a_broken_pre_ranker_in_service_is_not_rescored(served_project: dict, published_copy: Path,
                                                        version_a) -> None:
    from sass_retrieval.evaluate.published import score_published
    from sass_retrieval.publish import point_current

    broken = published_copy / "versions" / "broken"
    shutil.copytree(served_project["a"], broken)
    (broken / "rank" / served_project["row_a"] / "ranker.pt").write_bytes(b"junk")
    point_current(published_copy, broken)
    assert score_published(published_copy, version_a.bank, lambda rec: {"scored": True}) is None
