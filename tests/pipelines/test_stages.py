"""The stage entry points end to end on a tiny project, in-process (dvc repro and Airflow run the same ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import cwd, write_project

from pipelines import ingest, publish

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(built_project: Path, tmp_path_factory) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("stages") / "p"
    shutil.copytree(built_project, root, symlinks=True)
    return root


def test_pipeline_writes_every_artefact(project: Path) -> None:
    for rel in ("data/store/ingest.json", "reports/validation/summary.json", "reports/validation/data_docs/index.html",
                "data/features/s0/positives.parquet", "data/features/pairs/users.parquet",
                "data/shards/meta.json", "data/shards/positives-0000.parquet",
                "models/pretrain/model.pt", "models/sass/model.pt",
                "models/dssm_mixed/model.pt", "indexes/sass/s1/index.faiss", "indexes/dssm_mixed/s1/index.faiss",
                "metrics/metrics.json", "metrics/per_pair.npz", "plots/per_scenario.json",
                # DVCLive's curves (dvc plots show and the run report): per epoch and per step
                "models/pretrain/dvclive/plots/metrics/loss.tsv", "models/sass/dvclive/metrics.json",
                "models/sass/dvclive/plots/metrics/loss-select.tsv",
                "models/pretrain/dvclive/plots/metrics/per_step/loss.tsv"):
        assert (project / rel).exists(), rel
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    assert set(metrics["rows"]) == {"popular", "dssm_mixed", "sass"}
    assert 0.0 <= metrics["sass"]["macro"]["ndcg@50"] <= 1.0


def test_publish_gate_publishes_then_refuses_a_worse_run(project: Path) -> None:
    with cwd(project):
        assert publish.main([]) == 0
        first = json.loads(Path("reports/publish.json").read_text())
        assert first["publish"] is True
        current = Path("published/current").resolve()
        # a much worse candidate: the gate must refuse and leave "current" untouched
        assert first["winner"] == first["best"] in ("sass", "dssm_mixed")   # day one: the better of the two
        assert set(first["scores"]) == {"sass", "dssm_mixed", "published"}
        assert set(first["margins"]) == {"sass-dssm_mixed"}                 # paired CI of candidate - challenger
        assert {"diff", "lo", "hi", "significant"} <= set(first["margins"]["sass-dssm_mixed"])
        served = json.loads(Path("published/current/served.json").read_text())["row"]
        assert served == first["winner"] and Path(f"published/current/models/{served}/model.pt").exists()
        assert Path("published/current/indexes/s0/index.faiss").exists()
        # much worse candidate and challenger: the gate must refuse and leave "current" untouched
        m = json.loads(Path("metrics/metrics.json").read_text())
        for row in ("sass", "dssm_mixed"):
            m["rows"][row]["macro"]["ndcg@50"] = first["scores"][first["winner"]] - 0.5
        Path("metrics/metrics.json").write_text(json.dumps(m))
        assert publish.main([]) == 0
        second = json.loads(Path("reports/publish.json").read_text())
        assert second["publish"] is False and "below the published" in second["reason"]
        assert second["winner"] is None and second["served"] == first["winner"]
        assert Path("published/current").resolve() == current
        decisions = Path("published/decisions.jsonl").read_text().splitlines()
        assert [json.loads(x)["publish"] for x in decisions[-2:]] == [True, False]


def test_recommend_returns_k_items_from_the_published_index(project: Path, capsys) -> None:
    from pipelines import recommend

    with cwd(project):
        users = json.loads(Path("metrics/metrics.json").read_text())
        assert users
        import pandas as pd

        uid = int(pd.read_parquet("data/features/s0/users.parquet")["user_id"].iloc[0])
        assert recommend.main(["--user", str(uid), "--scenario", "s0", "--k", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 5 and out["items"][0]["rank"] == 1


def test_paths_in_params_can_not_escape_the_project(tmp_path: Path) -> None:
    from sass_retrieval.config import ConfigError

    root = write_project(tmp_path / "p", data__store_dir="../../outside")
    with cwd(root), pytest.raises(ConfigError, match="escapes the project"):
        ingest.main([])


def test_the_published_model_is_rescored_on_this_runs_window(project: Path) -> None:
    """The gate compares like with like: the model in service, scored on today's evaluation pairs."""
    from pipelines import evaluate

    with cwd(project):
        if not Path("published/current").exists():
            assert publish.main([]) == 0
        assert evaluate.main([]) == 0
        m = json.loads(Path("metrics/metrics.json").read_text())
    assert "published" in m["rows"]
    # the published model is this workspace's model here, so both rows score the same
    served = json.loads((project / "published/current/served.json").read_text())["row"]
    assert abs(m["rows"]["published"]["macro"]["ndcg@50"] - m["rows"][served]["macro"]["ndcg@50"]) < 1e-6
    # champion/challenger on the same pairs: a tie with the model in service is inside the CI -> it stays
    current = (project / "published/current").resolve()
    with cwd(project):
        assert publish.main([]) == 0
    decision = json.loads((project / "reports/publish.json").read_text())
    lead = decision["margins"][f"{decision['best']}-published"]
    if decision["best"] == served:
        assert abs(lead["diff"]) < 1e-6 and lead["lo"] <= 0 <= lead["hi"]
        assert decision["publish"] is False and "within the noise" in decision["reason"]
        assert (project / "published/current").resolve() == current
    else:
        assert decision["publish"] is (lead["lo"] > 0)


