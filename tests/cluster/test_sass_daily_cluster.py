"""sass_daily on a real multi-worker Airflow: api-server, scheduler, dag-processor, triggerer and 2 Celery workers,
Redis, PostgreSQL and moto's S3 server on loopback (sass_retrieval.cluster), every task in a workspace of its own
(SASS_TASK_WORKSPACES=1): workers share no disk, only git, the S3 remote, XCom and the database.

- one day: task instances ran on both workers, training on the train queue; every workspace was new and is
  gone; every stage output is in the remote; and the day equals today's single-folder `dvc repro` of it;
- a worker killed (its whole process group, as a machine dies) in the middle of training: the task is retried
  on the other worker and the run succeeds;
- a 3-day backfill on 2 workers with max_active_runs 3: three recorded runs, run at once, each equal to the
  same day run alone.

"Equal": every file of every stage output has the same content hash (DVC's own per-file listing of a folder),
except the files that record when or how long something ran (:data:`WALL_CLOCK`), and metrics.json's rows are
identical.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import dvc_object_key, tiny_airflow_project

from sass_retrieval.cluster import Cluster
from sass_retrieval.orchestration.runs import set_window_end

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
DAG = "sass_daily"
# Files that say when or how long a stage ran: they differ between any two runs, in one folder or not (and
# reports/publish.json, whose version id is a hash of the published files, training reports included).
WALL_CLOCK = ("data/store/ingest.json", "models/*/report.json", "indexes/*/*/build.json", "models/*/dvclive/*",
              "reports/validation/*", "reports/run/*", "reports/publish.json")
# What scores or compares against the model in service: it differs when another model is in service, as it
# would between two runs of one folder; compared without the in-service row (metrics.json, per_pair.npz).
SCORED = ("metrics/*", "plots/*")
ENV = {
    "SASS_TASK_WORKSPACES": "1",
    # a dead worker's task fails after 20 s without a heartbeat (default 300 s), looked for every 5 s
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_airflow_project(tmp_path_factory.mktemp("cluster") / "proj", commit=True,
                                overrides={"orchestration.retry_delay_seconds": 5})


@pytest.fixture(scope="module")
def cluster(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {**ENV, "SASS_PROJECT_DIR": str(project), "SASS_REPO_URL": str(project)}
    with Cluster.start(tmp_path_factory.mktemp("cluster_home"), project, workers=2, env=env) as started:
        started.wait_dag_registered(DAG, timeout=300)
        yield started


@pytest.fixture(scope="module")
def single_folder(project: Path, tmp_path_factory: pytest.TempPathFactory):
    """``day -> (dvc.lock stages, folder)`` of today's single-folder run: ``dvc repro`` in a clone of the same
    commit with the day in params.yaml (each day computed once per module)."""
    done: dict[str, tuple[dict, Path]] = {}

    def run(day: str) -> tuple[dict, Path]:
        if day not in done:
            folder = tmp_path_factory.mktemp(f"single_{day}") / "proj"
            subprocess.run(["git", "clone", "-q", str(project), str(folder)], check=True)
            set_window_end(folder / "params.yaml", day)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SASS_", "AIRFLOW"))}
            env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
            proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=1200)
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
            done[day] = (yaml.safe_load((folder / "dvc.lock").read_text())["stages"], folder)
        return done[day]

    return run


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


def recorded(project: Path, day: str) -> tuple[dict, dict, dict]:
    """The day's dvc.lock stages, metrics and tag metadata, as the cluster's record_run pushed them."""
    tag = f"day-{day}"
    lock = yaml.safe_load(git(project, "show", f"{tag}:dvc.lock"))["stages"]
    metrics = json.loads(git(project, "show", f"{tag}:metrics/metrics.json"))
    return lock, metrics, json.loads(git(project, "tag", "-l", "--format=%(contents)", tag))


def files_of(lock: dict, read_dir) -> dict[str, str]:
    """Every file of every output in ``lock``: path -> md5 (a folder through DVC's .dir listing)."""
    files = {}
    for entry in lock.values():
        for out in entry.get("outs") or []:
            md5 = out["md5"]
            if md5.endswith(".dir"):
                files.update({f"{out['path']}/{e['relpath']}": e["md5"] for e in json.loads(read_dir(md5))})
            else:
                files[out["path"]] = md5
    return files


def per_pair(data: bytes) -> dict:
    """metrics/per_pair.npz of a run, without the model in service's arrays (row ``published``)."""
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files if "/published/" not in k}


