"""The quick start's success path on tiny data: `sass run` (the real CLI, i.e. `dvc repro` of the real dvc.yaml)
in a copy of the project with the tiny params, then `dvc status` and a second `dvc repro`.

The other pipeline tests run the stages in-process or one at a time (the Airflow tests run each stage's command
and `dvc commit`), or `sass run` failing at validation. Only here does DVC itself order and record the whole
pipeline, which is what catches a dvc.yaml that disagrees with what the stages do: an out a stage does not write,
a stage writing into a folder another stage declares, a dep or params key that changes during the run. Each of
those leaves the workspace dirty after the run, so the second repro reruns something.

The copy is bench/quickstart.py's (the project's files in a fresh git repository, the venv's bin first on PATH as
the Makefile does); the tiny params are tests/support.py's, written as params.yaml; dvc.yaml is left unchanged.
One pipeline run and one second repro serve the whole module.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import TINY_SCENARIOS, load_bench, write_project

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent      # the venv's bin: its `sass` entry point and `dvc`
TIMEOUT = 3600                         # a hung pipeline fails the test instead of blocking the suite


@dataclass(frozen=True)
class Done:
    """A command run in the project: its exit code and everything it printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class QuickStart:
    project: Path
    run: Done                          # `sass run` on the fresh copy


@dataclass(frozen=True)
class Settled:
    """After the run: `dvc status --json`, then a second `dvc repro`, with the workspace before and after it."""

    status: Done
    repro: Done
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]


def _call(project: Path, *cmd: str) -> Done:
    env = load_bench("quickstart").pipeline_env()
    res = subprocess.run(list(cmd), cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return Done(res.returncode, res.stdout, res.stderr)


def _stages(project: Path) -> dict[str, list[str]]:
    """Every stage of the project's dvc.yaml (foreach expanded, by DVC itself) -> its declared outs (metrics and
    plots included), relative to the project."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {stage.name: [str(out.def_path) for out in stage.outs] for stage in repo.index.stages}


def _snapshot(project: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under every declared out, dvc.lock, and the publish folder (where the
    `current` link points is in the key): what a rerun of any stage would touch."""
    paths = [project / out for outs in _stages(project).values() for out in outs]
    paths += [project / "dvc.lock", project / "published"]
    seen: dict[str, tuple[int, int]] = {}
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() or p.is_symlink()]
        for f in files:
            st = f.lstat()
            key = str(f.relative_to(project)) + (f" -> {os.readlink(f)}" if f.is_symlink() else "")
            seen[key] = (st.st_mtime_ns, st.st_size)
    return seen


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    project = load_bench("quickstart").copy_project(tmp_path_factory.mktemp("quickstart"))
    write_project(project)                                   # the tiny params as params.yaml
    return QuickStart(project, _call(project, str(BIN / "sass"), "run"))


@pytest.fixture(scope="module")
def settled(quickstart: QuickStart) -> Settled:
    project = quickstart.project
    assert quickstart.run.returncode == 0, quickstart.run.output[-4000:]
    before = _snapshot(project)
    status = _call(project, str(BIN / "dvc"), "status", "--json")
    repro = _call(project, str(BIN / "dvc"), "repro")
    return Settled(status, repro, before, _snapshot(project))


def test_sass_run_exits_0_having_run_every_stage(quickstart: QuickStart) -> None:
    """A fresh copy has no outputs: DVC runs every stage of dvc.yaml, the foreach over the tiny scenarios
    expanded, and records each in dvc.lock."""
    import yaml

    run = quickstart.run
    assert run.returncode == 0, run.output[-4000:]
    stages = _stages(quickstart.project)
    assert {f"split@{s}" for s in TINY_SCENARIOS} | {f"index@{s}" for s in TINY_SCENARIOS} <= set(stages)
    assert {"params", "ingest", "validate", "pairs", "pretrain", "finetune", "challenger", "evaluate", "report",
            "publish"} <= set(stages)
    not_run = [name for name in stages if f"Running stage '{name}'" not in run.output]
    assert not_run == [], run.output[-4000:]
    lock = yaml.safe_load((quickstart.project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)


def test_every_declared_out_exists(quickstart: QuickStart) -> None:
    """Each out of each stage (as DVC reads dvc.yaml: metrics and plots included) is there, folders not empty."""
    missing = []
    for name, outs in _stages(quickstart.project).items():
        for out in outs:
            path = quickstart.project / out
            if not (path.is_file() and path.stat().st_size > 0 or path.is_dir() and any(path.iterdir())):
                missing.append(f"{name}: {out}")
    assert missing == []


def test_the_user_facing_outputs(quickstart: QuickStart) -> None:
    """What the quick start points a user at: every daily row scored in metrics.json and the headline table,
    the run report, the validation Data Docs (validation passed), a FAISS index per scenario for the candidate
    and the challenger, and a published version in service."""
    import faiss

    from sass_retrieval.config import load_params
    from sass_retrieval.evaluate.daily import daily_and_benchmark_rows
    from sass_retrieval.rows import CANDIDATE

    root = quickstart.project
    params = load_params(root / "params.yaml")
    rows = daily_and_benchmark_rows(params)
    challenger = params.publish.challenger
    assert {CANDIDATE, "popular", challenger} <= set(rows)

    metrics = json.loads((root / "metrics" / "metrics.json").read_text())
    assert set(metrics["rows"]) == set(rows)
    for row in rows:
        value = metrics["rows"][row]["macro"]["ndcg@50"]
        assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (row, value)
    table = (root / "plots" / "table.md").read_text()
    assert all(row in table for row in rows), table

    assert "<html" in (root / "reports" / "run" / "index.html").read_text().lower()
    validation = root / "reports" / "validation"
    assert json.loads((validation / "summary.json").read_text())["success"] is True
    assert "<html" in (validation / "data_docs" / "index.html").read_text().lower()

    for row in (CANDIDATE, challenger):
        for s in params.scenarios.names:
            index = faiss.read_index(str(root / "indexes" / row / s / "index.faiss"))
            assert index.ntotal > 0, (row, s)

    decision = json.loads((root / "reports" / "publish.json").read_text())
    assert decision["publish"] is True and decision["winner"] in (CANDIDATE, challenger), decision
    current = root / "published" / "current"
    assert current.is_symlink()
    version = current.resolve()
    assert version.parent == (root / "published" / "versions").resolve() and version.is_dir()
    assert json.loads((version / "served.json").read_text())["row"] == decision["winner"]
    assert all((version / "indexes" / s / "index.faiss").is_file() for s in params.scenarios.names)


def test_dvc_status_is_clean_after_the_run(settled: Settled) -> None:
    """No stage's deps, params or outs differ from what dvc.lock recorded: the run left nothing to redo."""
    assert settled.status.returncode == 0, settled.status.output
    assert json.loads(settled.status.stdout) == {}, settled.status.output


def test_a_second_repro_runs_nothing_and_touches_nothing(quickstart: QuickStart, settled: Settled) -> None:
    """Every stage is skipped as unchanged; no file of any out, of dvc.lock or of the publish folder is
    rewritten (same mtime and size, no file added or removed)."""
    repro = settled.repro
    assert repro.returncode == 0, repro.output[-4000:]
    assert "Running stage" not in repro.output, repro.output[-4000:]
    assert "Data and pipelines are up to date." in repro.output, repro.output[-4000:]
    stages = _stages(quickstart.project)
    assert [s for s in stages if f"Stage '{s}' didn't change, skipping" not in repro.output] == []
    changed = sorted(set(settled.before.items()) ^ set(settled.after.items()))
    assert changed == []
