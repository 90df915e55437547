"""A multi-worker Airflow on one machine: CeleryExecutor, a Redis broker, a PostgreSQL metadata database and
an S3 stand-in, each a real server on 127.0.0.1.

Why: the daily DAG is meant for several machines, which share nothing but the database, the broker and S3.
LocalExecutor on SQLite (``make airflow``) hides everything that breaks there: a task reading a file another
worker wrote, a worker dying in the middle of a task, two workers taking tasks of one run. This cluster has
the same moving parts with every worker in its own working folder, so tests, benchmarks and a person trying
it out see what a deployment would.

::

    with Cluster.start(home, project, workers=2) as cluster:
        cluster.wait_dag_registered("sass_daily")
        run_id = cluster.trigger("sass_daily", {"end_date": "20220505"})
        assert cluster.wait_run("sass_daily", run_id) == "success"

Layout of ``home`` (AIRFLOW_HOME): ``logs/<component>.log`` (one per process; Airflow's task logs are beside
them), ``workers/w<i>`` (each worker's working folder: its cwd and ``SASS_WORKSPACE_ROOT``),
``services/`` (PostgreSQL's data, Redis's config), ``cluster-secrets.json`` and the admin password file (mode
600), ``cluster.env`` (mode 600, while running: ``source`` it to run ``airflow`` commands against the cluster).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import secrets as _secrets
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import airflow_components as components
from . import metadata, processes
from .airflow_env import airflow_environment, api_url, cli_environment
from .credentials import ADMIN_USER, admin_password, cluster_secrets, write_private
from .hostname import WORKER_NAME_VARIABLE
from .ports import free_ports, port_free
from .postgres import PostgresServer, start_postgres
from .processes import ClusterError, ManagedProcess
from .redis_server import RedisServer, start_redis
from .s3_server import REMOTE_VARIABLE, S3Server, spawn_s3, wait_s3

ENV_FILE = "cluster.env"
WORKSPACE_VARIABLE = "SASS_WORKSPACE_ROOT"
FINAL_RUN_STATES = ("success", "failed")


class Cluster:
    """A started cluster; :meth:`start` makes one, :meth:`stop` (or leaving the ``with`` block) ends every
    process it started."""

    def __init__(self, home: Path, project: Path, *, workers: int, queues: Sequence[str], concurrency: int,
                 dags: Path, api_port: int | None, extra_env: Mapping[str, str]) -> None:
        self.home = Path(home).resolve()
        self.project = Path(project).resolve()
        self.dags = Path(dags).resolve()
        self.workers = workers
        self.queues = list(queues)
        self.concurrency = concurrency
        self.extra_env = dict(extra_env)
        self.api_port = api_port
        self.env: dict[str, str] = {}
        self.s3_env: dict[str, str] = {}
        self.admin_password = ""
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.s3: S3Server | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.killed: set[str] = set()
        self._stopped = False

    # -- starting ------------------------------------------------------------------------------------------
    @classmethod
    def start(cls, home: Path, project: Path, workers: int = 2, queues: Sequence[str] | None = None,
              env: Mapping[str, str] | None = None, *, dags: Path | None = None, concurrency: int = 2,
              api_port: int | None = None, timeout: float = 600.0) -> Cluster:
        """Starts the services, migrates the database, starts the Airflow components and ``workers`` Celery
        workers, and returns once the api-server reports every component healthy and every worker answers.

        ``queues``: one comma-separated list per worker (or one for all; default ``default,train``).
        ``env``: extra variables for every component, overriding the cluster's (e.g. ``AIRFLOW__...``
        settings, a real S3's ``SASS_DVC_REMOTE_URL``: then no moto server is started).
        ``dags``: the DAGs folder (default ``<project>/dags``). ``api_port``: default a free port.
        On any failure everything started so far is stopped and :class:`ClusterError` names what failed.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        queues = list(queues or [components.DEFAULT_QUEUES])
        if len(queues) == 1:
            queues *= workers
        if len(queues) != workers:
            raise ValueError(f"queues: one list per worker ({workers}) or one for all, got {len(queues)}")
        cluster = cls(home, project, workers=workers, queues=queues, concurrency=concurrency,
                      dags=dags or Path(project) / "dags", api_port=api_port, extra_env=env or {})
        # a script that ends without stop() (an exception it does not catch) must not leave servers behind
        atexit.register(cluster.stop)
        try:
            cluster._start(timeout)
        except BaseException:
            cluster.stop(grace=5)
            raise
        return cluster

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.home.mkdir(parents=True, exist_ok=True)
        secrets = cluster_secrets(self.home)
        self.admin_password = admin_password(self.home)
        pg_port, redis_port, s3_port, any_port = free_ports(4)
        if self.api_port is None:
            self.api_port = any_port
        elif not port_free(self.api_port):
            raise ClusterError(f"api-server: port {self.api_port} of 127.0.0.1 is in use (choose another)")
        if REMOTE_VARIABLE not in self.extra_env:
            self.s3 = spawn_s3(self.home, self.log("s3"), s3_port, access_key=secrets["aws_access_key_id"],
                               secret_key=secrets["aws_secret_access_key"],
                               env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
        self.redis = start_redis(self.home, self.log("redis"), redis_port, password=secrets["redis_password"])
        self.postgres = start_postgres(self.home, self.log("postgres"), pg_port,
                                       superuser_password=secrets["postgres_superuser_password"],
                                       password=secrets["postgres_airflow_password"])
        if self.s3 is not None:
            wait_s3(self.s3)
            self.s3_env = self.s3.env
        self.env = airflow_environment(home=self.home, project=self.project, dags=self.dags,
                                       db_url=self.postgres.sqlalchemy_url,
                                       db_async_url=self.postgres.async_sqlalchemy_url, broker_url=self.redis.url,
                                       result_backend=self.postgres.celery_result_backend,
                                       api_port=self.api_port, secrets=secrets,
                                       extra={**self.s3_env, **self.extra_env})
        write_private(self.home / ENV_FILE, "".join(f"export {k}={shlex.quote(v)}\n"
                                                    for k, v in sorted(cli_environment(self.env).items())))
        check = components.check_executor_import(self.env, self.project)
        try:
            components.migrate(self.env, self.project, self.log("airflow-db-migrate"),
                               timeout=max(deadline - time.monotonic(), 60))
        finally:
            problem = components.executor_import_error(check)
        if problem:
            raise ClusterError(problem)
        for name, args in components.SERVICES.items():
            self.processes[name] = processes.spawn(name, components.airflow_argv(*args), log=self.log(name),
                                                   env=self.env, cwd=self.project)
        for i in range(self.workers):
            self.start_worker(i, wait=False)
        self.wait_for(lambda: not components.unhealthy(components.health(self.api_url)),
                      what=f"airflow components (health at {self.api_url}/api/v2/monitor/health)",
                      timeout=max(deadline - time.monotonic(), 30))
        self.wait_for(lambda: self._workers_answering(range(self.workers)),
                      what="celery workers (a ping through the broker)",
                      timeout=max(deadline - time.monotonic(), 30))

    # -- what callers use ----------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return api_url(self.api_port or 0)

    @property
    def db_url(self) -> str:
        """The metadata database's SQLAlchemy URL (with its password)."""
        assert self.postgres is not None
        return self.postgres.sqlalchemy_url

    @property
    def s3_endpoint(self) -> str | None:
        """The moto server's URL, or the caller's ``SASS_S3_ENDPOINT_URL`` when it brought its own S3."""
        return self.s3.endpoint if self.s3 is not None else self.extra_env.get("SASS_S3_ENDPOINT_URL")

    @property
    def worker_dirs(self) -> list[Path]:
        return [self.home / "workers" / components.worker_name(i) for i in range(self.workers)]

    def log(self, component: str) -> Path:
        """``<home>/logs/<component>.log``."""
        return self.home / "logs" / f"{component}.log"

    def connect(self):
        """A psycopg2 connection (autocommit) to the metadata database; close it when done."""
        assert self.postgres is not None
        return self.postgres.connect()

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
        """Runs ``airflow <args>`` against the cluster; raises :class:`ClusterError` with its output when it
        fails."""
        done = subprocess.run(components.airflow_argv(*args), env=self.env, cwd=self.project,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ClusterError(f"airflow {' '.join(args)} failed (exit code {done.returncode}):\n"
                               f"{(done.stdout + done.stderr)[-4000:]}")
        return done

    def check_alive(self) -> None:
        """Raises :class:`ClusterError` with the end of its log when a started process (not one killed on
        purpose) has exited."""
        for server in (self.postgres, self.redis, self.s3):
            if server is not None and not server.process.alive():
                raise server.process.failure()
        for name, process in self.processes.items():
            if name not in self.killed and not process.alive():
                raise process.failure()

    def kill_worker(self, index: int) -> None:
        """SIGKILL to worker ``index``'s process group and every process under it (its running tasks too):
        the machine died. The scheduler finds its tasks by their missing heartbeats."""
        name = self._worker_process(index)
        processes.kill(self.processes[name])
        self.killed.add(name)

    def start_worker(self, index: int, *, wait: bool = True, timeout: float = 180.0) -> None:
        """Starts worker ``index`` (again), in ``<home>/workers/w<index>``; with ``wait``, returns once it
        answers a ping."""
        name = self._worker_process(index)
        old = self.processes.get(name)
        if old is not None and old.alive():
            raise ClusterError(f"{name} runs already (pid {old.pid})")
        folder = self.worker_dirs[index]
        folder.mkdir(parents=True, exist_ok=True)
        env = {**self.env, WORKSPACE_VARIABLE: str(folder), WORKER_NAME_VARIABLE: components.worker_name(index)}
        argv = components.worker_argv(index, self.queues[index], self.concurrency)
        self.processes[name] = processes.spawn(name, argv, log=self.log(name), env=env, cwd=folder)
        self.killed.discard(name)
        if wait:
            self.wait_for(lambda: self._workers_answering([index]), what=f"{name} (a ping through the broker)",
                          timeout=timeout)

    def wait_for(self, ready: Callable[[], bool], *, what: str, timeout: float, interval: float = 1.0) -> None:
        """Polls ``ready()`` until true; :class:`ClusterError` naming ``what`` after ``timeout`` seconds, or at
        once with the end of its log when a started process (not one killed on purpose) exits."""
        processes.wait_until(ready, timeout=timeout, what=what, watch=self._live(), interval=interval)

    def wait_dag_registered(self, dag_id: str, timeout: float = 180.0) -> None:
        """Waits until the dag-processor has stored ``dag_id`` and it is not paused."""
        with contextlib.closing(self.connect()) as conn:
            self.wait_for(lambda: metadata.dag_ready(conn, dag_id), what=f"DAG {dag_id} registered and unpaused",
                          timeout=timeout, interval=1.0)

    def trigger(self, dag_id: str, conf: Mapping | None = None, *, run_id: str | None = None) -> str:
        """Starts a run of ``dag_id`` through the REST API (as ``admin``); returns its run id."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        run_id = run_id or f"manual__cluster_{stamp}_{_secrets.token_hex(3)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        self._api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return run_id

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900.0, interval: float = 2.0) -> str:
        """Waits until the run is ``success`` or ``failed`` and returns that state, checking every started
        process is alive meanwhile; :class:`ClusterError` on a timeout (with the task instances' states)."""
        deadline = time.monotonic() + timeout
        with contextlib.closing(self.connect()) as conn:
            while True:
                state = metadata.run_state(conn, dag_id, run_id)
                if state in FINAL_RUN_STATES:
                    return state
                self.check_alive()
                if time.monotonic() > deadline:
                    tis = metadata.task_instances(conn, dag_id, run_id)
                    raise ClusterError(f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s: "
                                       + ", ".join(f"{t.task_id}[{t.map_index}]={t.state}@{t.hostname}"
                                                   for t in tis))
                time.sleep(interval)

    def task_instances(self, dag_id: str, run_id: str, *, history: bool = False) -> list[metadata.TaskInstanceRow]:
        """The run's task instances (latest tries; every try with ``history``)."""
        with contextlib.closing(self.connect()) as conn:
            return metadata.task_instances(conn, dag_id, run_id, history=history)

    def return_values(self, dag_id: str, run_id: str) -> dict[tuple[str, int], object]:
        """What each task instance of the run returned, by (task_id, map_index)."""
        with contextlib.closing(self.connect()) as conn:
            return metadata.return_values(conn, dag_id, run_id)

    # -- stopping ------------------------------------------------------------------------------------------
    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to every Airflow process group, SIGKILL to what is left after ``grace`` seconds, then the
        services. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        processes.stop(list(self.processes.values()), grace=grace)
        for server in (self.postgres, self.redis, self.s3):
            if server is not None:
                server.stop()
        (self.home / ENV_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------------------
    def _worker_process(self, index: int) -> str:
        if not 0 <= index < self.workers:
            raise IndexError(f"worker {index}: the cluster has workers 0..{self.workers - 1}")
        return f"worker-{components.worker_name(index)}"

    def _live(self) -> list[ManagedProcess]:
        servers = [s.process for s in (self.postgres, self.redis, self.s3) if s is not None]
        return servers + [p for n, p in self.processes.items() if n not in self.killed]

    def _workers_answering(self, indexes) -> bool:
        assert self.redis is not None
        names = {name.partition("@")[0] for name in components.answering_workers(self.redis.url)}
        return all(components.worker_name(i) in names for i in indexes)

    def _token(self) -> str:
        body = json.dumps({"username": ADMIN_USER, "password": self.admin_password}).encode()
        request = urllib.request.Request(f"{self.api_url}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def _api(self, method: str, path: str, body: Mapping | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._token()}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise ClusterError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000].decode(errors='replace')}") from e
