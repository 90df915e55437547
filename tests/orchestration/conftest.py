"""What the orchestration tests share: one Airflow metadata database, migrated once per session.

``airflow db migrate`` builds the whole schema on SQLite, the largest fixed cost of every test that starts
Airflow. It runs once, in a session-scoped AIRFLOW_HOME; a test that runs Airflow starts from a copy of that
database in its own AIRFLOW_HOME (:func:`airflow_home`), because the tests read a run's task instances, asset
events and XComs back from the database, and two runs in one database would see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME whose ``airflow.db`` is migrated to this Airflow's schema; copied, never run in."""
    home = tmp_path_factory.mktemp("airflow_migrated")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (home / "airflow.db").is_file()
    return home


@pytest.fixture(scope="session")
def airflow_home(migrated_airflow_home: Path) -> Callable[[Path], Path]:
    """``airflow_home(folder)``: ``folder`` made an AIRFLOW_HOME holding a fresh copy of the migrated database,
    and the ``airflow.cfg`` the migration wrote, its paths moved to ``folder``.

    The config comes along because Airflow writes it on first start with generated secrets (the JWT secret
    the api-server and the task runners sign with): api-server, scheduler and dag-processor started at once
    in an empty home would each write their own and reject each other's tokens."""
    source = migrated_airflow_home

    def make(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "airflow.db", home / "airflow.db")
        cfg = (source / "airflow.cfg").read_text().replace(str(source), str(home))
        assert f"sql_alchemy_conn = sqlite:///{home / 'airflow.db'}\n" in cfg   # runs use the copy, not the source
        (home / "airflow.cfg").write_text(cfg)
        return home

    return make
