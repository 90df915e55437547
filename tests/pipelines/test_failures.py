"""Bad days end in a clear message and a safe state: the published model stays, nothing half-written.

Each test asserts both what the user sees and the state left behind. Input-data cases are covered one
by one in tests/data/test_validation.py; here they go through the stage entry points.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from killpoint import child_env, command
from support import cwd

from pipelines import publish, train
from sass_retrieval import cli
from sass_retrieval.atomic import temp_name_pattern
from sass_retrieval.config import update_params_file
from sass_retrieval.errors import EXIT_BAD_INPUT, EXIT_BUSY
from sass_retrieval.rows import CANDIDATE

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(built_project: Path, tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        assert publish.main([]) == 0          # a model in service before the bad day
    return root


def _set(root: Path, dotted: str, value) -> None:
    update_params_file(root / "params.yaml", {dotted: value})


def _current(root: Path) -> Path:
    return (root / "published" / "current").resolve()


def test_missing_column_stops_the_run_and_keeps_the_published_model(project: Path, capsys) -> None:
    before = _current(project)
    day = sorted((project / "data/store/interactions").glob("date=*"))[-1]
    part = sorted(day.rglob("*.parquet"))[0]   # date=D/scenario=S/part-N.parquet
    pd.read_parquet(part).drop(columns=["is_click"]).to_parquet(part, index=False)
    with cwd(project):
        assert cli.main(["validate"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("error: ")]
    assert any("interactions" in line and "is_click" in line and part.name in line for line in problems), err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("hint: validation failed") and "published model stays in place" in err
    assert _current(project) == before


def _as_dvc_project(root: Path) -> None:
    """The built project as a DVC pipeline: the real dvc.yaml and the code its stages depend on."""
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for folder in ("pipelines", "src/sass_retrieval", "report-assets"):   # report-assets: validate's lock-file dep
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "node_modules"),
                        dirs_exist_ok=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)


def test_a_failed_validation_inside_a_full_run_stops_before_training(project: Path) -> None:
    """`sass run` (= dvc repro of dvc.yaml): validation fails, nothing downstream runs."""
    _as_dvc_project(project)
    _set(project, "validation.min_rows_per_day", 10**9)   # every day is "far too small"
    before = _current(project)
    model_mtime = (project / "models/sass/model.pt").stat().st_mtime
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run([sys.executable, "-m", "sass_retrieval.cli", "run"], cwd=project, capture_output=True,
                         text=True, timeout=900, env=env)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "hint: validation failed" in out and "failed to reproduce 'validate'" in out and "exited with 2" in out, out
    assert "Running stage 'pretrain'" not in out and "Running stage 'finetune'" not in out
    assert (project / "models/sass/model.pt").stat().st_mtime == model_mtime
    assert _current(project) == before


def test_training_killed_mid_epoch_resumes_from_its_checkpoint(project: Path) -> None:
    _set(project, "train.checkpoint_every", 2)
    _set(project, "train.checkpoint_seconds", 0)
    _set(project, "finetune.epochs", 6)
    _set(project, "finetune.early_stopping", False)
    out = project / "models" / "killed"
    cmd = [sys.executable, "-m", "pipelines.train", "--row", "dssm_mixed", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (out / "resume-full.pt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists()
    res = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(r"resuming at epoch \d+ step \d+", res.stderr)
    assert (out / "model.pt").exists() and not list(out.glob("resume*"))


# Crash tests that kill: the real stage runs in a child that sends itself SIGKILL at a chosen call of the
# write path (tests/killpoint.py), so no except/finally cleanup runs, as with the OOM killer or a lost node.
TEMPORARIES = (temp_name_pattern(), temp_name_pattern("current", suffix=""))   # atomic.temp_path's names
SWEPT = "removed 1 stale temporary"                                            # atomic.sweep_temps' log line


def _temporaries(root: Path) -> list[Path]:
    """Every temporary atomic.py names under the index and publish folders."""
    return sorted(p for top in ("indexes", "published") for p in (root / top).rglob("*")
                  if any(t.fullmatch(p.name) for t in TEMPORARIES))


def _killed(root: Path, target: str, match: str, n: int, when: str, *stage: str) -> None:
    """Run ``python -m <stage>`` in ``root`` with a SIGKILL at the n-th ``target`` call matching ``match``."""
    res = subprocess.run(command(target, match, n, when, *stage), cwd=root, capture_output=True, text=True,
                         timeout=600, env=child_env())
    assert res.returncode == -signal.SIGKILL, f"not killed at {target} #{n} {when}: {res.stderr[-3000:]}"


def _stage(root: Path, *stage: str) -> str:
    """Run ``python -m <stage>`` in ``root`` normally; returns its log (stderr)."""
    res = subprocess.run([sys.executable, "-m", *stage], cwd=root, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _challenger(root: Path) -> str:
    return str(yaml.safe_load((root / "params.yaml").read_text())["publish"]["challenger"])


# id -> (wrapped call, its n-th call on an index.faiss temporary, kill before/after it, rows already renamed in)
INDEX_KILLS = {
    "temp-written": ("faiss:write_index", 1, "after", 0),       # the candidate's temporary is complete, not renamed
    "before-rename": ("os:replace", 1, "before", 0),            # fsynced, at the rename that would commit it
    "second-row-before-rename": ("os:replace", 2, "before", 1),  # candidate's index committed, challenger's not
}


@pytest.mark.parametrize("point", list(INDEX_KILLS))
def test_an_index_stage_killed_mid_write_keeps_the_old_index_and_the_next_run_sweeps(project: Path,
                                                                                    point: str) -> None:
    import faiss
    import numpy as np

    from sass_retrieval.index.faiss_index import load_index, save_index

    target, n, when, renamed = INDEX_KILLS[point]
    rows = [CANDIDATE, _challenger(project)]
    paths = [project / "indexes" / row / "s0" / "index.faiss" for row in rows]
    old = {}
    for path in paths:   # yesterday's index: valid and different from what today's run writes
        dim = load_index(path).d
        yesterday = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        yesterday.add_with_ids(np.eye(3, dim, dtype=np.float32), np.array([1, 2, 3], dtype=np.int64))
        save_index(yesterday, path)
        old[path] = path.read_bytes()

    _killed(project, target, ".index.faiss.", n, when, "pipelines.index", "--scenario", "s0")
    for path in paths[:renamed]:                  # renamed in before the kill: today's index, whole
        assert path.read_bytes() != old[path] and load_index(path).ntotal > 3
    for path in paths[renamed:]:                  # not reached: yesterday's bytes, loadable
        assert path.read_bytes() == old[path] and load_index(path).ntotal == 3
    left = _temporaries(project)                  # the kill skipped the cleanup: the temporary is still there
    assert [(p.parent, p.name.startswith(".index.faiss.")) for p in left] == [(paths[renamed].parent, True)]

    log = _stage(project, "pipelines.index", "--scenario", "s0")
    assert SWEPT in log
    for path in paths:
        assert path.read_bytes() != old[path] and load_index(path).ntotal > 3
    assert _temporaries(project) == []


# id -> (wrapped call, the text its path arguments contain, which matching call, kill before/after it)
PUBLISH_KILLS = {
    "first-file-copied": ("shutil:copyfile", "/versions/.", "first", "after"),
    "half-the-files-copied": ("shutil:copyfile", "/versions/.", "half", "after"),
    "before-the-version-rename": ("os:rename", "/versions/.", "first", "before"),
    "before-current-is-swapped": ("os:replace", "/.current.", "first", "before"),
}


@pytest.mark.parametrize("point", list(PUBLISH_KILLS))
def test_a_publish_killed_mid_install_keeps_current_and_the_next_run_sweeps(project: Path, point: str) -> None:
    from sass_retrieval.index.faiss_index import load_index
    from sass_retrieval.publish import SERVED_FILE

    published = project / "published"
    before = _current(project)
    tree = _tree(before)
    versions = sorted(p.name for p in (published / "versions").iterdir())
    decisions = (published / "decisions.jsonl").read_bytes()
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    metrics["sass"]["macro"]["ndcg@50"] += 0.1          # a better run, which the gate publishes
    metrics["rows"]["sass"]["macro"]["ndcg@50"] += 0.1
    (project / "metrics/metrics.json").write_text(json.dumps(metrics))
    target, match, which, when = PUBLISH_KILLS[point]
    n = max(2, sum(1 for f in tree if f != SERVED_FILE) // 2) if which == "half" else 1

    _killed(project, target, match, n, when, "pipelines.publish")
    assert _current(project) == before and (published / "current").resolve().is_dir()
    assert _tree(before) == tree                         # the version in service, byte for byte
    assert load_index(before / "indexes/s0/index.faiss").ntotal > 0
    assert (published / "decisions.jsonl").read_bytes() == decisions
    left = _temporaries(project)                         # the kill skipped the cleanup: the temporary is still there
    now = sorted(p.name for p in (published / "versions").iterdir() if not p.name.startswith("."))
    if point == "before-current-is-swapped":             # the new version is whole; only the new link is left aside
        assert [p.parent for p in left] == [published] and left[0].is_symlink()
        assert len(now) == len(versions) + 1
    else:                                                # the version was still being filled aside
        assert [p.parent for p in left] == [published / "versions"] and left[0].is_dir()
        assert now == versions

    log = _stage(project, "pipelines.publish")
    assert SWEPT in log
    after = _current(project)
    assert after != before and after.parent == published / "versions"
    assert (after / SERVED_FILE).is_file() and load_index(after / "indexes/s0/index.faiss").ntotal > 0
    assert json.loads((published / "decisions.jsonl").read_text().splitlines()[-1])["publish"] is True
    assert _tree(before) == tree
    assert _temporaries(project) == []


def test_the_publish_sweep_leaves_a_running_installers_temporary_alone(project: Path) -> None:
    """The sweep runs under the publish lock: while an installer holds it, a second publish is refused and
    the installer's half-filled version stays."""
    from sass_retrieval.atomic import temp_path
    from sass_retrieval.publish_run import PUBLISH_LOCK
    from sass_retrieval.runlock import RunLocked, run_lock

    published = project / "published"
    staging = temp_path(published / "versions" / "20990101-0123456789")
    staging.mkdir()
    with cwd(project), run_lock(published / PUBLISH_LOCK, "publish"), pytest.raises(RunLocked):
        publish.main([])
    assert staging.is_dir()
    with cwd(project):
        assert publish.main([]) == 0
    assert not staging.exists()


