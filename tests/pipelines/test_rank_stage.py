"""The rank stage end to end on the tiny project: each publishable row's pre-ranker, evaluation of the served cascade
beside its retrieval order, the report's section, and the stage switched off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import cwd

from pipelines import evaluate, rank, report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(built_project: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rank") / "p"
    shutil.copytree(built_project, root, symlinks=True)
    return root


def test_every_publishable_row_gets_a_pre_ranker_and_is_scored_as_served(project: Path) -> None:
    for rel in ("models/rank/stats/rank_stats.json", "models/rank/sass/ranker.pt", "models/rank/sass/ranker.json",
                "models/rank/dssm_mixed/ranker.pt", "models/rank/sass/report.json"):
        assert (project / rel).exists(), rel
    rep = json.loads((project / "models/rank/sass/report.json").read_text())
    assert rep["selection"] and sum(bool(t["chosen"]) for t in rep["selection"]) == 1, "COLD chose one feature set"
    assert rep["names"] == next(t["names"] for t in rep["selection"] if t["chosen"])
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    cascade = metrics["cascade"]
    assert set(cascade) == {"sass", "dssm_mixed"}, "popular has no pre-ranker"
    for row, c in cascade.items():
        assert c["features"] == json.loads((project / f"models/rank/{row}/report.json").read_text())["names"]
        assert {"diff", "lo", "hi", "significant"} <= set(c["delta"]["macro"])
        assert set(c["gauc"]) <= {"s0", "s1", "s2", "other"} and c["gauc"]


def test_the_report_shows_the_cascade(project: Path) -> None:
    with cwd(project):
        assert report.main([]) == 0
    html = (project / "reports/run/index.html").read_text()
    assert "Retrieval + pre-ranker" in html
    assert "sass&#39;s pre-ranker reads" in html or "sass's pre-ranker reads" in html


def test_rank_off_serves_retrieval_order(project: Path, tmp_path: Path) -> None:
    root = tmp_path / "off"
    shutil.copytree(project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rank"]["enabled"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with cwd(root):
        assert rank.main([]) == 0
        assert evaluate.main([]) == 0
    assert sorted(p.name for p in (root / "models/rank").iterdir()) == ["off.json"]
    metrics = json.loads((root / "metrics/metrics.json").read_text())
    on = json.loads((project / "metrics/metrics.json").read_text())
    assert metrics["cascade"] == {}
    assert metrics["rows"]["sass"]["macro"] == pytest.approx(on["cascade"]["sass"]["retrieval"]["macro"])
    assert "sass" in on["cascade"] and isinstance(on["cascade"]["sass"]["served"], bool)


def test_a_pre_ranker_that_does_not_measurably_win_is_not_served_nor_published(project: Path, tmp_path: Path) -> None:
    from pipelines import publish
    from sass_retrieval.evaluate.cascade import serves

    metrics = json.loads((project / "metrics/metrics.json").read_text())
    for row, c in metrics["cascade"].items():
        assert c["served"] == serves(c["delta"]["macro"])
        chosen = metrics["rows"][row]["macro"]["ndcg@50"]
        assert chosen == pytest.approx(c["retrieval"]["macro"]["ndcg@50"] + (c["delta"]["macro"]["diff"]
                                                                               if c["served"] else 0.0), abs=1e-9)
    assert not serves({"diff": 0.01, "lo": -0.001, "hi": 0.02, "significant": False})
    assert not serves({"diff": -0.01, "lo": -0.02, "hi": -0.001, "significant": True})
    assert serves({"diff": 0.01, "lo": 0.001, "hi": 0.02, "significant": True})
    root = tmp_path / "lost"
    shutil.copytree(project, root, symlinks=True)
    m = json.loads((root / "metrics/metrics.json").read_text())
    for c in m["cascade"].values():
        c["served"] = False
    (root / "metrics/metrics.json").write_text(json.dumps(m))
    with cwd(root):
        assert publish.main([]) == 0
    entry = json.loads((root / "reports/publish.json").read_text())
    assert entry["publish"] and "rank" not in entry["stages"]
    assert not (root / "published/current/rank").exists()


def test_a_window_too_short_for_a_pre_ranker_is_served_in_retrieval_order(project: Path, tmp_path: Path) -> None:
    from sass_retrieval.rank.days import off_reason

    assert off_reason(True, 3, "rank.enabled", "x") is None
    assert "disabled by params rank.enabled" in off_reason(False, 8, "rank.enabled", "x")
    root = tmp_path / "short"
    shutil.copytree(project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["window"]["train_days"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with cwd(root):
        assert rank.main([]) == 0
    off = json.loads((root / "models/rank/off.json").read_text())
    assert "2 training day(s)" in off["rank"]
