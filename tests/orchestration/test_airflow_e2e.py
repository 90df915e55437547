"""End to end on tiny synthetic data, with the real dvc.yaml and the real DAG (slow: a few minutes each).

- `airflow dags test sass_daily <date>`: every stage of dvc.yaml through the DAG in-process, then the day
  is pushed, committed and tagged day-<date> in the project's git, listed and restored (dvc get --rev); then
  a run with end_date=auto in the same project.
- A real deployment on loopback: `airflow api-server` (the task execution API), `airflow scheduler`
  (LocalExecutor: mapped instances run in parallel) and `airflow dag-processor`, on SQLite in a temporary
  AIRFLOW_HOME; one run is triggered with `airflow dags trigger` and must succeed within 15 minutes.
  Every process started is killed (with its children) in a finally block.

Each test's AIRFLOW_HOME holds a copy of the database the session migrated once (conftest.py).

Each test works in a temporary copy of the project (git-tracked and untracked-but-not-ignored files), with
params.yaml shrunk so that the whole pipeline takes a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support import tiny_airflow_project as tiny_project

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

def airflow_env(home: Path, project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(project / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__EXECUTOR="LocalExecutor",
               SASS_PROJECT_DIR=str(project), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
               **extra)
    return env


def task_states(db_path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT task_id, map_index, state FROM task_instance").fetchall()
    return {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in rows}


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


def check_recorded_day(project: Path, day: str) -> None:
    tag = f"day-{day}"
    files = set(git(project, "ls-tree", "-r", "--name-only", tag).split())
    assert {"dvc.lock", "params.yaml", "metrics/metrics.json", "reports/publish.json"} <= files
    meta = json.loads(git(project, "tag", "-l", "--format=%(contents)", tag))
    assert meta["pushed"] is True
    assert yaml.safe_load((project / "params.yaml").read_text())["window"]["end_date"] == int(day)
    metrics = json.loads(git(project, "show", f"{tag}:metrics/metrics.json"))
    assert metrics["window"]["test_end"] == int(day)
    publish = json.loads(git(project, "show", f"{tag}:reports/publish.json"))
    assert publish["winner"] in ("sass", "dssm_mixed")        # first day: the best of candidate and challenger
    assert {"sass", "dssm_mixed"} <= set(metrics["rows"]) and "dssm_single" not in metrics["rows"]
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], cwd=project, capture_output=True,
                            text=True)
    assert status.returncode == 0 and not status.stdout.strip(), f"dvc.lock out of date:\n{status.stdout}"


def dags_test(env: dict[str, str], project: Path, logical_date: str, conf: dict | None = None) -> None:
    extra = ["--conf", json.dumps(conf)] if conf else []
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "sass_daily", logical_date, *extra],
                          env=env, cwd=project, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def test_dags_test_runs_any_day_lists_and_restores_it_then_auto(tmp_path: Path,
                                                                airflow_home: Callable[[Path], Path]) -> None:
    """Unpaused on a fresh clone, the synthetic default runs its scheduled day, whatever the date: ingest
    generates that day's window, every stage of dvc.yaml runs through the DAG, and the day is pushed, committed,
    tagged day-<day>, listed and restored (dvc get --rev). A trigger with end_date=auto then runs the generator's
    fixed range and is recorded under its last day (20220430 for the tiny params), not under 'auto'.

    The fixed day reached through the data interval instead (logical date 2022-05-01 without conf) would run the
    same stages on the same data as the auto run, so it is not run again here; the data interval -> day mapping
    at that date is checked on a fake project (test_dag.py)."""
    project = tiny_project(tmp_path / "proj")
    home = airflow_home(tmp_path / "airflow_home")
    env = airflow_env(home, project)
    # a recent scheduled run: logical date D 03:00 UTC -> data interval [D-1 02:00, D 02:00) -> day D-1
    today = datetime.datetime.now(datetime.UTC).date()
    logical = datetime.datetime.combine(today - datetime.timedelta(days=1), datetime.time(3), datetime.UTC)
    day = (today - datetime.timedelta(days=2)).strftime("%Y%m%d")
    dags_test(env, project, logical.isoformat())
    states = task_states(home / "airflow.db")
    assert set(states.values()) == {"success"}, states
    assert "split[4]" in states and "index[4]" in states and "challenger" in states
    assert not [t for t in states if t.startswith("reference")]  # benchmark rows are on demand only
    check_recorded_day(project, day)
    ingested = json.loads((project / "data/store/ingest.json").read_text())
    assert ingested["generated"][-1] == int(day)

    cli = [sys.executable, "-m", "pipelines.runs", "--root", str(project)]
    listed = subprocess.run([*cli, "list"], cwd=project, capture_output=True, text=True, check=True).stdout
    assert day in listed and "sass ndcg@50" in listed and "yes" in listed, listed
    restored = subprocess.run([*cli, "restore", day, "--to", str(tmp_path / "restored")], cwd=project,
                              capture_output=True, text=True, check=True).stdout
    assert "models/sass" in restored and "indexes/sass/s0" in restored, restored
    assert (tmp_path / "restored/models/sass/model.pt").stat().st_size > 0
    assert (tmp_path / "restored/models/dssm_mixed/model.pt").exists()
    assert (tmp_path / "restored/models/pretrain/model.pt").exists()
    assert any((tmp_path / "restored/indexes/dssm_mixed/s0").iterdir())
    metrics = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--all-tags", "--json"], cwd=project,
                             capture_output=True, text=True, check=True).stdout
    assert f"day-{day}" in metrics

    dags_test(env, project, "2022-05-01T03:00:00+00:00", {"end_date": "auto"})
    meta = json.loads(git(project, "tag", "-l", "--format=%(contents)", "day-20220430"))
    assert meta["day"] == "20220430" and meta["end_date"] == "auto"
    metrics = json.loads(git(project, "show", "day-20220430:metrics/metrics.json"))
    assert metrics["window"]["test_end"] == 20220430
    assert set(task_states(home / "airflow.db").values()) == {"success"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(proc: subprocess.Popen) -> None:
    """Terminate a process we started and every descendant it spawned (workers, task runners)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=20)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def tail(path: Path, n: int = 60) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def run_deployment(env: dict[str, str], project: Path, db_path: Path, logs: dict[str, Path]) -> str | None:
    """Start api-server, scheduler and dag-processor; trigger one run; return its final state (or None)."""
    procs: dict[str, subprocess.Popen] = {}
    state = None

    def alive() -> None:
        assert all(p.poll() is None for p in procs.values()), {n: tail(logs[n]) for n in logs}

    with contextlib.ExitStack() as files:
        try:
            for name, log in logs.items():
                out = files.enter_context(open(log, "w"))
                procs[name] = subprocess.Popen([sys.executable, "-m", "airflow", name], env=env, cwd=project,
                                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 180
            while True:
                with contextlib.closing(sqlite3.connect(db_path)) as db:
                    if db.execute("SELECT 1 FROM dag WHERE dag_id='sass_daily' AND is_paused=0").fetchone():
                        break
                if time.monotonic() > deadline:
                    pytest.fail("the dag-processor did not register sass_daily:\n" + tail(logs["dag-processor"]))
                alive()
                time.sleep(2)
            subprocess.run([sys.executable, "-m", "airflow", "dags", "trigger", "sass_daily",
                            "--conf", json.dumps({"end_date": "20220429"})],
                           env=env, cwd=project, check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + 15 * 60
            while time.monotonic() < deadline:
                with contextlib.closing(sqlite3.connect(db_path)) as db:
                    row = db.execute("SELECT state FROM dag_run WHERE dag_id='sass_daily'").fetchone()
                state = row[0] if row else None
                if state in ("success", "failed"):
                    break
                alive()
                time.sleep(5)
        finally:
            for p in procs.values():
                kill_tree(p)
    return state


def test_scheduler_runs_a_triggered_day(tmp_path: Path, airflow_home: Callable[[Path], Path]) -> None:
    project = tiny_project(tmp_path / "proj")
    home = airflow_home(tmp_path / "airflow_home")
    port = free_port()
    env = airflow_env(
        home, project,
        AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(port), AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",      # only the triggered run, no 2026 schedule
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
    )
    db_path = home / "airflow.db"
    logs = {name: tmp_path / f"{name}.log" for name in ("api-server", "scheduler", "dag-processor")}
    t0 = time.monotonic()
    state = run_deployment(env, project, db_path, logs)
    seconds = time.monotonic() - t0
    states = task_states(db_path)
    task_logs = "\n".join(f"--- {p}\n{tail(p, 40)}" for p in sorted((home / "logs").rglob("*.log"))
                          if state != "success" and "record_run" not in str(p))[-15000:]
    assert state == "success", f"run state {state} after {seconds:.0f}s; tasks {states}\n{task_logs}\n" + \
        "\n".join(f"--- {n}\n{tail(log)}" for n, log in logs.items())
    assert set(states.values()) == {"success"}, states
    check_recorded_day(project, "20220429")
    # mapped instances ran side by side (LocalExecutor), and their DVC bookkeeping did not collide
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        spans = db.execute("SELECT task_id, map_index, start_date, end_date FROM task_instance "
                           "WHERE map_index >= 0").fetchall()
    overlapping = [(a[:2], b[:2]) for i, a in enumerate(spans) for b in spans[i + 1:]
                   if a[0] == b[0] and a[2] < b[3] and b[2] < a[3]]
    assert overlapping, f"no mapped instances overlapped in time: {spans}"
    print(f"scheduler run: {seconds:.0f}s; overlapping mapped instances: {len(overlapping)}")
