"""bench/backfill.py: its clone carries the committed code with the run's settings, and Airflow is stopped
with everything it started."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml
from support import load_bench


def test_clone_is_the_committed_code_with_the_settings_applied(tmp_path: Path) -> None:
    backfill = load_bench("backfill")
    project = backfill.clone(tmp_path / "w", {"window.train_days": 4, "train.mode": "incremental",
                                              "scenarios.names": ["1", "0"]})
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["window"]["train_days"] == 4 and params["train"]["mode"] == "incremental"
    assert params["scenarios"]["names"] == ["1", "0"]
    assert "# One file for every knob" in (project / "params.yaml").read_text()   # comments kept
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout
    assert head == subprocess.run(["git", "rev-parse", "HEAD"], cwd=backfill.ROOT, capture_output=True,
                                  text=True).stdout


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    backfill = load_bench("backfill")
    pidfile = tmp_path / "child.pid"
    proc = subprocess.Popen(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], start_new_session=True)
    deadline = time.time() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.time() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    backfill.stop(proc)
    assert proc.poll() is not None
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
