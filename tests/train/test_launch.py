"""train.launch: the torchrun command built from params, the rendezvous id, each process's threads, the project
rank order; and a training stage that re-launches itself as two processes and trains the tiny project."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from support import cwd, write_project

from sass_retrieval.train.distributed import project_order
from sass_retrieval.train.launch import (
    dag_rendezvous_id,
    rendezvous_id,
    threads_per_process,
    torchrun_argv,
    under_torchrun,
)

ROOT = Path(__file__).resolve().parents[2]


def test_one_node_is_a_standalone_torchrun_of_the_module_and_its_arguments() -> None:
    cmd = torchrun_argv("pipelines.train", ["--row", "sass", "--no-progress"], nodes=1, procs_per_node=2,
                        rendezvous="10.0.0.5:29400", rdzv_id="ignored", python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2", "--standalone",
                   "--module", "pipelines.train", "--row", "sass", "--no-progress"]


def test_several_nodes_meet_at_the_c10d_rendezvous_without_a_node_rank() -> None:
    cmd = torchrun_argv("pipelines.pretrain", ["--no-progress"], nodes=3, procs_per_node=1,
                        rendezvous="10.0.0.5:29400", rdzv_id="run_1-pretrain", python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nnodes=3", "--nproc-per-node=1",
                   "--rdzv-backend=c10d", "--rdzv-endpoint=10.0.0.5:29400", "--rdzv-id=run_1-pretrain",
                   "--module", "pipelines.pretrain", "--no-progress"]
    assert not any(a.startswith("--node-rank") or a == "--standalone" for a in cmd)
    with pytest.raises(ValueError, match="train.nodes"):
        torchrun_argv("m", [], nodes=0, procs_per_node=1, rendezvous="h:1", rdzv_id="x")


def test_each_process_gets_its_share_of_the_node_threads_and_at_least_one() -> None:
    assert threads_per_process(8, 2) == 4
    assert threads_per_process(5, 2) == 2
    assert threads_per_process(1, 4) == 1
    assert threads_per_process(3, 1) == 3


def test_rendezvous_id_from_the_env_else_the_params_file_and_the_stage(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("train:\n  nodes: 2\n")
    b.write_text("train:\n  nodes: 3\n")
    assert rendezvous_id("pretrain", a, {"SASS_RDZV_ID": "run-7-pretrain"}) == "run-7-pretrain"
    first = rendezvous_id("pretrain", a, {})
    assert first == rendezvous_id("pretrain", a, {"SASS_RDZV_ID": ""})   # the same on every node
    assert first.endswith("-pretrain")
    assert first != rendezvous_id("train-sass", a, {}) and first != rendezvous_id("pretrain", b, {})
    assert dag_rendezvous_id("scheduled__2022-05-01T02:00:00+00:00", "finetune") == \
        "scheduled__2022-05-01T02_00_00_00_00-finetune"


def test_torchrun_processes_are_recognised() -> None:
    assert under_torchrun({"WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert not under_torchrun({"PATH": "/bin"})


def test_the_keeping_node_ranks_first_then_the_joining_ones_in_global_order() -> None:
    assert project_order([True, False, False, True]) == (1, 2, 0, 3)
    assert project_order([False, False]) == (0, 1)


def test_train_relaunches_itself_as_two_processes_and_trains(tiny_project: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.procs_per_node: 2``: ``pipelines.train`` started on its own runs itself under torchrun; each rank
    takes every other batch, so an epoch capped at 4 batches is 2 optimiser steps, where one process takes 4."""
    from pipelines import train

    root = write_project(tmp_path / "p", train__procs_per_node=2, finetune__epochs=1,
                         finetune__max_steps_per_epoch=4, finetune__early_stopping=False, finetune__refit=False)
    (root / "data").mkdir()
    shutil.copytree(tiny_project["store"], root / "data" / "store")
    shutil.copytree(tiny_project["features"], root / "data" / "features")
    # what a stage's environment gives (orchestration.stages.stage_env): the project's pipelines importable
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with cwd(root):
        assert train.main(["--row", "dssm_mixed", "--no-progress"]) == 0
    assert (root / "models/dssm_mixed/model.pt").is_file()
    report = json.loads((root / "models/dssm_mixed/report.json").read_text())
    assert report["report"]["steps"] == 2, report


def test_a_failing_rank_exit_code_reaches_the_caller(tiny_project: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing input is exit code 4 in the ranks (not retried by the DAG); torchrun itself exits 1, the stage
    must still exit 4."""
    from pipelines import train

    root = write_project(tmp_path / "p", train__procs_per_node=2)
    (root / "data").mkdir()
    shutil.copytree(tiny_project["store"], root / "data" / "store")   # no features: the ranks fail
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for var in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with cwd(root):
        code = train.main(["--row", "dssm_mixed", "--no-progress"])
    assert code == 4, code
