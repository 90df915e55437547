"""bench/stage_timer.py: benchmarks time the commands dvc.yaml declares, resolved for their own params."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from support import load_bench

from sass_retrieval.orchestration.dvc_graph import load_graph

ROOT = Path(__file__).resolve().parents[2]


def _stage_timer():
    return load_bench("stage_timer")


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scenarios"]["names"] = ["1", "0", "other"]   # a benchmark's own scenarios, not the default's
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_plan_is_every_dvc_stage_in_dependency_order(work: Path) -> None:
    graph = load_graph(ROOT)
    plan = _stage_timer().dvc_plan(work)
    names = [name for name, _ in plan]
    assert [n for n in names if n.startswith("split@")] == ["split@1", "split@0", "split@other"]
    assert {n.split("@")[0] for n in names} == set(graph.groups())
    for a, b in graph.edges:           # the default graph's order holds in the benchmark's plan
        if a in names and b in names:
            assert names.index(a) < names.index(b), (a, b)
    assert dict(plan)["split@0"] == ["-m", "pipelines.split", "--scenario", "0"]
    assert dict(plan)["finetune"] == shlex.split(graph.stages["finetune"].cmd)[1:]


def test_plan_keeps_only_the_asked_groups_and_refuses_unknown_ones(work: Path) -> None:
    st = _stage_timer()
    assert [n for n, _ in st.dvc_plan(work, {"pretrain", "finetune"})] == ["pretrain", "finetune"]
    with pytest.raises(ValueError, match="no stage"):
        st.dvc_plan(work, {"pretrain", "tune"})
