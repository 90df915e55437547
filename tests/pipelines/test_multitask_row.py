"""The multi-task row (sass_mt) through the stage entry points: trained, scored on every objective's ground truth,
shown in the run report, and served through the recommend CLI with weights (tiny synthetic project)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import cwd, warm_user

from pipelines import evaluate, index, report, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mt_project(built_project: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sass_mt") / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["evaluate"].update(benchmark_rows=["sass_mt"], objective_min_pairs=5)
        params["finetune"]["early_stopping"] = False
        Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert train.main(["--row", "sass_mt", "--no-progress"]) == 0
        for s in ("s0", "s1", "s2"):       # one index per scenario, whatever the weights
            assert index.main(["--scenario", s, "--row", "sass_mt"]) == 0
        assert evaluate.main([]) == 0
        assert report.main([]) == 0
    return root


def test_sass_mt_is_scored_on_every_objective_and_reported(mt_project: Path) -> None:
    from sass_retrieval.models.checkpoint import load_model

    model, manifest = load_model(mt_project / "models/sass_mt/model.pt")
    assert manifest["meta"]["multitask"]["objectives"] == ["click", "long_view", "like"]
    metrics = json.loads((mt_project / "metrics/metrics.json").read_text())
    assert "sass_mt" in metrics["rows"]                         # the click table, like every row
    lv = metrics["objectives"]["long_view"]
    assert lv["scenarios"] and all(n >= 5 for n in lv["pairs"].values())
    assert {"popular", "sass", "dssm_mixed", "sass_mt", "sass_mt (long_view only)"} <= set(lv["rows"])
    assert set(lv["rows"]["sass_mt"]["per_scenario"]) == set(lv["scenarios"])
    assert "click" not in metrics["objectives"] and set(metrics["objectives"]) == {"long_view", "like"}
    md = (mt_project / "reports" / "run" / "report.md").read_text()
    assert "Ground truth: long_view" in md and "sass_mt (long_view only)" in md


def test_recommend_cli_takes_weights_for_the_multitask_row(mt_project: Path, capsys) -> None:
    from pipelines import recommend

    user = warm_user({"features": mt_project / "data/features"})
    with cwd(mt_project):
        lists = {}
        for w in ("click=1", "long_view=1"):
            assert recommend.main(["--user", str(user), "--scenario", "s0", "--k", "10", "--row", "sass_mt",
                                   "--from", ".", "--weights", w]) == 0
            out = json.loads(capsys.readouterr().out)
            assert out["weights"] == w and out["row"] == "sass_mt" and out["fallback"] is None
            lists[w] = [(i["video_id"], i["score"]) for i in out["items"]]
        assert lists["click=1"] != lists["long_view=1"]       # another query vector over the same index
        assert recommend.main(["--user", str(user), "--scenario", "s0", "--row", "sass_mt", "--from", ".",
                               "--weights", "watch=1"]) == 2
        assert "unknown objective 'watch'" in capsys.readouterr().err