HOLD_THE_RUN_LOCK = """
import sys, time
from pathlib import Path
from sass_retrieval.runlock import run_lock
lock, ready, release = map(Path, sys.argv[1:4])
with run_lock(lock, "sass run"):
    ready.touch()
    while not release.exists():
        time.sleep(0.05)
"""


def test_a_second_run_in_the_same_workspace_is_refused(project: Path) -> None:
    """Two processes: one holds the workspace's run lock as a running `sass run` does, a real `sass run`
    started beside it exits busy with one line naming the holder, and the holder is left running."""
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    ready, release = project / ".holder-ready", project / ".holder-release"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_RUN_LOCK, str(project / ".locks" / "run.lock"),
                               str(ready), str(release)], cwd=project)
    try:
        deadline = time.time() + 120                     # a safety limit, not an assertion on speed
        while not ready.exists():
            assert holder.poll() is None and time.time() < deadline, "the lock holder did not start"
            time.sleep(0.05)
        sass = Path(sys.executable).parent / "sass"
        second = subprocess.run([str(sass), "run"], cwd=project, capture_output=True, text=True, timeout=300)
        assert second.returncode == EXIT_BUSY, second.stderr[-2000:]
        assert "another run is in progress" in second.stderr and f'"pid": {holder.pid}' in second.stderr
        assert "Running stage" not in second.stdout + second.stderr
        assert holder.poll() is None, "the first run must go on"
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_a_retried_stage_gives_the_same_outputs(project: Path) -> None:
    """An Airflow retry reruns the stage command: same inputs and seed -> identical weights.

    (torch.save writes a random serialization id, so the files differ byte-wise; the tensors must not.)
    """
    import torch

    from sass_retrieval.models.checkpoint import load_model

    states = []
    with cwd(project):
        for out in ("models/retry_a", "models/retry_b"):
            assert train.main(["--row", "dssm_mixed", "--no-progress", "--out", out]) == 0
            states.append(load_model(Path(out) / "model.pt")[0].state_dict())
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k


def test_every_torch_load_uses_weights_only() -> None:
    offenders = []
    for path in (p for folder in ("src", "pipelines", "bench", "tests", "dags", "scripts")
                 for p in (REPO / folder).rglob("*.py") if ".work" not in p.parts):
        for line in path.read_text().splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders


def test_no_credentials_in_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|-----BEGIN (RSA |EC )?PRIVATE KEY-----|aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{30,}|"
                         r"password\s*[:=]\s*['\"][^'\"$\s]{6,}['\"])", re.IGNORECASE)
    hits = [f for f in files if (REPO / f).is_file() and (REPO / f).stat().st_size < 2_000_000
            and pattern.search((REPO / f).read_text(errors="ignore"))]
    assert not hits
    # the pattern finds a key's value, not code that passes one on (a client built from generated keys)
    assert pattern.search("aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert not pattern.search("boto3.client('s3', aws_secret_access_key=self.secret_key)")
