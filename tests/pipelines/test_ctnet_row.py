"""The ctnet row through the stage entry points: trained, indexed per scenario, scored, published as the
challenger, served per scenario, and continued on an incremental day (tiny synthetic project)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import cwd

from pipelines import evaluate, index, train
from sass_retrieval.models.checkpoint import CheckpointError
from sass_retrieval.models.ctnet import CTNet

pytestmark = pytest.mark.slow


def _set(path: Path, **sections) -> None:
    params = yaml.safe_load(path.read_text())
    for sec, values in sections.items():
        params[sec].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def ctnet_project(built_project: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctnet") / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        _set(Path("params.yaml"), publish={"challenger": "ctnet"}, finetune={"early_stopping": False})
        assert train.main(["--row", "ctnet", "--no-progress"]) == 0
        for s in ("s0", "s1", "s2"):
            assert index.main(["--scenario", s]) == 0
        assert evaluate.main([]) == 0
    return root


def test_ctnet_row_is_trained_indexed_and_scored_per_scenario(ctnet_project: Path) -> None:
    report = json.loads((ctnet_project / "models/ctnet/report.json").read_text())["report"]
    large, targets = report["source_scenario"], report["targets"]
    assert sorted([large, *targets]) == ["s0", "s1", "s2"]
    assert (ctnet_project / "models/ctnet/source.pt").exists()
    assert all((ctnet_project / f"models/ctnet/model_{s}.pt").exists() for s in targets)
    assert all((ctnet_project / f"indexes/ctnet/{s}/index.faiss").exists() for s in ("s0", "s1", "s2"))
    metrics = json.loads((ctnet_project / "metrics/metrics.json").read_text())
    assert "ctnet" in json.dumps(metrics)


def test_published_ctnet_is_served_per_scenario_and_continues_the_next_day(ctnet_project: Path, tmp_path: Path) -> None:
    from sass_retrieval.publish import SERVED_FILE, install_version, point_current
    from sass_retrieval.serve.loader import load_version

    root = tmp_path / "p"
    shutil.copytree(ctnet_project, root, symlinks=True)
    with cwd(root):
        # installed the way the publish stage installs a winning challenger (the gate's choice is tested elsewhere)
        published = Path("published")
        version = install_version(published, "ctnet-day1", {"models/ctnet": Path("models/ctnet"),
                                                            "indexes": Path("indexes/ctnet")},
                                  {SERVED_FILE: json.dumps({"row": "ctnet"}) + "\n"})
        point_current(published, version)
        current = published / "current"
        version = load_version(current.resolve(), Path("data/features"), Path("data/store"))
        report = json.loads(Path("models/ctnet/report.json").read_text())["report"]
        assert version.row == "ctnet"
        assert all(isinstance(version.models[s], CTNet) for s in report["targets"])
        assert not isinstance(version.models[report["source_scenario"]], CTNet)
        # the next day, incremental: the targets continue from the published ones over today's source
        _set(Path("params.yaml"), train={"mode": "incremental", "incremental_epochs": 1, "incremental_days": 1})
        assert train.main(["--row", "ctnet", "--no-progress"]) == 0
        meta = json.loads(Path("models/ctnet/source.pt.json").read_text())["meta"]
        assert meta["warm_start"].endswith("published/current/models/ctnet")
        # a published ctnet folder that lost its source fails the training stage by name; publish stays
        kept = current.resolve()
        (kept / "models/ctnet/source.pt").unlink()
        with pytest.raises(CheckpointError, match="source.pt"):
            train.main(["--row", "ctnet", "--no-progress"])
        assert current.resolve() == kept


def test_a_source_on_every_scenario_publishes_the_largest_tabs_own_epoch(built_project: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """ctnet.source=all: when early stopping keeps an epoch of the largest tab's own (scripted: the macro peaks at
    epoch 1, the largest tab at epoch 3), the stage saves it as model_<largest>.pt, the row serves that tab with
    it and the targets keep reading source.pt. The next (incremental) day continues the targets and does not load
    model_<largest>.pt as one of them."""
    import copy

    import torch

    import sass_retrieval.train.finetune as ft
    from sass_retrieval.models import checkpoint
    from sass_retrieval.models.checkpoint import load_row_model

    snapshots: list[dict] = []

    def scripted(model, bank_, pos, scenarios, k=50, days=None):
        if len(scenarios) == 1:                 # a target's own selection: flat
            return {n: 0.5 for n in scenarios}
        snapshots.append(copy.deepcopy(model.state_dict()))
        e = len(snapshots)
        return {n: (1.0 if e == 3 else 0.5) if n == large[0] else (1.0 if e == 1 else 0.1) for n in scenarios}

    root = tmp_path / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        _set(Path("params.yaml"), ctnet={"source": "all"},
             finetune={"early_stopping": True, "epochs": 5, "patience": 2, "min_epochs": 1, "refit": "none",
                       "prior_grid": [], "own_epoch_min_clicks": 1})
        from sass_retrieval.models.bank import bank_for
        from sass_retrieval.run import load_run
        from sass_retrieval.train.ctnet import largest_scenario

        large = [largest_scenario(bank_for(load_run("params.yaml"), "data/features"))]
        monkeypatch.setattr(ft, "validate_scenarios", scripted)
        assert train.main(["--row", "ctnet", "--no-progress"]) == 0
        folder = Path("models/ctnet")
        assert (folder / f"model_{large[0]}.pt").exists() and (folder / "source.pt").exists()
        served, _ = load_row_model(Path("models"), "ctnet", large[0])
        assert all(torch.equal(v, snapshots[2][k]) for k, v in served.state_dict().items())
        report = json.loads((folder / "report.json").read_text())["report"]
        target, _ = load_row_model(Path("models"), "ctnet", report["targets"][0])
        assert all(torch.equal(v, snapshots[0][k]) for k, v in target.source.state_dict().items())

        from sass_retrieval.publish import install_version, point_current

        published = Path("published")
        point_current(published, install_version(published, "ctnet-all", {"models/ctnet": folder}, {}))
        _set(Path("params.yaml"), train={"mode": "incremental", "incremental_epochs": 1, "incremental_days": 1})
        loaded: list[str] = []
        real_load = checkpoint.load_model
        monkeypatch.setattr(checkpoint, "load_model", lambda path: loaded.append(Path(path).name) or real_load(path))
        assert train.main(["--row", "ctnet", "--no-progress"]) == 0
        assert "source.pt" in loaded and f"model_{large[0]}.pt" not in loaded
