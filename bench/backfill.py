"""Backfill KuaiRand days under a real Airflow scheduler, then list, compare and restore them.

    python bench/backfill.py                       # days 2022-05-01 .. 2022-05-05, restore 20220503

What a user does by hand, in one command: a clean clone of the committed code (so the run is the commit
it names), its params.yaml pointed at KuaiRand-Pure with a short window and `train.mode: incremental`,
`scripts/airflow-standalone.sh` (scheduler, dag-processor, triggerer, API server; LocalExecutor on
SQLite) with `SASS_DAG_END_DATE` set so the scheduler adds no run of its own, `airflow dags unpause` and
`airflow backfill create --max-active-runs 1`. When every run has ended: `sass runs list`, the publish
decisions, and `sass runs restore` of one day from the DVC remote. Airflow and every process it started
are stopped in a finally block. Writes bench/results/backfill.{md,json}.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import bench_parser, bench_provenance, recorded_path  # noqa: E402

from sass_retrieval.config import update_params_file  # noqa: E402
from sass_retrieval.experiment import write_results  # noqa: E402

KUAIRAND_NAMES = ["1", "0", "4", "6", "2", "other"]


def clone(work: Path, params: dict[str, object]) -> Path:
    """A clone of HEAD (committed code only) with ``params`` (dotted keys) set in its params.yaml."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    project = work / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    update_params_file(project / "params.yaml", params)
    return project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:     # tables not migrated yet
            return []


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole session Airflow runs in (scheduler, workers, task runners), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def backfill(project: Path, home: Path, env: dict[str, str], start: date, end: date, timeout_s: float,
             log: Path) -> tuple[list[tuple], float]:
    """Start Airflow, run the backfill [start, end), wait for every run to end; return runs and seconds."""
    db = home / "airflow.db"
    days = (end - start).days
    airflow = [sys.executable, "-m", "airflow"]
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(project / "scripts" / "airflow-standalone.sh")], cwd=project, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not query(db, "SELECT 1 FROM dag WHERE dag_id='sass_daily'"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Airflow did not register sass_daily (see {log}):\n{tail(log)}")
            time.sleep(3)
        subprocess.run([*airflow, "dags", "unpause", "sass_daily"], env=env, cwd=project, check=True,
                       capture_output=True, timeout=300)
        t0 = time.monotonic()
        subprocess.run([*airflow, "backfill", "create", "--dag-id", "sass_daily", "--from-date", start.isoformat(),
                        "--to-date", end.isoformat(), "--max-active-runs", "1"],
                       env=env, cwd=project, check=True, capture_output=True, timeout=300)
        print(f"backfill of {days} days created; waiting (Airflow log: {log})", flush=True)
        sql = "SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id='sass_daily' ORDER BY run_id"
        seen: dict[str, str] = {}
        while True:
            rows = query(db, sql)
            for run_id, state, *_ in rows:
                if seen.get(run_id) != state:
                    print(f"  {time.monotonic() - t0:6.0f}s  {run_id}: {state}", flush=True)
                    seen[run_id] = state
            if len(rows) >= days and all(r[1] in ("success", "failed") for r in rows):
                return rows, time.monotonic() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"Airflow exited during the backfill (see {log}):\n{tail(log)}")
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"backfill not finished after {timeout_s:.0f}s: {rows}")
            time.sleep(10)
    finally:
        stop(proc)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace(" ", "T"))


def sass_runs(project: Path, env: dict[str, str], *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "pipelines.runs", "--root", str(project), *args], env=env,
                         cwd=project, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"sass runs {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res.stdout


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "backfill")
    p.add_argument("--from-date", type=date.fromisoformat, default=date(2022, 5, 1))
    p.add_argument("--to-date", type=date.fromisoformat, default=date(2022, 5, 6),
                   help="exclusive: the last day backfilled is the day before")
    p.add_argument("--restore-day", default="20220503")
    p.add_argument("--train-days", type=int, default=4)
    p.add_argument("--test-days", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--timeout-minutes", type=float, default=120)
    args = p.parse_args(argv)
    prov = bench_provenance(__file__, argv)
    settings = {"data.source": "kuairand", "data.kuairand_dir": str(Path(args.data_dir).resolve()),
                "window.train_days": args.train_days, "window.test_days": args.test_days,
                "scenarios.names": KUAIRAND_NAMES, "train.mode": "incremental",
                "finetune.epochs": args.finetune_epochs, "pretrain.epochs": args.pretrain_epochs}
    work = Path(args.work).resolve()
    project = clone(work, settings)
    home = work / "airflow_home"
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW_PORT=str(port), SASS_PROJECT_DIR=str(project),
               SASS_DAG_END_DATE=args.to_date.isoformat(), VIRTUAL_ENV=str(Path(sys.executable).parents[1]),
               PATH=f"{venv_bin}:{env.get('PATH', '')}", SASS_ALLOW_EXTERNAL_PATHS="1",
               PYTHONPATH=f"{project / 'src'}:{project}",
               AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/")
    runs, seconds = backfill(project, home, env, args.from_date, args.to_date, args.timeout_minutes * 60,
                             work / "airflow.log")
    listed = sass_runs(project, env, "list")
    listed_json = json.loads(sass_runs(project, env, "list", "--json"))
    decisions_file = project / "published" / "decisions.jsonl"
    decisions = [json.loads(line) for line in decisions_file.read_text().splitlines()] if decisions_file.exists() else []
    restored = sass_runs(project, env, "restore", args.restore_day, "--to", str(work / f"restored-{args.restore_day}"))
    restored = restored.replace(str(work), "<work>")

    def span(r: tuple) -> str:
        if not (r[2] and r[3]):
            return "-"
        return f"{(_ts(r[3]) - _ts(r[2])).total_seconds() / 60:.1f}"

    run_rows = "\n".join(f"| {r[0]} | {r[1]} | {span(r)} |" for r in runs)
    gate = "\n".join(f"| {d.get('window_end')} | {'yes' if d.get('publish') else 'no'} | {d.get('reason')} |"
                     for d in decisions)
    body = (f"Settings: {', '.join(f'{k}={v}' for k, v in settings.items() if k != 'data.kuairand_dir')}; "
            f"days {args.from_date} .. {args.to_date - timedelta(days=1)} (each day: the {args.train_days} days "
            f"before its {args.test_days} test days); Airflow `standalone` (LocalExecutor, SQLite) on a clone of "
            f"the commit below. Whole backfill: **{seconds / 60:.1f} min**.\n\n"
            f"Airflow runs:\n\n| run | state | minutes |\n|---|---|---:|\n{run_rows}\n\n"
            f"`sass runs list` (macro NDCG@50 of every row; each day is scored on its own test window):\n\n"
            f"```\n{listed.rstrip()}\n```\n\n"
            f"Publish decisions (the candidate against the published model, re-scored on the same window):\n\n"
            f"| day | published | reason |\n|---|---|---|\n{gate}\n\n"
            f"`sass runs restore {args.restore_day} --to <dir>`:\n\n```\n{restored.rstrip()}\n```\n")
    print(body)
    failed = [r[0] for r in runs if r[1] != "success"]
    recorded = {**settings, "data.kuairand_dir": recorded_path(str(settings["data.kuairand_dir"]))}
    write_results(Path(args.out), "Backfill of KuaiRand-Pure days under a real Airflow scheduler", prov, body,
                  {"settings": recorded, "seconds": seconds, "airflow_runs": [list(r) for r in runs],
                   "runs": listed_json, "decisions": decisions, "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
