"""The local multi-worker Airflow for real (slow): PostgreSQL, Redis, moto, api-server, scheduler,
dag-processor, triggerer and two Celery workers, started once for the module (src/sass_retrieval/cluster).

- A DAG of 6 mapped tasks (3 s each) runs on both workers: the task instances name w0 and w1, and each task
  ran in its worker's folder with its worker's variables.
- A worker dies (SIGKILL of its process group and every process under it) while it runs a long task: the
  scheduler notices the missing heartbeats, the task's retry runs on the other worker, the run succeeds;
  the dead worker starts again.
- Stopping leaves no process of the cluster alive (the last test: it stops the module's cluster).

The test DAGs are written into a temporary dags folder; the project's DAGs are not loaded. Under SASS_CI=1 a
missing redis-server or PostgreSQL fails the tests (tests/conftest.py); locally they skip.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil
import pytest

from sass_retrieval.cluster import Cluster
from sass_retrieval.cluster import binaries as cluster_binaries

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SPREAD_DAG, LONG_DAG = "cluster_spread", "cluster_worker_dies"
DAGS = f'''
import datetime
import os
import time

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="{SPREAD_DAG}", schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False)
def spread():
    @task
    def probe(i: int) -> dict:
        time.sleep(3)
        return {{"i": i, "worker": os.environ.get("SASS_WORKER_NAME"), "cwd": os.getcwd(),
                 "workspace": os.environ.get("SASS_WORKSPACE_ROOT")}}

    probe.expand(i=list(range(6)))


@dag(dag_id="{LONG_DAG}", schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False)
def worker_dies():
    @task(retries=1, retry_delay=datetime.timedelta(seconds=1))
    def long_task() -> str:
        # the first try outlives the test (its worker is killed); the retry is short
        time.sleep(600 if get_current_context()["ti"].try_number == 1 else 2)
        return os.environ.get("SASS_WORKER_NAME", "")

    long_task()


spread()
worker_dies()
'''
# a dead worker's task is failed after 20 s without a heartbeat (default 300 s), looked for every 5 s
FAST_FAILURE = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    missing = cluster_binaries.missing()
    if missing:
        pytest.skip("; ".join(missing) + f" ({cluster_binaries.INSTALL_HINT})")
    root = tmp_path_factory.mktemp("cluster")
    dags = root / "dags"
    dags.mkdir()
    (dags / "cluster_test_dags.py").write_text(DAGS)
    with Cluster.start(root / "home", ROOT, workers=2, env=FAST_FAILURE, dags=dags, timeout=600) as started:
        yield started


def xcom_values(cluster: Cluster, dag_id: str, run_id: str) -> dict[int, object]:
    with contextlib.closing(cluster.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'return_value'",
                    (dag_id, run_id))
        return {m: (json.loads(v) if isinstance(v, str) else v) for m, v in cur.fetchall()}


@pytest.mark.timeout(900)
def test_mapped_tasks_run_on_both_workers_each_in_its_folder(cluster: Cluster) -> None:
    cluster.wait_dag_registered(SPREAD_DAG, timeout=180)
    run_id = cluster.trigger(SPREAD_DAG)
    state = cluster.wait_run(SPREAD_DAG, run_id, timeout=300)
    tis = cluster.task_instances(SPREAD_DAG, run_id)
    assert state == "success", tis
    assert [t.map_index for t in tis] == list(range(6)) and {t.state for t in tis} == {"success"}, tis
    assert {t.hostname for t in tis} == {"w0", "w1"}, tis
    assert {t.queue for t in tis} == {"default"}
    folders = {f"w{i}": str(folder) for i, folder in enumerate(cluster.worker_dirs)}
    values = xcom_values(cluster, SPREAD_DAG, run_id)
    by_index = {t.map_index: t.hostname for t in tis}
    for index, value in values.items():
        assert value["worker"] == by_index[index], (value, tis)
        assert value["cwd"] == value["workspace"] == folders[value["worker"]], value
    assert sorted(values) == list(range(6))


@pytest.mark.timeout(900)
def test_a_dead_workers_task_is_retried_on_the_other_worker(cluster: Cluster) -> None:
    cluster.wait_dag_registered(LONG_DAG, timeout=180)
    run_id = cluster.trigger(LONG_DAG)
    running = None

    def started() -> bool:
        nonlocal running
        tis = cluster.task_instances(LONG_DAG, run_id)
        running = next((t for t in tis if t.state == "running" and t.hostname in ("w0", "w1")), None)
        return running is not None

    cluster.wait_for(started, what="the long task running on a worker", timeout=180)
    assert running is not None
    victim = int(running.hostname[1:])
    cluster.kill_worker(victim)
    assert not cluster.processes[f"worker-w{victim}"].alive()

    state = cluster.wait_run(LONG_DAG, run_id, timeout=300)
    tries = cluster.task_instances(LONG_DAG, run_id, history=True)
    assert state == "success", tries
    assert [(t.try_number, t.hostname) for t in tries] == [(1, f"w{victim}"), (2, f"w{1 - victim}")], tries
    assert tries[0].state != "success" and tries[1].state == "success", tries

    cluster.start_worker(victim, wait=True, timeout=180)        # the machine is back
    cluster.check_alive()


@pytest.mark.timeout(300)
def test_stop_leaves_no_process_of_the_cluster(cluster: Cluster) -> None:
    family = [p for m in [*cluster.processes.values(),
                          *(s.process for s in (cluster.postgres, cluster.redis, cluster.s3) if s)]
              for p in m.remember_descendants()]
    assert len(family) > 8                     # services, components, workers and their children
    cluster.stop()
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    home = str(cluster.home)
    strays = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(home in arg for arg in p.info["cmdline"] or []) or p.environ().get("AIRFLOW_HOME") == home:
                strays.append((p.pid, p.info["cmdline"]))
    assert not strays
    assert not (cluster.home / "cluster.env").exists()
