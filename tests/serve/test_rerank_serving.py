"""The list re-ranker in service: a published version holds its row's re-ranker, `sass serve` and `sass recommend`
answer with its list under the request's goal weights (rerank.stage.RerankRecommender's order over the upstream
the version serves), bad weights are refused in one line, a version or workspace without a re-ranker serves the
upstream order, and a broken re-ranker is refused at load while the old version stays in service.

Version A of the served project is published by the publish stage from a project whose rank and rerank stages
ran (tests/support.run_pipeline; served_project marks its pre-rankers as served), so it serves retrieval, the
pre-ranker and the re-ranker; version B is installed by hand with neither.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from serve.versions import assert_refused_in_one_line, reload_a_broken_version, warm_users
from support import cwd

pytestmark = pytest.mark.slow

ALL_STAGES = ["retrieval", "rank", "rerank"]
CLICKS_ONLY = "click:1,like:0,diversity:0,cold_start:0"
VARIETY = "click:0,like:0,diversity:1,cold_start:1"


@pytest.fixture(scope="module")
def version_a(served_project: dict):
    from sass_retrieval.serve.loader import load_version

    return load_version(served_project["a"], served_project["features"], served_project["store"])


def upstream_of(version):
    """What the version serves before the re-ranker, built as evaluation builds it: its own indexes, and a
    fresh load of its pre-ranker (the cascade) when it holds one."""
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.rank.cascade import CascadeRecommender
    from sass_retrieval.rank.stage import load_reranker
    from sass_retrieval.serve.loader import rank_folder

    base = EmbeddingRecommender(dict(version.models), version.bank, indexes=dict(version.indexes))
    if version.reranker is None:
        return base
    return CascadeRecommender(base, load_reranker(rank_folder(version.path, version.row), version.row),
                              version.rank_top_k)


def reranked_of(version, weights: str | None = None):
    """RerankRecommender over the version's upstream with a fresh load of its re-ranker at ``weights``."""
    from sass_retrieval.rerank.goals import parse_weights
    from sass_retrieval.rerank.stage import RerankRecommender, load_list_reranker

    lr = load_list_reranker(version.path / "rerank", version.row)
    return RerankRecommender(upstream_of(version), lr, lr.weights(parse_weights(weights))), lr


# ------------------------------------------------------------------------------------------------ publish


def test_the_published_version_holds_the_winners_re_ranker(served_project: dict) -> None:
    a, row, other = served_project["a"], served_project["row_a"], served_project["row_b"]
    rerank = served_project["root"] / "models" / "rerank"
    for name in ("generator.pt", "generator.json"):
        assert (a / "rerank" / row / name).read_bytes() == (rerank / row / name).read_bytes()
    assert sorted(p.relative_to(rerank / row) for p in (rerank / row).rglob("*")) == \
        sorted(p.relative_to(a / "rerank" / row) for p in (a / "rerank" / row).rglob("*"))
    assert sorted(p.name for p in (a / "rerank" / "stats").iterdir()) == \
        sorted(p.name for p in (rerank / "stats").iterdir())
    assert not (a / "rerank" / other).exists()   # only the served row's re-ranker
    meta = json.loads((rerank / row / "generator.json").read_text())
    served = json.loads((a / "served.json").read_text())
    assert served["rerank"] == {"candidates": meta["candidates"], "length": meta["config"]["length"]}
    last = json.loads((served_project["published"] / "decisions.jsonl").read_text().splitlines()[-1])
    assert last["version"] == a.name and last["stages"] == ALL_STAGES


def test_rerank_sources_need_the_statistics_and_skip_a_stage_that_was_off(tmp_path: Path) -> None:
    from sass_retrieval.errors import MissingPrerequisiteError
    from sass_retrieval.publish import rerank_shape
    from sass_retrieval.publish_run import rerank_sources

    rerank = tmp_path / "models" / "rerank"
    (rerank / "sass").mkdir(parents=True)
    with pytest.raises(MissingPrerequisiteError, match="stats: missing"):
        rerank_sources("sass", rerank)
    (rerank / "stats").mkdir()
    assert rerank_sources("sass", rerank) == {"rerank/sass": rerank / "sass", "rerank/stats": rerank / "stats"}
    assert rerank_sources("dssm_mixed", rerank) == {}
    off = tmp_path / "off"
    off.mkdir()
    (off / "off.json").write_text('{"rerank": "disabled by params rerank.enabled"}\n')
    assert rerank_sources("sass", off) == {}
    (rerank / "sass" / "generator.json").write_text('{"candidates": 50, "config": {"length": 10}}')
    assert rerank_shape(rerank / "sass") == {"candidates": 50, "length": 10}
    (rerank / "sass" / "generator.json").write_text('{"config": {}}')
    from sass_retrieval.errors import BadInputError

    with pytest.raises(BadInputError, match="generator.json: needs candidates"):
        rerank_shape(rerank / "sass")