def test_an_incremental_day_warm_starts_and_trains_on_the_newest_day(built_project: Path, tmp_path: Path) -> None:
    import shutil

    import yaml

    from pipelines import pretrain, train

    root = tmp_path / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        full = {n: json.loads(Path(f"models/{n}/report.json").read_text()) for n in ("pretrain", "sass")}
        assert publish.main([]) == 0
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["train"].update({"mode": "incremental", "incremental_epochs": 1, "incremental_days": 1})
        params["finetune"]["early_stopping"] = False
        Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert pretrain.main(["--no-progress"]) == 0
        assert train.main(["--row", "sass", "--no-progress"]) == 0
        incr = {n: json.loads(Path(f"models/{n}/report.json").read_text()) for n in ("pretrain", "sass")}
        meta = json.loads(Path("models/pretrain/model.pt.json").read_text())
    assert meta["meta"]["warm_start"].endswith("published/current/models/pretrain/model.pt")
    full_steps = sum(r["steps"] for r in full["sass"]["report"].values() if isinstance(r, dict) and "steps" in r)
    assert 0 < incr["sass"]["report"]["refit"]["steps"] < full_steps
    full_epochs = len(full["pretrain"]["epoch_loss"])
    assert 0 < incr["pretrain"]["steps"] < full["pretrain"]["steps"] / full_epochs


def test_a_scenario_with_its_own_epoch_is_saved_indexed_and_scored_from_its_own_checkpoint(built_project: Path,
                                                                                           tmp_path: Path) -> None:
    """With every scenario allowed its own epoch, each one whose pick differs from the macro pick gets
    ``model_<s>.pt`` beside the shared ``model.pt``; the index and evaluate stages read it; a later run that
    keeps no per-scenario epoch leaves no stale ``model_<s>.pt`` behind."""
    import shutil

    import yaml

    from pipelines import evaluate, index, train
    from sass_retrieval.models.checkpoint import read_manifest, row_checkpoint

    root = tmp_path / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["finetune"].update({"own_epoch_min_clicks": 1, "early_stopping": True, "epochs": 4, "patience": 2,
                                   "min_epochs": 1})
        Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert train.main(["--row", "sass", "--no-progress"]) == 0
        report = json.loads(Path("models/sass/report.json").read_text())["report"]
        own = report["own_epoch"]
        assert own, "every reported scenario had held-out clicks"
        for s, pick in own.items():
            separate = pick["best_epoch"] != report["best_epoch"]
            assert Path(f"models/sass/model_{s}.pt").exists() == separate, (s, pick, report["best_epoch"])
            expected = f"model_{s}.pt" if separate else "model.pt"
            assert row_checkpoint(Path("models"), "sass", s).name == expected
            if separate:
                assert read_manifest(Path(f"models/sass/model_{s}.pt"))["meta"]["scenario"] == s
        for s in ("s0", "s1", "s2"):
            assert index.main(["--scenario", s]) == 0
        assert evaluate.main([]) == 0
        params["finetune"]["own_epoch_min_clicks"] = 0
        Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert train.main(["--row", "sass", "--no-progress"]) == 0
        assert sorted(p.name for p in Path("models/sass").glob("model*.pt")) == ["model.pt"]
