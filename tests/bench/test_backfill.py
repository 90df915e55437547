"""bench/backfill.py: its clone carries the committed code with the run's settings, Airflow is stopped with
everything it started, and a smoke run backfills one KuaiRand day at a tiny size under a real scheduler."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support import load_bench, needs_kuairand


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


@pytest.mark.slow
@needs_kuairand
def test_smoke_backfill_of_one_day_then_list_and_restore(tmp_path: Path) -> None:
    """One day (train 1 day, 1 epoch each) under Airflow: the run succeeds, is listed, the gate decides,
    the day restores from the DVC remote, and the result records no machine path."""
    out = tmp_path / "results" / "backfill"
    assert load_bench("backfill").main([
        "--from-date", "2022-05-05", "--to-date", "2022-05-06", "--restore-day", "20220505", "--train-days", "1",
        "--test-days", "1", "--finetune-epochs", "1", "--pretrain-epochs", "1", "--timeout-minutes", "30",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert [r[1] for r in payload["airflow_runs"]] == ["success"] and payload["failed"] == []
    assert len(payload["decisions"]) == 1
    assert not payload["settings"]["data.kuairand_dir"].startswith("/")
    md = out.with_suffix(".md").read_text()
    assert "sass runs restore 20220505" in md and str(tmp_path) not in md
