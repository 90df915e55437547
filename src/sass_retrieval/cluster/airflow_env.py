"""The environment every Airflow component of the cluster runs with (and every ``airflow`` CLI call against
it): the whole configuration is in ``AIRFLOW__SECTION__KEY`` variables, none in ``airflow.cfg``.

Why the environment: all components must agree on the database, the broker, the execution API's address
and, above all, the one JWT secret (the api-server rejects a task token signed with another one). An
``airflow.cfg`` is written by the first Airflow process that finds none, with secrets of its own; variables
override it, so whatever it holds does not matter.

The caller's environment is the base, without its own ``AIRFLOW_HOME`` and ``AIRFLOW__*`` settings (a
developer's shell must not point the cluster at another database); the ``extra`` mapping of the caller comes
last and may override anything here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .hostname import CALLABLE_PATH
from .ports import LOOPBACK

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def api_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def airflow_environment(*, home: Path, project: Path, dags: Path, db_url: str, db_async_url: str, broker_url: str,
                        result_backend: str, api_port: int, secrets: Mapping[str, str],
                        extra: Mapping[str, str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of every component: ``base`` (default: this process's environment) less its Airflow
    settings, the cluster's settings, then ``extra``."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k != "AIRFLOW_HOME" and not k.startswith("AIRFLOW__")}
    venv_bin = str(Path(sys.executable).parent)
    python_path = [str(project / "src"), str(project)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update({
        # the venv's programs first (dvc.yaml's commands run `python -m ...`, the DAG runs `dvc`)
        "PATH": os.pathsep.join([venv_bin, env.get("PATH", "/usr/bin:/bin")]),
        "PYTHONPATH": os.pathsep.join(python_path),
        "SASS_PROJECT_DIR": str(project),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # DAGs run when triggered, never by their schedule: a start must not run anything by itself (an
        # unpaused daily DAG would at once run its latest interval). This also stops asset-triggered runs
        # (sass_serving_reload); AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=True in ``extra`` turns both back on.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": CALLABLE_PATH,
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(api_port)}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db_async_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url(api_port),
        "AIRFLOW__API__WORKERS": "1",          # one uvicorn process is plenty on one machine
        "AIRFLOW__API__SECRET_KEY": secrets["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
    })
    env.update(extra)
    return env


def cli_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` a shell needs to run ``airflow`` commands against the cluster (what
    ``<home>/cluster.env`` holds): Airflow's settings, the project's and the S3 variables, and PATH with
    the venv first (so ``airflow`` is the project's)."""
    keep = ("AIRFLOW", "SASS_", "AWS_", "PYTHONPATH", "PATH")
    return {k: v for k, v in env.items() if k.startswith(keep) and k != "SASS_WORKER_NAME"}
