"""One synthetic day on a multi-worker Airflow: 1 Celery worker against 2, and where each task's time goes.

    python bench/cluster.py                 # the synthetic default, day 20220509
    python bench/cluster.py --tiny          # the Airflow tests' tiny params (a smoke run)

In one run, on one machine: the same day through `dvc repro` in one folder (today's one-machine run), then
through `sass_daily` on a cluster of 1 worker and on a cluster of 2 (sass_retrieval.cluster: CeleryExecutor,
Redis, PostgreSQL, moto's S3 as the DVC remote; every task in a workspace of its own). Each worker runs one
task at a time (``--concurrency 1``), so a worker stands for one machine's worth of the 2 cores here. Per
task of the 2-worker run: the worker, and the seconds of its checkout, pull, stage and push (the task's own
timers, handed on with its dvc.lock entry). Writes bench/results/cluster.{md,json}.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_cli import bench_parser, bench_provenance  # noqa: E402
from quickstart import copy_project, repro  # noqa: E402

from sass_retrieval.experiment import write_results  # noqa: E402
from sass_retrieval.orchestration.runs import set_window_end  # noqa: E402

DAG = "sass_daily"
PHASES = ("checkout", "pull", "stage", "push")


def cluster_day(project: Path, home: Path, workers: int, day: str, concurrency: int) -> dict:
    """Start a cluster of ``workers``, run ``day`` once, stop it; wall seconds and the tasks' timers."""
    from sass_retrieval.cluster import Cluster

    env = {"SASS_TASK_WORKSPACES": "1", "SASS_PROJECT_DIR": str(project), "SASS_REPO_URL": str(project)}
    with Cluster.start(home, project, workers=workers, env=env, concurrency=concurrency) as cluster:
        cluster.wait_dag_registered(DAG, timeout=300)
        t0 = time.perf_counter()
        run_id = cluster.trigger(DAG, {"end_date": day})
        state = cluster.wait_run(DAG, run_id, timeout=7200)
        wall = time.perf_counter() - t0
        tis = cluster.task_instances(DAG, run_id)
        if state != "success":
            raise RuntimeError(f"{workers}-worker run ended {state}: "
                               + ", ".join(f"{t.task_id}[{t.map_index}]={t.state}" for t in tis))
        values = cluster.return_values(DAG, run_id)
    tasks = []
    for t in tis:
        value = values.get((t.task_id, t.map_index))
        seconds = value.get("seconds", {}) if isinstance(value, dict) else {}
        tasks.append({"task": t.task_id if t.map_index < 0 else f"{t.task_id}[{t.map_index}]",
                      "worker": t.hostname, "queue": t.queue,
                      "task_seconds": (t.end_date - t.start_date).total_seconds(),
                      **{p: seconds.get(p) for p in PHASES}})
    return {"workers": workers, "wall_seconds": wall, "tasks": tasks}


def single_folder_day(project: Path, work: Path, day: str) -> float:
    """Today's one-machine run of ``day``: `dvc repro` in a clone of the same commit."""
    import subprocess

    folder = work / "single"
    subprocess.run(["git", "clone", "-q", str(project), str(folder)], check=True)
    set_window_end(folder / "params.yaml", day)
    t0 = time.perf_counter()
    repro(folder, work / "single.log")
    return time.perf_counter() - t0


def tables(single: float, runs: list[dict]) -> str:
    one = next(r for r in runs if r["workers"] == 1)["wall_seconds"]
    lines = ["| run | wall s | vs 1 worker |", "|---|---:|---:|",
             f"| one folder, `dvc repro` | {single:.0f} | {single / one:.2f}x |"]
    lines += [f"| sass_daily, {r['workers']} worker{'s' * (r['workers'] > 1)} | {r['wall_seconds']:.0f} | "
              f"{r['wall_seconds'] / one:.2f}x |" for r in runs]
    two = next(r for r in runs if r["workers"] == 2)
    lines += ["", "Per task of the 2-worker run (seconds; checkout, pull, stage and push are the task's timers, the "
              "rest of a task's time is Airflow starting it and Python importing):", "",
              "| task | worker | queue | task | checkout | pull | stage | push |", "|---|---|---|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for t in sorted(two["tasks"], key=lambda t: t["task"]):
        lines.append(f"| {t['task']} | {t['worker']} | {t['queue']} | {t['task_seconds']:.1f} | "
                     + " | ".join(fmt(t[p]) for p in PHASES) + " |")
    staged = [t for t in two["tasks"] if t["stage"] is not None]
    total = {p: sum(t[p] or 0 for t in staged) for p in PHASES}
    lines += ["", f"Summed over the {len(staged)} stage tasks: " + ", ".join(f"{p} {total[p]:.0f} s" for p in PHASES)
              + f"; pull and push are {(total['pull'] + total['push']) / sum(total.values()):.0%} of the tasks' timed "
              f"work (median per task: pull {statistics.median(t['pull'] or 0 for t in staged):.1f} s, "
              f"push {statistics.median(t['push'] or 0 for t in staged):.1f} s)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = bench_parser(__doc__, "cluster", kuairand=False)
    p.add_argument("--day", default="20220509", help="the synthetic day to run (YYYYMMDD)")
    p.add_argument("--tiny", action="store_true", help="the Airflow tests' tiny params (a smoke run)")
    p.add_argument("--concurrency", type=int, default=1, help="tasks at once per worker")
    args = p.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    if args.tiny:
        from support import tiny_airflow_project

        project = tiny_airflow_project(work / "project", commit=True)
    else:
        project = copy_project(work / "project")
    single = single_folder_day(project, work, args.day)
    print(f"one folder: {single:.0f}s", flush=True)
    runs = []
    for workers in (1, 2):
        runs.append(cluster_day(project, work / f"cluster{workers}", workers, args.day, args.concurrency))
        print(f"{workers} worker(s): {runs[-1]['wall_seconds']:.0f}s", flush=True)
    body = tables(single, runs)
    print(body)
    prov = bench_provenance(__file__, argv)
    write_results(Path(args.out), "One synthetic day on 1 and 2 Celery workers", prov,
                  f"Day {args.day}{' (tiny params)' if args.tiny else ''}; each worker runs "
                  f"{args.concurrency} task(s) at once.\n\n{body}",
                  {"day": args.day, "tiny": args.tiny, "concurrency": args.concurrency,
                   "single_folder_seconds": single, "runs": runs})


if __name__ == "__main__":
    main()
