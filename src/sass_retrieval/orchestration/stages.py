"""One dvc.yaml stage as a DAG task: its resolved cmd in a subprocess, then ``dvc commit`` under the DVC lock.

Mapped instances compute in parallel and enter DVC one at a time (:func:`~sass_retrieval.runlock.dvc_lock`),
leaving the dvc.lock ``dvc repro`` would write. Exit codes 2, 3 and 4 (:mod:`sass_retrieval.errors`) are
:attr:`StageFailed.final`: retrying can not fix bad input, bad config or a missing prerequisite.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import FINAL_EXIT_CODES
from ..runlock import dvc_lock
from .dvc_graph import load_graph

log = logging.getLogger("sass.orchestration")


class StageFailed(RuntimeError):
    def __init__(self, stage: str, returncode: int):
        self.stage, self.returncode = stage, returncode
        super().__init__(f"stage {stage!r} exited with code {returncode}")

    @property
    def final(self) -> bool:
        return self.returncode in FINAL_EXIT_CODES


def stage_env(root: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stage's environment: this interpreter's bin first on PATH (a cmd's ``python`` is the project's venv),
    the project's src/ and root first on PYTHONPATH, unbuffered output."""
    root = Path(root).resolve()
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]).rstrip(os.pathsep)
    paths = [str(root / "src"), str(root), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)), PYTHONUNBUFFERED="1", SASS_PROJECT_DIR=str(root))
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.pop("VIRTUAL_ENV_PROMPT", None)
    return env


def stream(cmd: str | Sequence[str], cwd: str | Path, env: Mapping[str, str], prefix: str = "",
           logger: logging.Logger | None = None) -> int:
    """Run ``cmd`` (a shell string or an argv list), its merged output logged line by line; the exit code."""
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=dict(env), shell=isinstance(cmd, str), text=True, bufsize=1,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            (logger or log).info("%s%s", prefix, line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        # The task was killed or timed out: do not leave the stage running behind Airflow's back.
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def dvc(root: str | Path, *args: str, logger: logging.Logger | None = None, check: bool = True) -> int:
    """``dvc <args>`` with this interpreter in ``root``, output logged. Call it under ``dvc_lock``."""
    # --wait-for-lock: a dvc command someone runs by hand in the workspace delays us instead of failing us
    rc = stream([sys.executable, "-m", "dvc", "--wait-for-lock", *args], root, stage_env(root), "[dvc] ", logger)
    if check and rc != 0:
        raise RuntimeError(f"dvc {' '.join(args)} exited with code {rc}")
    return rc


def run_stage(root: str | Path, stage: str, *, commit: bool = True, logger: logging.Logger | None = None) -> float:
    """Run stage ``stage``'s cmd as dvc.yaml resolves it now, then record it in dvc.lock; the seconds it took.
    Raises :class:`StageFailed` on a non-zero exit (nothing is recorded then)."""
    logger = logger or log
    root = Path(root).resolve()
    stages = load_graph(root).stages
    if stage not in stages:
        raise KeyError(f"no stage {stage!r} in {root / 'dvc.yaml'} (stages: {', '.join(stages)})")
    st = stages[stage]
    logger.info("stage %s: %s  (in %s)", stage, st.cmd, root / st.wdir)
    t0 = time.perf_counter()
    rc = stream(st.cmd, root / st.wdir, stage_env(root), "", logger)
    seconds = time.perf_counter() - t0
    if rc != 0:
        logger.error("stage %s failed with exit code %d after %.1fs", stage, rc, seconds)
        raise StageFailed(stage, rc)
    logger.info("stage %s done in %.1fs", stage, seconds)
    if commit:
        with dvc_lock(root):
            dvc(root, "commit", "--force", "--no-relink", "--quiet", stage, logger=logger)
        logger.info("stage %s recorded in dvc.lock", stage)
    return seconds
