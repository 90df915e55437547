"""The local cluster's parts that need no server (fast): the worker host name, the secrets' files, the
components' environment, the shell's forwarded variables, and stopping a process tree whose members left
their process group (as the Task SDK's task runners do)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import psutil
import pytest

from sass_retrieval.cluster import Cluster, ClusterError
from sass_retrieval.cluster.__main__ import forwarded_environment
from sass_retrieval.cluster.airflow_env import airflow_environment, cli_environment
from sass_retrieval.cluster.credentials import KEPT, NEW_AT_START, admin_password, cluster_secrets
from sass_retrieval.cluster.hostname import CALLABLE_PATH, worker_hostname
from sass_retrieval.cluster.ports import free_ports, port_free
from sass_retrieval.cluster.processes import kill, spawn, stop, wait_until


def test_worker_hostname_is_the_worker_name_else_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv("SASS_WORKER_NAME", "w3")
    assert worker_hostname() == "w3"
    monkeypatch.delenv("SASS_WORKER_NAME")
    assert worker_hostname() == socket.getfqdn()
    module, _, name = CALLABLE_PATH.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is worker_hostname


def test_secrets_are_private_kept_ones_survive_a_restart_the_others_do_not(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = cluster_secrets(tmp_path)
    assert set(first) == set(KEPT) | set(NEW_AT_START) and all(first.values())
    path = tmp_path / "cluster-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = cluster_secrets(tmp_path)
    assert all(second[k] == first[k] for k in KEPT)
    assert all(second[k] != first[k] for k in NEW_AT_START)
    assert json.loads(path.read_text()) == second
    assert len(second["jwt_secret"]) >= 64

    monkeypatch.setenv("SASS_AIRFLOW_PASSWORD", "chosen-on-first-start")
    assert admin_password(tmp_path) == "chosen-on-first-start"
    monkeypatch.setenv("SASS_AIRFLOW_PASSWORD", "ignored-later")
    assert admin_password(tmp_path) == "chosen-on-first-start"
    assert stat.S_IMODE((tmp_path / "simple_auth_manager_passwords.json.generated").stat().st_mode) == 0o600


def test_every_component_gets_one_configuration_and_the_callers_word_last(tmp_path: Path) -> None:
    secrets = cluster_secrets(tmp_path)
    base = {"PATH": "/usr/bin", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW_HOME": "/elsewhere",
            "HOME": "/root"}
    env = airflow_environment(home=tmp_path, project=Path("/p"), dags=Path("/p/dags"), db_url="postgresql+psycopg2://x",
                              db_async_url="", broker_url="redis://b", result_backend="db+postgresql+psycopg2://x",
                              api_port=1234, secrets=secrets, extra={"AIRFLOW__API__WORKERS": "2", "SASS_X": "1"},
                              base=base)
    assert env["AIRFLOW_HOME"] == str(tmp_path) and env["HOME"] == "/root"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"          # the caller's shell does not leak in
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secrets["jwt_secret"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == secrets["fernet_key"]
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:1234/execution/"
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == CALLABLE_PATH
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/p/dags"
    assert env["AIRFLOW__API__WORKERS"] == "2" and env["SASS_X"] == "1"    # extra overrides
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    shell = cli_environment(env)
    assert "HOME" not in shell and shell["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://x"


def test_the_shell_forwards_settings_and_a_real_s3s_keys_only() -> None:
    shell = {"AIRFLOW__CORE__PARALLELISM": "8", "SASS_PROJECT_DIR": "/p", "SASS_WORKER_NAME": "w9",
             "AWS_ACCESS_KEY_ID": "k", "HOME": "/root"}
    assert forwarded_environment(shell) == {"AIRFLOW__CORE__PARALLELISM": "8", "SASS_PROJECT_DIR": "/p",
                                            "SASS_TASK_WORKSPACES": "1"}   # sass_daily's tasks in workspaces
    assert forwarded_environment({"SASS_TASK_WORKSPACES": "0"})["SASS_TASK_WORKSPACES"] == "0"   # unless told
    shell["SASS_DVC_REMOTE_URL"] = "s3://real/remote"
    assert forwarded_environment(shell)["AWS_ACCESS_KEY_ID"] == "k"


def test_queues_are_one_list_per_worker_or_one_for_all(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one list per worker"):
        Cluster.start(tmp_path, tmp_path, workers=3, queues=["a", "b"])
    with pytest.raises(ValueError, match="at least 1"):
        Cluster.start(tmp_path, tmp_path, workers=0)
    assert not list(tmp_path.iterdir())                   # nothing was started or written


def test_free_ports_differ_and_are_free() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(port_free(p) for p in ports)


# a process whose child leaves the process group (start_new_session), like a task runner under its worker
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print("started", flush=True)
time.sleep(300)
"""


def _tree(tmp_path: Path, name: str):
    process = spawn(name, [sys.executable, "-c", TREE], log=tmp_path / f"{name}.log", env=dict(os.environ),
                    cwd=tmp_path)
    wait_until(lambda: "started" in (tmp_path / f"{name}.log").read_text(), timeout=30, what=name,
               watch=[process], interval=0.1)
    family = process.remember_descendants()
    assert len(family) == 2 and len({os.getpgid(p.pid) for p in family}) == 2
    return process, family


def _gone(family: list[psutil.Process]) -> bool:
    return not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_stop_and_kill_reach_descendants_outside_the_process_group(tmp_path: Path) -> None:
    process, family = _tree(tmp_path, "stopped")
    t0 = time.monotonic()
    stop([process], grace=5)
    assert _gone(family) and process.popen.returncode is not None
    assert time.monotonic() - t0 < 4                    # SIGTERM was enough: the grace period was not used up
    process, family = _tree(tmp_path, "killed")
    kill(process)
    assert _gone(family) and process.popen.returncode == -9


def test_a_process_that_exits_while_waited_for_is_named_with_its_log(tmp_path: Path) -> None:
    process = spawn("redis", [sys.executable, "-c", "print('bind: address in use'); raise SystemExit(3)"],
                    log=tmp_path / "redis.log", env=dict(os.environ), cwd=tmp_path)
    with pytest.raises(ClusterError) as raised:
        wait_until(lambda: False, timeout=30, what="redis on 127.0.0.1:1", watch=[process], interval=0.1)
    message = str(raised.value)
    assert message.startswith("redis exited while waiting for redis on 127.0.0.1:1 (exit code 3)")
    assert str(tmp_path / "redis.log") in message and "bind: address in use" in message
