"""dvc_graph: dvc.yaml -> stages, edges and Airflow task groups, checked against DVC's own resolution."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sass_retrieval.orchestration import dvc_graph
from sass_retrieval.orchestration.dvc_graph import (
    GraphError,
    load_graph,
    overlaps,
    resolve_stages,
    task_groups,
)

ROOT = Path(__file__).resolve().parents[2]

PARAMS = """\
names: [a, b]            # the items
models:
  small: {dim: 4}
  large: {dim: 8}
flag: true
lrs: [0.1, 0.01]
"""

DVC_YAML = """\
vars:
  - extra.yaml
stages:
  prepare:
    cmd: python prep.py --flag ${flag} --tag ${tag}
    deps: [prep.py]
    params: [names]
    outs: [data/raw]
  per_item:
    foreach: ${names}
    do:
      cmd: python split.py --name ${item}
      deps: [split.py, data/raw]
      outs:
        - data/split/${item}
  per_model:
    foreach: ${models}
    do:
      cmd: python train.py --model ${key} --dim ${item.dim}
      deps: [data/split]
      params:
        - models.${key}
      outs:
        - models/${key}:
            persist: true
  sweep:
    matrix:
      lr: ${lrs}
      kind: [x, y]
    cmd: python sweep.py ${item.lr} ${item.kind}
    deps: [data/split/a/part.txt]
    outs:
      - sweeps/${item.kind}-${item.lr}
  evaluate:
    cmd:
      - python eval.py
      - echo \\${not_interpolated}
    wdir: sub
    deps: [../models]
    metrics:
      - ../metrics.json:
          cache: false
    plots:
      - ../plots/curve.csv:
          cache: false
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "extra.yaml").write_text("tag: v1\n")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_foreach_list_dict_and_matrix_expand_like_dvc(project: Path) -> None:
    stages = resolve_stages(project)
    assert list(stages) == ["prepare", "per_item@a", "per_item@b", "per_model@small", "per_model@large",
                            "sweep@0.1-x", "sweep@0.1-y", "sweep@0.01-x", "sweep@0.01-y", "evaluate"]
    assert stages["prepare"].cmd == "python prep.py --flag true --tag v1"
    assert stages["per_item@b"].cmd == "python split.py --name b"
    assert stages["per_item@b"].outs == ("data/split/b",)
    assert (stages["per_item@b"].group, stages["per_item@b"].item) == ("per_item", "b")
    assert stages["per_model@large"].cmd == "python train.py --model large --dim 8"
    assert stages["per_model@large"].params == ("params.yaml:models.large",)
    assert stages["sweep@0.01-y"].outs == ("sweeps/y-0.01",)
    ev = stages["evaluate"]
    assert ev.cmd == "python eval.py && echo ${not_interpolated}"
    assert ev.wdir == "sub" and ev.deps == ("models",)
    assert ev.outs == ("metrics.json", "plots/curve.csv") and ev.cached_outs == ()


def test_edges_follow_outs_to_deps_including_parent_and_child_paths(project: Path) -> None:
    g = load_graph(project)
    assert set(g.upstream("per_item@a")) == {"prepare"}
    # a dep on the parent folder data/split waits for every data/split/<item>
    assert set(g.upstream("per_model@small")) == {"per_item@a", "per_item@b"}
    # a dep on a file inside an output folder waits for that output's stage only
    assert set(g.upstream("sweep@0.1-x")) == {"per_item@a"}
    assert set(g.upstream("evaluate")) == {"per_model@small", "per_model@large"}
    assert g.downstream("evaluate") == []
    assert overlaps("data/split", "data/split/a") and overlaps("a/b", "a/b") and not overlaps("data/s", "data/split")


def test_task_groups_collapse_foreach_into_one_mapped_task(project: Path) -> None:
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert list(groups) == ["prepare", "per_item", "per_model", "sweep", "evaluate"]
    assert groups["prepare"].items is None and not groups["prepare"].mapped
    assert groups["per_item"].items == ("a", "b") and groups["per_item"].stage_for("b") == "per_item@b"
    assert groups["per_model"].items == ("small", "large")
    assert groups["per_model"].upstream == ("per_item",)
    assert groups["sweep"].upstream == ("per_item",)
    assert groups["evaluate"].upstream == ("per_model",)
    with pytest.raises(GraphError):
        groups["per_item"].stage_for("zzz")


def test_a_new_stage_in_dvc_yaml_adds_a_task_group(project: Path) -> None:
    before = [g.name for g in task_groups(load_graph(project))]
    with open(project / "dvc.yaml", "a") as fh:
        fh.write(textwrap.indent("report:\n  cmd: python report.py\n  deps: [metrics.json]\n  outs: [report]\n", "  "))
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert list(groups) == [*before, "report"]
    assert groups["report"].upstream == ("evaluate",)


