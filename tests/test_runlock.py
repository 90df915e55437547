"""runlock: the run lock refuses at once and names its holder; the DVC lock makes the next caller wait.

The other process holds its lock until the test releases it (an event), so what each lock does while it is
held is checked by order of events, not by timing the calls."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
from pathlib import Path

import pytest

from sass_retrieval.runlock import RunLocked, dvc_lock, run_lock

CTX = mp.get_context("spawn")
HOLD_AT_MOST = 60   # a holder whose release never comes lets go after this; a safety limit, not a measurement


def _hold_run_lock(path: str, release, ready) -> None:
    with run_lock(Path(path), "sass run"):
        ready.set()
        release.wait(HOLD_AT_MOST)


def _hold_dvc_lock(root: str, release, marker: str, ready) -> None:
    with dvc_lock(root):
        ready.set()
        release.wait(HOLD_AT_MOST)
        Path(marker).write_text("done")   # the last thing the holder does before it lets go


def in_other_process(target, *args):
    ready = CTX.Event()
    proc = CTX.Process(target=target, args=(*args, ready))
    proc.start()
    assert ready.wait(30)
    return proc


def test_a_second_run_is_refused_at_once_with_the_holder_named(tmp_path: Path) -> None:
    path = tmp_path / ".locks" / "run.lock"
    release = CTX.Event()
    proc = in_other_process(_hold_run_lock, str(path), release)
    try:
        # the holder keeps the lock until `release`: a run lock that waited would get it only after the holder
        # gave up (HOLD_AT_MOST) and then fail this block; refused while held means refused, not waited for
        with pytest.raises(RunLocked, match=r"publish: another run is in progress") as info, run_lock(path, "publish"):
            pytest.fail("the lock was taken twice")
        assert not release.is_set() and proc.is_alive()
        holder = json.loads(str(info.value).split("workspace (", 1)[1].split("; lock", 1)[0])
        assert holder["pid"] == proc.pid and holder["what"] == "sass run" and holder["since"]
    finally:
        release.set()
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
    release, marker = CTX.Event(), tmp_path / "holder-done"
    proc = in_other_process(_hold_dvc_lock, str(tmp_path), release, str(marker))
    try:
        with pytest.raises(TimeoutError), dvc_lock(tmp_path, timeout=0.3):   # a bounded wait gives up
            pass
        assert not marker.exists()
        # released from another thread a moment later, while this one is (if the lock waits) inside dvc_lock:
        # a lock that did not wait would raise here, one that waits gets it once the holder is done
        threading.Timer(0.3, release.set).start()
        with dvc_lock(tmp_path):
            assert marker.read_text() == "done"
    finally:
        release.set()
        proc.join(30)
