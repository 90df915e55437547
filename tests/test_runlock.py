"""runlock: the run lock refuses at once and names its holder; the DVC lock makes the next caller wait."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from sass_retrieval.runlock import RunLocked, dvc_lock, run_lock


def _hold_run_lock(path: str, seconds: float, ready) -> None:
    with run_lock(Path(path), "sass run"):
        ready.set()
        time.sleep(seconds)


def _hold_dvc_lock(root: str, seconds: float, ready) -> None:
    with dvc_lock(root):
        ready.set()
        time.sleep(seconds)


def in_other_process(target, *args):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(*args, ready))
    proc.start()
    assert ready.wait(30)
    return proc


def test_a_second_run_is_refused_at_once_with_the_holder_named(tmp_path: Path) -> None:
    path = tmp_path / ".locks" / "run.lock"
    proc = in_other_process(_hold_run_lock, str(path), 1.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunLocked, match=r"publish: another run is in progress") as info, run_lock(path, "publish"):
            pytest.fail("the lock was taken twice")
        assert time.monotonic() - t0 < 1.0                     # refused, not waited for
        holder = json.loads(str(info.value).split("workspace (", 1)[1].split("; lock", 1)[0])
        assert holder["pid"] == proc.pid and holder["what"] == "sass run" and holder["since"]
    finally:
        proc.join(30)
    with run_lock(path, "publish"):                            # released with its holder
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_the_run_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with pytest.raises(ValueError), run_lock(path, "sass run"):
        raise ValueError("stage failed")
    with run_lock(path, "sass run"):
        pass


def test_the_dvc_lock_waits_for_other_processes(tmp_path: Path) -> None:
    proc = in_other_process(_hold_dvc_lock, str(tmp_path), 1.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError), dvc_lock(tmp_path, timeout=0.3):
            pass
        with dvc_lock(tmp_path):
            waited = time.monotonic() - t0
        assert waited > 0.8
    finally:
        proc.join(30)
