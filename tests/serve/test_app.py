"""The HTTP endpoints over a real published version: real FastAPI, real torch model, real FAISS indexes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from support import cwd, warm_user

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_project: dict):
    from sass_retrieval.serve.app import create_app
    from sass_retrieval.serve.settings import ServeSettings

    app = create_app(ServeSettings(published=served_project["published"], features=served_project["features"],
                                   store=served_project["store"], reload_interval=0))
    with TestClient(app) as c:
        yield c


def test_a_known_user_gets_k_ids_from_the_scenario_index_in_the_pre_rankers_order(client, served_project: dict
                                                                                    ) -> None:
    user = warm_user(served_project)
    r = client.get("/recommend", params={"user": user, "scenario": "s0", "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is None and body["reason"] is None
    assert body["version"] == served_project["a"].name and body["row"] == served_project["row_a"]
    # version A holds its row's pre-ranker and list re-ranker (test_rank_serving, test_rerank_serving)
    assert body["stages"] == ["retrieval", "rank", "rerank"]
    assert len(body["items"]) == len(body["scores"]) == len(set(body["items"])) == 7
    assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in body["scores"])       # cosines: the retrieval scores
    index = client.app.state.service.current.indexes["s0"]
    assert set(body["items"]) <= set(faiss.vector_to_array(index.id_map).tolist())
    assert body["took_ms"] > 0


def test_the_cli_and_the_service_give_the_same_answer(client, served_project: dict, capsys) -> None:
    from pipelines import recommend

    user = warm_user(served_project, "s1")
    http = client.get("/recommend", params={"user": user, "scenario": "s1", "k": 5}).json()
    with cwd(served_project["root"]):
        assert recommend.main(["--user", str(user), "--scenario", "s1", "--k", "5"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert [i["video_id"] for i in cli["items"]] == http["items"]
    assert cli["version"] == http["version"] and cli["fallback"] is None and cli["stages"] == http["stages"]


def cold_known_user(project: dict) -> tuple[int, str]:
    """A user of the store's static table with no behaviour in some scenario."""
    from sass_retrieval.data.store import read_users

    known = set(read_users(project["store"])["user_id"].tolist())
    for s in ("s2", "s1", "s0"):
        warm = set(pd.read_parquet(project["features"] / s / "users.parquet")["user_id"].tolist())
        cold = sorted(known - warm)
        if cold:
            return int(cold[0]), s
    pytest.skip("every known user has behaviour in every scenario of the tiny project")


def popular_reference(project: dict, scenario: str, k: int) -> list[int]:
    """The evaluation's popular row on the same training window."""
    from sass_retrieval.evaluate.popular import PopularRecommender
    from sass_retrieval.run import load_run, read_mapped

    with cwd(project["root"]):
        run = load_run("params.yaml")
        train = read_mapped(run, run.window.train_start, run.window.train_end)
    return [int(v) for v in PopularRecommender(train).top_items(scenario, np.zeros(1), k)[0] if v >= 0]


def test_a_cold_user_gets_the_scenarios_popular_list(client, served_project: dict) -> None:
    user, scenario = cold_known_user(served_project)
    body = client.get("/recommend", params={"user": user, "scenario": scenario, "k": 10}).json()
    assert body["fallback"] == "popular" and body["reason"] == "cold_user" and body["stages"] == ["popular"]
    assert body["items"] == popular_reference(served_project, scenario, 10)
    assert body["scores"] == sorted(body["scores"], reverse=True)


def test_an_unknown_id_gets_the_popular_list_too(client, served_project: dict) -> None:
    body = client.get("/recommend", params={"user": 10**12, "scenario": "s0", "k": 3}).json()
    assert body["fallback"] == "popular" and body["reason"] == "unknown_user"
    assert body["items"] == popular_reference(served_project, "s0", 3)


