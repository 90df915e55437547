"""``python -m sass_retrieval.cluster``: the local multi-worker Airflow in the foreground (``make
airflow-cluster``), until Ctrl-C or SIGTERM; then every process it started
is stopped, each with its whole process group.

The shell's ``AIRFLOW__SECTION__KEY`` variables override the cluster's settings, and its ``SASS_*`` variables
reach every component; with ``SASS_DVC_REMOTE_URL`` set (a real S3, its ``AWS_*`` keys forwarded too) no
moto server is started.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from .airflow_components import DEFAULT_QUEUES, worker_name
from .cluster import ENV_FILE, Cluster
from .credentials import ADMIN_USER, PASSWORDS_FILE
from .processes import ClusterError
from .s3_server import REMOTE_VARIABLE

PER_WORKER = ("SASS_WORKER_NAME", "SASS_WORKSPACE_ROOT")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sass_retrieval.cluster", description=(
        "A local multi-worker Airflow (CeleryExecutor, Redis, PostgreSQL, S3 via moto) in the foreground."))
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker (default 2)")
    parser.add_argument("--queues", action="append", metavar="Q1,Q2",
                        help=f"one worker's queues; give it once per worker, or once for all "
                             f"(default {DEFAULT_QUEUES})")
    parser.add_argument("--project", type=Path, default=None,
                        help="the project folder (default $SASS_PROJECT_DIR, else the current folder)")
    parser.add_argument("--home", type=Path, default=None,
                        help="AIRFLOW_HOME of the cluster (default <project>/airflow_home/cluster)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")),
                        help="the UI / API port on 127.0.0.1 (default $AIRFLOW_PORT or 8080)")
    return parser.parse_args(argv)


def forwarded_environment(environ: dict[str, str]) -> dict[str, str]:
    """The shell's variables every component gets on top of the cluster's own settings."""
    real_s3 = REMOTE_VARIABLE in environ
    # workers share no disk: every task of sass_daily in a workspace of its own (orchestration/workspace.py)
    return {"SASS_TASK_WORKSPACES": "1",
            **{k: v for k, v in environ.items()
               if (k.startswith(("AIRFLOW__", "SASS_")) and k not in PER_WORKER)
               or (real_s3 and k.startswith("AWS_"))}}


def banner(cluster: Cluster) -> str:
    workers = "\n".join(f"  {worker_name(i):<10} queues {cluster.queues[i]}, folder {folder}"
                        for i, folder in enumerate(cluster.worker_dirs))
    services = [f"PostgreSQL 127.0.0.1:{cluster.postgres.port}" if cluster.postgres else "",
                f"Redis 127.0.0.1:{cluster.redis.port}" if cluster.redis else "",
                f"S3 {cluster.s3_endpoint}" if cluster.s3_endpoint else ""]
    return f"""Airflow cluster (CeleryExecutor, {cluster.workers} workers) for {cluster.project}
  UI / API   {cluster.api_url}   (loopback only)
  login      {ADMIN_USER} / {cluster.admin_password}   (stored in {cluster.home / PASSWORDS_FILE})
{workers}
  services   {', '.join(s for s in services if s)}
  logs       {cluster.home / 'logs'}/<component>.log
Runs start when triggered (the schedule is off: AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=True turns it on).
Trigger one day, in another shell:
  source {cluster.home / ENV_FILE}
  airflow dags trigger sass_daily --conf '{{"end_date": "20220505"}}'
Stop with Ctrl-C."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project = (args.project or Path(os.environ.get("SASS_PROJECT_DIR") or Path.cwd())).resolve()
    home = (args.home or project / "airflow_home" / "cluster").resolve()
    signal.signal(signal.SIGTERM, _interrupt)     # SIGTERM stops everything, as Ctrl-C does
    print(f"starting {args.workers} workers, scheduler, dag-processor, triggerer, api-server in {home} ...",
          flush=True)
    try:
        cluster = Cluster.start(home, project, workers=args.workers, queues=args.queues,
                                env=forwarded_environment(dict(os.environ)), concurrency=args.concurrency,
                                api_port=args.port)
    except (ClusterError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    code = 0
    with cluster:
        print(banner(cluster), flush=True)
        try:
            while True:
                cluster.check_alive()
                time.sleep(5)
        except KeyboardInterrupt:
            print("stopping ...", flush=True)
        except ClusterError as e:
            print(f"error: {e}\nstopping ...", file=sys.stderr, flush=True)
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
