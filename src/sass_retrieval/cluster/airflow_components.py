"""Airflow's processes on the cluster: what each one runs, the database migration before them, and how to
tell that each is ready.

Every component runs as ``python -m airflow ...`` of this interpreter (the project's venv). None of them
starts a log server (``--skip-serve-logs``): Airflow's log servers listen on every interface and, with all
workers on one machine, on the same port; the task logs are files under ``AIRFLOW_HOME/logs``, which the
api-server reads directly.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .processes import ClusterError, log_tail

DEFAULT_QUEUES = "default,train"
SERVICES: dict[str, list[str]] = {
    "api-server": ["api-server"],          # host, port and workers from AIRFLOW__API__*
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
# what /api/v2/monitor/health reports on, besides the api-server itself answering
HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def airflow_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def worker_name(index: int) -> str:
    return f"w{index}"


def worker_argv(index: int, queues: str, concurrency: int) -> list[str]:
    """``airflow celery worker`` for worker ``index``: Celery node name ``w<i>@<host>`` (unique on the
    broker although all run on one host)."""
    return airflow_argv("celery", "worker", "--queues", queues, "--concurrency", str(concurrency),
                        "--celery-hostname", f"{worker_name(index)}@%h", "--skip-serve-logs")


def migrate(env: dict[str, str], cwd: Path, log: Path, timeout: float = 900.0) -> None:
    """``airflow db migrate``: creates or upgrades the metadata schema; every component needs it first."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            done = subprocess.run(airflow_argv("db", "migrate"), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"airflow db migrate: not done after {timeout:.0f}s; log {log}") from e
    if done.returncode != 0:
        raise ClusterError(f"airflow db migrate failed (exit code {done.returncode}); log {log}:\n{log_tail(log)}")


EXECUTOR_MODULE = "airflow.providers.celery.executors.celery_executor"


def check_executor_import(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Starts importing the Celery executor in a child process (next to the migration, which does not import
    it). A provider that does not fit the installed Celery fails every worker and the scheduler with a long
    traceback each; this gives one line instead (:func:`executor_import_error`)."""
    return subprocess.Popen([sys.executable, "-c", f"import {EXECUTOR_MODULE}"], env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def executor_import_error(check: subprocess.Popen, timeout: float = 300.0) -> str | None:
    """None when the import worked, else its last line and the versions involved."""
    try:
        output, _ = check.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        check.kill()
        output, _ = check.communicate()
    if check.returncode == 0:
        return None
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("celery", "apache-airflow-providers-celery"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} not installed")
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
    return f"the Celery executor does not import ({', '.join(versions)}): {last}"


def health(api_url: str) -> dict | None:
    """The api-server's health report (no login needed), None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def unhealthy(report: dict | None) -> list[str]:
    """The parts of a health report that are not healthy yet (all of them without a report)."""
    if report is None:
        return ["api-server", *HEALTH_PARTS]
    return [part for part in HEALTH_PARTS if (report.get(part) or {}).get("status") != "healthy"]


def answering_workers(broker_url: str, timeout: float = 1.0) -> set[str]:
    """The Celery node names (``w0@host``...) that answer a ping through the broker now."""
    from celery import Celery

    app = Celery("sass-cluster-ping", broker=broker_url)
    try:
        replies: Sequence[dict] = app.control.ping(timeout=timeout) or []
    except Exception:      # the broker not reachable yet: nobody answers
        replies = []
    finally:
        with contextlib.suppress(Exception):
            app.close()
    return {name for reply in replies for name in reply}