def test_the_cli_falls_back_instead_of_refusing_a_cold_user(served_project: dict, capsys) -> None:
    from pipelines import recommend

    with cwd(served_project["root"]):
        assert recommend.main(["--user", str(10**12), "--scenario", "s0", "--k", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fallback"] == "popular" and len(out["items"]) == 4


@pytest.mark.parametrize("params, status, words", [
    ({"user": 1, "scenario": "nope"}, 404, "has no index"),
    ({"user": 1, "scenario": "s0", "k": 0}, 400, "1..1000"),
    ({"user": 1, "scenario": "s0", "k": 1001}, 400, "1..1000"),
    ({"user": 1, "scenario": "s0", "k": "ten"}, 400, "integer"),
    ({"scenario": "s0"}, 400, "'user'"),
    ({"user": "", "scenario": "s0"}, 400, "'user'"),
    ({"user": "4x2", "scenario": "s0"}, 400, "integer"),
    ({"user": 1}, 400, "'scenario'"),
])
def test_bad_requests_are_4xx_with_a_reason(client, params: dict, status: int, words: str) -> None:
    r = client.get("/recommend", params=params)
    assert r.status_code == status
    assert words in r.json()["reason"]


def test_healthz_and_version(client, served_project: dict) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["version"] == served_project["a"].name
    v = client.get("/version").json()
    assert v["version"] == served_project["a"].name and v["row"] == served_project["row_a"]
    assert Path(v["path"]) == served_project["a"]
    recorded = json.loads((served_project["a"] / "metrics.json").read_text())["rows"][served_project["row_a"]]
    assert v["metrics"]["macro"] == recorded["macro"]
    assert set(v["scenarios"]) == {"s0", "s1", "s2"} and v["indexes"]["s0"].startswith("flat")
    ranker = json.loads((served_project["a"] / "rank" / served_project["row_a"] / "ranker.json").read_text())
    assert v["stages"] == ["retrieval", "rank", "rerank"] and v["rank"]["features"] == ranker["names"]


def test_nothing_published_is_503_until_a_version_appears(make_settings, served_project: dict,
                                                           tmp_path: Path) -> None:
    from sass_retrieval.serve.app import create_app

    empty = tmp_path / "published"
    empty.mkdir()
    with TestClient(create_app(make_settings(empty))) as c:
        h = c.get("/healthz")
        assert h.status_code == 503 and "nothing published" in h.json()["reason"]
        assert c.get("/recommend", params={"user": 1, "scenario": "s0"}).status_code == 503
        assert c.get("/version").status_code == 503
        os.symlink(served_project["a"], empty / "current")
        assert c.app.state.service.reload() is True
        assert c.get("/healthz").status_code == 200


def test_a_scenario_skipped_on_the_versions_day_is_served_by_its_route(served_project: dict, make_settings,
                                                                        tmp_path: Path) -> None:
    import shutil

    from sass_retrieval.data.features import SkippedScenario
    from sass_retrieval.index.routing import mark_skipped
    from sass_retrieval.publish import point_current

    published = tmp_path / "published"
    version = published / "versions" / "skipped-day"
    shutil.copytree(served_project["a"], version)
    mark_skipped(version / "indexes" / "s2", SkippedScenario(scenario="s2", reason="too few training rows",
                                                             rows=12, min_scenario_rows=100, served_by="s0"))
    point_current(published, version)
    from sass_retrieval.serve.app import create_app

    user = warm_user(served_project, "s0")
    with TestClient(create_app(make_settings(published))) as c:
        routed = c.get("/recommend", params={"user": user, "scenario": "s2", "k": 5}).json()
        own = c.get("/recommend", params={"user": user, "scenario": "s0", "k": 5}).json()
        assert routed["served_by"] == "s0" and own["served_by"] == "s0"
        assert routed["items"] == own["items"] and routed["fallback"] is None
        v = c.get("/version").json()
        assert v["routes"] == {"s2": "s0"} and "s2" in v["scenarios"] and "s2" not in v["indexes"]