# ------------------------------------------------------------------------------------------------ serving


@pytest.mark.parametrize("k", [5, 10, 25])
def test_served_lists_are_the_rerank_recommenders_over_the_served_upstream(version_a, served_project: dict,
                                                                           k: int) -> None:
    from sass_retrieval.serve.query import recommend

    assert version_a.stages == ALL_STAGES and version_a.list_reranker is not None
    rec_model, lr = reranked_of(version_a)
    upstream = upstream_of(version_a)
    changed = 0
    for s in version_a.scenarios:
        users = warm_users(served_project, s, 6)
        for user in users:
            rec = recommend(version_a, user, s, k)
            assert rec.fallback is None and rec.stages == tuple(ALL_STAGES)
            expected = [int(i) for i in rec_model.top_items(s, np.array([user]), k)[0] if i >= 0]
            assert rec.items == expected, (s, user)
            assert len(set(rec.items)) == len(rec.items)
            # the list first, then the other candidates in the upstream order (merge_head)
            scores, ids = upstream.top_scored(s, np.array([user]), max(lr.candidates, k))
            head, _ = lr.rerank(s, np.array([user]), ids[:, : lr.candidates], scores[:, : lr.candidates],
                                lr.weights())
            listed = [int(i) for i in head[0] if i >= 0]
            rest = [int(i) for i in ids[0] if i >= 0 and int(i) not in listed]
            assert rec.items == (listed + rest)[:k]
            by_id = dict(zip(ids[0].tolist(), scores[0].tolist(), strict=True))
            assert rec.scores == [round(by_id[i], 6) for i in rec.items]   # each with its upstream score
            assert rec.goal_weights == lr.defaults and set(rec.utilities) >= set(lr.defaults)
            changed += rec.items != [int(i) for i in ids[0][:k] if i >= 0]
    assert changed > 0, "the re-ranker never changed the upstream order: it is not applied"


def test_goal_weights_are_used_and_change_the_lists(version_a, served_project: dict) -> None:
    from sass_retrieval.rerank.goals import parse_weights
    from sass_retrieval.serve.query import recommend

    lr = version_a.list_reranker
    rec_b, _ = reranked_of(version_a, VARIETY)
    differ = 0
    for s in version_a.scenarios:
        for user in warm_users(served_project, s, 8):
            a = recommend(version_a, user, s, lr.length, CLICKS_ONLY)
            b = recommend(version_a, user, s, lr.length, VARIETY)
            assert a.goal_weights == parse_weights(CLICKS_ONLY) and b.goal_weights == parse_weights(VARIETY)
            assert b.items == [int(i) for i in rec_b.top_items(s, np.array([user]), lr.length)[0] if i >= 0]
            differ += a.items != b.items
    assert differ > 0, "no user's list changed with the goal weights"
    partial = recommend(version_a, warm_users(served_project, "s0", 1)[0], "s0", 5, "diversity:0.7")
    assert partial.goal_weights == {**lr.defaults, "diversity": 0.7}   # goals not named keep their defaults


BAD_WEIGHTS = {"clik:1": "unknown goal(s) clik", "diversity:1.5": "weight of diversity is 1.5: must be in [0, 1]",
               "click": "'click' is not goal:weight", "click:x": "'click:x' is not goal:weight",
               "long_view:1": "unknown goal(s) long_view"}