def assert_same_day(cluster: Cluster, project: Path, day: str, single_folder, *, in_service: bool = False) -> None:
    """The cluster's run of ``day`` equals the single-folder run: file for file but :data:`WALL_CLOCK`. With
    ``in_service`` (the cluster had published a model before this day ran, the lone run had not), the outputs
    that score or compare against the model in service (:data:`SCORED`) are compared without its row."""
    lock, metrics, _ = recorded(project, day)
    alone, folder = single_folder(day)
    assert set(lock) == set(alone)
    s3 = cluster.s3.client()
    read = lambda md5: s3.get_object(Bucket="sass-dvc", Key=dvc_object_key(md5))["Body"].read()  # noqa: E731
    ours = files_of(lock, read)
    theirs = files_of(alone, lambda md5: (folder / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())
    timed = lambda f: any(fnmatch.fnmatch(f, p) for p in WALL_CLOCK + (SCORED if in_service else ()))  # noqa: E731
    assert {f for f in ours if not timed(f)} == {f for f in theirs if not timed(f)}
    differ = sorted(f for f in ours if f in theirs and ours[f] != theirs[f])
    unexplained = [f for f in differ if not timed(f)]
    assert not unexplained, f"day {day}: files that differ from the single-folder run: {unexplained}"
    assert any(f.endswith("model.pt") for f in ours) and not [f for f in differ if f.endswith((".pt", ".faiss"))]
    rows = lambda m: {k: v for k, v in m["rows"].items() if k != "published"}  # noqa: E731
    assert rows(metrics) == rows(json.loads((folder / "metrics/metrics.json").read_text()))
    ours_pairs = per_pair(read(ours["metrics/per_pair.npz"]))
    theirs_pairs = per_pair((folder / "metrics/per_pair.npz").read_bytes())
    assert ours_pairs.keys() == theirs_pairs.keys()
    assert all(np.array_equal(ours_pairs[k], theirs_pairs[k]) for k in ours_pairs)
    for stage in ("params", "pairs", *[s for s in lock if s.startswith("split@")]):   # no wall clock inside
        assert lock[stage]["outs"] == alone[stage]["outs"], stage
    print(f"day {day}: {len(ours)} files, identical but for {len(differ)} wall-clock"
          f"{' or in-service' if in_service else ''} ones")


def test_one_day_on_two_workers_equals_the_single_folder_run(cluster: Cluster, project: Path,
                                                             single_folder) -> None:
    t0 = time.monotonic()
    run_id = cluster.trigger(DAG, {"end_date": "20220429"})
    state = cluster.wait_run(DAG, run_id, timeout=1500)
    tis = cluster.task_instances(DAG, run_id)
    assert state == "success", [(t.task_id, t.map_index, t.state, t.hostname) for t in tis]
    print(f"one day on 2 workers: {time.monotonic() - t0:.0f}s")
    assert {t.hostname for t in tis} == {"w0", "w1"}, [(t.task_id, t.hostname) for t in tis]
    assert {t.queue for t in tis if t.task_id in ("pretrain", "finetune", "challenger")} == {"train"}
    assert {t.queue for t in tis if t.task_id in ("ingest", "split", "index")} == {"default"}
    # each workspace was made new in its worker's own folder and is gone
    results = [(t, m, v) for (t, m), v in cluster.return_values(DAG, run_id).items()
               if isinstance(v, dict) and "workspace" in v]
    assert len(results) == len([t for t in tis if t.task_id not in ("configure", "record_run")])
    host = {(t.task_id, t.map_index): t.hostname for t in tis}
    for task, index, value in results:
        path = Path(value["workspace"])
        assert not path.exists(), path
        assert path.parent == cluster.worker_dirs[int(host[(task, index)][1:])], (task, path)
        assert value["worker"] == host[(task, index)]
    assert all(list(d.iterdir()) == [] for d in cluster.worker_dirs), "workspaces left behind"
    # every cached output of the day's dvc.lock is in the remote
    lock, _, meta = recorded(project, "20220429")
    keys = {o["Key"] for page in cluster.s3.client().get_paginator("list_objects_v2").paginate(Bucket="sass-dvc")
            for o in page.get("Contents", [])}
    cached = [o for entry in lock.values() for o in entry.get("outs") or []
              if o["path"] not in ("reports/params.ok", "metrics/metrics.json", "plots/table.md",
                                   "plots/per_scenario.json", "plots/metric_vs_k.json", "reports/publish.json")]
    assert cached and all(dvc_object_key(o["md5"]) in keys for o in cached), [o["path"] for o in cached
                                                                      if dvc_object_key(o["md5"]) not in keys]
    assert meta["pushed"] is True and meta["run_id"] == run_id
    assert "published/current" in keys                          # the first day publishes
    assert_same_day(cluster, project, "20220429", single_folder)


def test_a_killed_worker_s_training_task_is_retried_on_the_other_worker(cluster: Cluster) -> None:
    run_id = cluster.trigger(DAG, {"end_date": "20220430"})
    deadline, victim = time.monotonic() + 900, None
    while victim is None and time.monotonic() < deadline:
        running = [t for t in cluster.task_instances(DAG, run_id) if t.task_id == "finetune" and t.state == "running"]
        if running and running[0].hostname:
            victim = int(running[0].hostname[1:])
        time.sleep(0.5)
    assert victim is not None, "finetune never ran"
    cluster.kill_worker(victim)
    try:
        state = cluster.wait_run(DAG, run_id, timeout=1200)
        tries = [t for t in cluster.task_instances(DAG, run_id, history=True) if t.task_id == "finetune"]
        assert state == "success", [(t.try_number, t.state, t.hostname) for t in tries]
        assert tries[0].hostname == f"w{victim}" and tries[-1].hostname == f"w{1 - victim}"
        assert tries[-1].state == "success" and len(tries) >= 2
    finally:
        cluster.start_worker(victim)


def test_three_days_at_once_each_equal_to_the_day_run_alone(cluster: Cluster, project: Path,
                                                            single_folder) -> None:
    before = set(git(project, "tag", "-l", "run-*").split())
    proc = cluster.airflow("backfill", "create", "--dag-id", DAG, "--from-date", "2022-04-26T00:00:00+00:00",
                           "--to-date", "2022-04-28T12:00:00+00:00", "--max-active-runs", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with contextlib.closing(cluster.connect()) as conn:
        def finished() -> bool:
            with conn.cursor() as cur:
                cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_type = 'backfill'", (DAG,))
                states = [r[0] for r in cur.fetchall()]
            cluster.check_alive()
            return len(states) == 3 and all(s in ("success", "failed") for s in states)

        cluster.wait_for(finished, what="the 3 backfill runs", timeout=2400, interval=5)
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = %s "
                        "AND run_type = 'backfill' ORDER BY logical_date", (DAG,))
            runs = cur.fetchall()
    assert [r[1] for r in runs] == ["success"] * 3, runs
    overlapping = [(a[0], b[0]) for i, a in enumerate(runs) for b in runs[i + 1:] if a[2] < b[3] and b[2] < a[3]]
    assert overlapping, f"the days did not run at once: {runs}"
    new = sorted(set(git(project, "tag", "-l", "run-*").split()) - before)
    days = sorted({t[4:12] for t in new})
    assert len(new) == 3 and days == ["20220426", "20220427", "20220428"], new
    for day in days:   # the earlier tests' days had published a model: it was in service
        assert_same_day(cluster, project, day, single_folder, in_service=True)
