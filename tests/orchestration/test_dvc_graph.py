"""dvc_graph: DVC's own index of dvc.yaml -> stages, edges and Airflow task groups, cached as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sass_retrieval.orchestration import dvc_graph
from sass_retrieval.orchestration.dvc_graph import CACHE_FILE, GraphError, load_graph, task_groups

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
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "extra.yaml").write_text("tag: v1\n")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "sub").mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def test_stages_and_edges_are_dvcs_own(project: Path) -> None:
    """Everything (foreach over a list and a dict, matrix, vars, wdir, list cmds) is resolved by DVC."""
    from dvc.repo import Repo

    g = load_graph(project)
    repo = Repo(str(project))
    try:
        assert list(g.stages) == [s.name for s in repo.index.stages]
        assert g.edges == {(up.name, down.name) for down, up in repo.index.graph.edges}
    finally:
        repo.close()
    assert list(g.stages) == ["prepare", "per_item@a", "per_item@b", "per_model@small", "per_model@large",
                              "sweep@0.1-x", "sweep@0.1-y", "sweep@0.01-x", "sweep@0.01-y", "evaluate"]
    assert g.stages["prepare"].cmd == "python prep.py --flag true --tag v1"
    assert (g.stages["per_item@b"].group, g.stages["per_item@b"].item) == ("per_item", "b")
    assert g.stages["per_model@large"].cmd == "python train.py --model large --dim 8"
    assert g.stages["evaluate"].cmd == "python eval.py && echo ${not_interpolated}"
    assert g.stages["evaluate"].wdir == "sub"
    assert set(g.upstream("per_model@small")) == {"per_item@a", "per_item@b"}
    assert set(g.upstream("sweep@0.1-x")) == {"per_item@a"}
    assert not [b for a, b in g.edges if a == "evaluate"]
    order = g.topological()
    assert all(order.index(a) < order.index(b) for a, b in g.edges)


def test_task_groups_collapse_foreach_into_one_mapped_task(project: Path) -> None:
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert list(groups) == ["prepare", "per_item", "per_model", "sweep", "evaluate"]
    assert groups["prepare"].items is None and not groups["prepare"].mapped
    assert groups["per_item"].items == ("a", "b") and groups["per_item"].stages == ("per_item@a", "per_item@b")
    assert groups["per_model"].items == ("small", "large")
    assert groups["per_model"].upstream == ("per_item",)
    assert groups["sweep"].upstream == ("per_item",)
    assert groups["evaluate"].upstream == ("per_model",)


def test_the_graph_is_cached_and_regenerated_when_dvc_yaml_or_params_change(project: Path) -> None:
    load_graph(project)
    cache = project / CACHE_FILE
    doc = json.loads(cache.read_text())
    assert doc["fingerprint"] == dvc_graph.fingerprint(project)
    # a current cache is read as is: poison it and the poisoned graph comes back (no DVC call)
    doc["stages"][0]["cmd"] = "from the cache"
    cache.write_text(json.dumps(doc))
    assert load_graph(project).stages["prepare"].cmd == "from the cache"
    # params.yaml changes the mapped items: the cache is stale and DVC resolves again
    (project / "params.yaml").write_text(PARAMS.replace("[a, b]", "[a, b, c]"))
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert groups["per_item"].items == ("a", "b", "c")
    assert load_graph(project).stages["prepare"].cmd.startswith("python prep.py")
    # a new stage in dvc.yaml is a new task group
    with open(project / "dvc.yaml", "a") as fh:
        fh.write(textwrap.indent("report:\n  cmd: python report.py\n  deps: [metrics.json]\n  outs: [report]\n", "  "))
    groups = {g.name: g for g in task_groups(load_graph(project))}
    assert list(groups)[-1] == "report" and groups["report"].upstream == ("evaluate",)


def test_errors_are_dvcs_messages(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("x: 1\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    cmd: echo ${missing.key}\n")
    with pytest.raises(GraphError, match="missing"):
        load_graph(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  a:\n    cmd: echo a\n    deps: [b]\n    outs: [a]\n  b:\n    cmd: echo b\n    deps: [a]\n    outs: [b]\n")
    with pytest.raises(GraphError, match="DVC rejects"):  # a cycle
        load_graph(tmp_path)


def test_real_dvc_yaml_matches_dvc_stage_list() -> None:
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == list(load_graph(ROOT).stages)


def test_the_daily_path_trains_the_candidate_and_the_challenger_only() -> None:
    """Default params: sass, the challenger and popular; the other reference rows are on demand."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    graph = load_graph(ROOT)
    challenger = params["publish"]["challenger"]
    assert graph.stages["challenger"].cmd == f"python -m pipelines.train --row {challenger} --no-progress"
    assert not [s for s in graph.stages if s.startswith("reference@")] or params["evaluate"]["benchmark_rows"]
    assert graph.stages["index@s0"].cmd.endswith(f"--row sass --row {challenger}")
    assert {"finetune", "challenger"} <= set(graph.upstream("index@s0"))


def test_the_params_check_runs_first_and_everything_waits_for_it() -> None:
    """The real dvc.yaml: stage `params` (pipelines.check_params) has no upstream, every other stage is
    downstream of it, so the Airflow DAG runs it right after `configure` and stops there on bad params."""
    graph = load_graph(ROOT)
    assert graph.topological()[0] == "params"
    assert graph.stages["params"].cmd == "python -m pipelines.check_params"
    assert graph.upstream("params") == []
    assert {b for a, b in graph.edges if a == "params"} == set(graph.stages) - {"params"}
    groups = task_groups(graph)
    assert groups[0].name == "params" and groups[0].upstream == () and not groups[0].mapped
    assert all("params" in g.upstream for g in groups[1:])


def test_module_is_importable_without_airflow_or_dvc(tmp_path: Path) -> None:
    """The DAG file's view: a current cache is read without importing DVC, a stale one is rebuilt in a
    subprocess, so the parsing process never imports DVC either way."""
    for f in ("dvc.yaml", "params.yaml"):
        (tmp_path / f).write_text((ROOT / f).read_text())
    code = ("import sys, time; import sass_retrieval.orchestration.dvc_graph as g; t = time.perf_counter(); "
            "g.load_graph(sys.argv[1]); print('SECONDS', time.perf_counter() - t); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'dvc', 'torch', 'pandas')]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    for _ in ("stale", "cached"):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    assert dvc_graph.describe(load_graph(ROOT))
