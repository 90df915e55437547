"""Bad days end in a clear message and a safe state: the published model stays, nothing half-written.

Each test asserts both what the user sees and the state left behind. Input-data cases are covered one
by one in tests/data/test_validation.py; here they go through the stage entry points.
"""

from __future__ import annotations

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
from support import cwd

from pipelines import index, publish, train
from sass_retrieval import cli
from sass_retrieval.config import update_params_file
from sass_retrieval.errors import EXIT_BAD_INPUT, EXIT_BUSY

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
    part = sorted(day.glob("*.parquet"))[0]
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


def test_a_crash_while_writing_an_index_leaves_the_old_index_loadable(project: Path, monkeypatch) -> None:
    import faiss

    from sass_retrieval.index.faiss_index import load_index

    target = project / "indexes/sass/s0/index.faiss"
    before = target.read_bytes()

    def crash(index, path):
        Path(path).write_bytes(b"half an index")
        raise OSError("killed while writing")

    monkeypatch.setattr(faiss, "write_index", crash)
    with cwd(project), pytest.raises(OSError, match="killed while writing"):
        index.main(["--scenario", "s0"])
    assert target.read_bytes() == before
    assert load_index(target).ntotal > 0


def test_a_crash_while_publishing_leaves_current_untouched(project: Path, monkeypatch) -> None:
    from sass_retrieval import publish as pub
    from sass_retrieval.index.faiss_index import load_index

    before = _current(project)
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    metrics["sass"]["macro"]["ndcg@50"] += 0.1          # a better run that would be published
    metrics["rows"]["sass"]["macro"]["ndcg@50"] += 0.1
    (project / "metrics/metrics.json").write_text(json.dumps(metrics))

    def crash(*a, **k):
        raise OSError("killed while copying")

    monkeypatch.setattr(pub.shutil, "copytree", crash)
    with cwd(project), pytest.raises(OSError, match="killed while copying"):
        publish.main([])
    assert _current(project) == before
    assert load_index(before / "indexes/s0/index.faiss").ntotal > 0
    assert not [p for p in (project / "published/versions").iterdir() if p.name.startswith(".")]


def test_a_second_run_in_the_same_workspace_is_refused(project: Path, capsys) -> None:
    from sass_retrieval.runlock import run_lock

    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    with cwd(project), run_lock(project / ".locks" / "run.lock", "sass run"):
        assert cli.main(["run"]) == EXIT_BUSY
    assert "another run is in progress" in capsys.readouterr().err


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
    for path in list((REPO / "src").rglob("*.py")) + list((REPO / "pipelines").rglob("*.py")) + list((REPO / "bench").rglob("*.py")):
        for line in path.read_text().splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders


def test_no_credentials_in_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|-----BEGIN (RSA |EC )?PRIVATE KEY-----|aws_secret_access_key\s*=\s*\S+|"
                         r"password\s*[:=]\s*['\"][^'\"$\s]{6,}['\"])", re.IGNORECASE)
    hits = [f for f in files if (REPO / f).is_file() and (REPO / f).stat().st_size < 2_000_000
            and pattern.search((REPO / f).read_text(errors="ignore"))]
    assert not hits