def test_params_change_the_mapped_items(project: Path) -> None:
    (project / "params.yaml").write_text(PARAMS.replace("[a, b]", "[a, b, c]"))
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert groups["per_item"].items == ("a", "b", "c")


def test_errors_are_explicit(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("x: 1\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    cmd: echo ${missing.key}\n")
    with pytest.raises(GraphError, match="missing"):
        resolve_stages(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  a:\n    cmd: echo a\n    deps: [b]\n    outs: [a]\n  b:\n    cmd: echo b\n    deps: [a]\n    outs: [b]\n")
    with pytest.raises(GraphError, match="cycle"):
        load_graph(tmp_path)


# ---------------------------------------------------------------- against DVC itself

def dvc_view(root: Path) -> tuple[dict[str, dict], set[tuple[str, str]]]:
    """Stages as DVC resolves them (dvc.repo.Repo(root).index.stages), and edges by the same path rule."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        stages = {}
        for s in repo.index.stages:
            rel = lambda p: os.path.relpath(p, repo.root_dir).replace(os.sep, "/")  # noqa: E731
            stages[s.name] = {
                "cmd": s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd),
                "wdir": rel(s.wdir),
                "deps": tuple(rel(d.fs_path) for d in s.deps if not isinstance(d, ParamsDependency)),
                "outs": tuple(rel(o.fs_path) for o in s.outs),
                "params": tuple(sorted(f"{rel(d.fs_path)}:{k}" for d in s.deps if isinstance(d, ParamsDependency)
                                       for k in (d.params or [""]))),
            }
        edges = {(a, b) for b, sb in stages.items() for a, sa in stages.items()
                 if a != b and any(overlaps(d, o) for d in sb["deps"] for o in sa["outs"])}
        return stages, edges
    finally:
        repo.close()


def dvc_graph_edges(root: Path) -> set[tuple[str, str]]:
    """DVC's own pipeline graph (the one `dvc repro` and `dvc dag` use), as (upstream, downstream)."""
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        return {(dep.name, stage.name) for stage, dep in repo.index.graph.edges}
    finally:
        repo.close()


def ours(root: Path) -> dict[str, dict]:
    return {name: {"cmd": s.cmd, "wdir": s.wdir, "deps": s.deps, "outs": s.outs, "params": tuple(sorted(s.params))}
            for name, s in resolve_stages(root).items()}


def dvc_init(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)


def test_fixture_matches_dvc_resolution_and_graph(project: Path) -> None:
    dvc_init(project)
    stages, edges = dvc_view(project)
    assert ours(project) == stages
    assert list(resolve_stages(project)) == list(stages)
    assert load_graph(project).edges == edges == dvc_graph_edges(project)


def test_real_dvc_yaml_matches_dvc_stage_list() -> None:
    """The DAG is built from our resolution of the project's dvc.yaml: it must equal DVC's."""
    stages, edges = dvc_view(ROOT)
    assert ours(ROOT) == stages
    assert load_graph(ROOT).edges == edges
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == list(resolve_stages(ROOT))


def test_real_dvc_yaml_is_a_valid_dvc_pipeline() -> None:
    """DVC itself must accept the graph (no overlapping outputs, no cycles), or `dvc repro` fails."""
    from dvc.exceptions import DvcException

    try:
        edges = dvc_graph_edges(ROOT)
    except DvcException as exc:
        pytest.fail(f"DVC rejects dvc.yaml, so `dvc repro`/`dvc dag` fail: {exc}")
    assert load_graph(ROOT).edges == edges


def test_the_params_check_runs_first_and_everything_waits_for_it() -> None:
    """The real dvc.yaml: stage `params` (pipelines.check_params) has no upstream, every other stage is
    downstream of it, so the Airflow DAG runs it right after `configure` and stops there on bad params."""
    graph = load_graph(ROOT)
    assert graph.topological()[0] == "params"
    assert graph.stages["params"].cmd == "python -m pipelines.check_params"
    assert graph.upstream("params") == []
    assert set(graph.downstream("params")) == set(graph.stages) - {"params"}
    groups = task_groups(graph)
    assert groups[0].name == "params" and groups[0].upstream == () and not groups[0].mapped
    assert all("params" in g.upstream for g in groups[1:])


def test_module_is_importable_without_airflow_or_dvc() -> None:
    code = ("import sys; import sass_retrieval.orchestration.dvc_graph as g; g.load_graph(sys.argv[1]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'dvc', 'torch', 'pandas')]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert dvc_graph.describe(load_graph(ROOT))