def test_the_service_takes_goal_weights_and_refuses_bad_ones_in_one_line(served_project: dict) -> None:
    from fastapi.testclient import TestClient

    from sass_retrieval.serve.app import create_app
    from sass_retrieval.serve.settings import ServeSettings

    user = warm_users(served_project, "s1", 1)[0]
    app = create_app(ServeSettings(published=served_project["published"], features=served_project["features"],
                                   store=served_project["store"], reload_interval=0))
    with TestClient(app) as c:
        lr = c.app.state.service.current.list_reranker
        r = c.get("/recommend", params={"user": user, "scenario": "s1", "k": 5, "weights": "click:1,diversity:0.3"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["stages"] == ALL_STAGES and body["weights"] == "click:1,diversity:0.3"
        assert body["goal_weights"] == {**lr.defaults, "click": 1.0, "diversity": 0.3}
        assert len(body["items"]) == 5 and set(body["utilities"]) >= set(lr.defaults)
        plain = c.get("/recommend", params={"user": user, "scenario": "s1", "k": 5}).json()
        assert plain["goal_weights"] == lr.defaults
        for text, words in BAD_WEIGHTS.items():
            r = c.get("/recommend", params={"user": user, "scenario": "s1", "k": 5, "weights": text})
            assert r.status_code == 400, (text, r.text)
            reason = r.json()["reason"]
            assert words in reason and "\n" not in reason, (text, reason)
        v = c.get("/version").json()
        meta = json.loads((served_project["a"] / "rerank" / served_project["row_a"] / "generator.json").read_text())
        assert v["stages"] == ALL_STAGES
        assert v["rerank"] == {"goals": ["click", "like", "diversity", "cold_start"], "defaults": meta["defaults"],
                               "candidates": meta["candidates"], "length": meta["config"]["length"]}


def test_recommend_cli_takes_goal_weights_from_a_workspace(served_project: dict, capsys) -> None:
    from pipelines import recommend

    user = warm_users(served_project, "s0", 1)[0]
    with cwd(served_project["root"]):
        assert recommend.main(["--user", str(user), "--scenario", "s0", "--k", "5", "--from", ".",
                               "--weights", "click:1,diversity:0.3"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["stages"][-1] == "rerank" and out["weights"] == "click:1,diversity:0.3"
        assert out["goal_weights"]["click"] == 1.0 and out["goal_weights"]["diversity"] == 0.3
        assert len(out["items"]) == 5
        assert recommend.main(["--user", str(user), "--scenario", "s0", "--from", ".", "--weights", "clik:1"]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("recommend: --weights:") and "unknown goal(s) clik" in last


def test_without_a_re_ranker_the_upstream_order_is_served(served_project: dict, tmp_path: Path) -> None:
    from sass_retrieval.serve.loader import load_version
    from sass_retrieval.serve.query import WeightsNotSupported, recommend

    root, row = served_project["root"], served_project["row_b"]
    off = tmp_path / "ws"   # a workspace whose rerank stage wrote off.json (rerank.enabled false)
    for part in (f"models/{row}", f"indexes/{row}", "models/rank", "metrics"):
        shutil.copytree(root / part, off / part)
    (off / "models" / "rerank").mkdir()
    (off / "models" / "rerank" / "off.json").write_text('{"rerank": "disabled by params rerank.enabled"}\n')
    v = load_version(off, served_project["features"], served_project["store"], row=row, scenarios=["s2"])
    assert v.list_reranker is None and "rerank" not in v.stages and v.describe()["rerank"] is None
    upstream = upstream_of(v)
    for user in warm_users(served_project, "s2", 4):
        rec = recommend(v, user, "s2", 10)
        assert rec.stages == tuple(v.stages) and rec.goal_weights is None and rec.utilities is None
        assert rec.items == [int(i) for i in upstream.top_items("s2", np.array([user]), 10)[0] if i >= 0]
    with pytest.raises(WeightsNotSupported, match="apply to a version with the list re-ranker"):
        recommend(v, warm_users(served_project, "s2", 1)[0], "s2", 10, "click:1")
    b = load_version(served_project["b"], served_project["features"], served_project["store"])
    assert b.list_reranker is None and b.stages == ["retrieval"]


def _corrupt_generator(v: Path, row: str) -> None:
    (v / "rerank" / row / "generator.pt").write_bytes(b"not a state dict")


BREAKAGES = {
    "corrupt generator": (_corrupt_generator, "could not be loaded"),
    "missing generator config": (lambda v, row: (v / "rerank" / row / "generator.json").unlink(), "generator.json"),
    "missing evaluator": (lambda v, row: shutil.rmtree(v / "rerank" / row / "evaluator"), "evaluator.json"),
    "missing statistics": (lambda v, row: shutil.rmtree(v / "rerank" / "stats"), "stats"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_re_ranker_is_refused_at_load_with_one_line(breakage: str, served_project: dict,
                                                             tmp_path: Path) -> None:
    breaking, words = BREAKAGES[breakage]
    assert_refused_in_one_line(served_project, tmp_path, breaking, "list re-ranker could not be loaded", words)


def test_the_old_version_stays_in_service_when_the_new_re_ranker_is_broken(served_project: dict,
                                                                           published_copy: Path) -> None:
    from sass_retrieval.serve.query import recommend

    service = reload_a_broken_version(served_project, published_copy, _corrupt_generator)
    assert service.current.list_reranker is not None and "re-ranker" in service.error
    user = warm_users(served_project, "s0", 1)[0]
    assert recommend(service.current, user, "s0", 5, "diversity:1").stages == tuple(ALL_STAGES)
    service.stop()
