"""A private PostgreSQL server for the cluster's Airflow metadata database (and Celery's result backend).

- Its own data folder (``initdb`` on the first start, reused afterwards) and a free port on 127.0.0.1 only;
  no Unix socket, so nothing is written outside the data folder.
- Password authentication (scram-sha-256) for every connection: a superuser that only this module uses, to
  create the ``airflow`` role and database, and the ``airflow`` role that the components connect as. Both
  passwords come from :mod:`.credentials`; initdb reads the superuser's from a file in the data folder's
  parent that exists only while initdb runs.
- PostgreSQL refuses to run as root. Under root (CI) the server runs as the ``postgres`` user Debian's package
  creates, else as a system user ``sass-pg`` created here, and its folder belongs to that user. That user must
  be able to reach the folder; a home under a folder only root may enter (pytest's temporary folders) gets
  its database in a folder of the system's temporary directory instead, deleted when the server stops.
- Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the cluster is for tests and
  trials on one machine, and a crash of the machine costs at most its run history.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from . import binaries
from .ports import LOOPBACK
from .processes import ClusterError, ManagedProcess, spawn, stop, wait_until

DATABASE = "airflow"
ROLE = "airflow"
SUPERUSER = "postgres"
FALLBACK_USER = "sass-pg"
SETTINGS = {
    "listen_addresses": LOOPBACK,
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",   # scheduler, api-server, dag-processor, triggerer and every worker's pool
}


def server_user() -> str | None:
    """The user the server runs as: None (the current user) unless we are root; then ``postgres``, or
    ``sass-pg`` (created as a system user when missing)."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
                   check=True, capture_output=True)
    return FALLBACK_USER


def _as_user(argv: list[str], user: str | None, **kwargs) -> subprocess.CompletedProcess:
    identity: dict = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return subprocess.run(argv, **identity, **kwargs)


def _own(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o700)


def _reachable(folder: Path, user: str | None) -> bool:
    if user is None:
        return True
    return _as_user(["test", "-w", str(folder), "-a", "-x", str(folder)], user).returncode == 0


def server_folder(home: Path, user: str | None) -> tuple[Path, bool]:
    """The folder holding the data folder, owned by ``user`` (mode 700), and whether it is a scratch folder
    outside ``home`` (deleted at stop)."""
    folder = home / "services" / "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    _own(folder, user)
    if _reachable(folder, user):
        return folder, False
    digest = hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:12]
    scratch = Path(tempfile.gettempdir()) / f"sass-cluster-pg-{digest}"
    scratch.mkdir(exist_ok=True)
    _own(scratch, user)
    if not _reachable(scratch, user):
        raise ClusterError(f"postgres: user {user} can reach neither {folder} nor {scratch}")
    return scratch, True


@dataclass
class PostgresServer:
    """A running server: where to connect, and how to stop it."""

    process: ManagedProcess
    port: int
    password: str
    superuser_password: str
    folder: Path
    scratch: bool

    @property
    def sqlalchemy_url(self) -> str:
        """Airflow's ``[database] sql_alchemy_conn``."""
        return f"postgresql+psycopg2://{ROLE}:{self.password}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def async_sqlalchemy_url(self) -> str:
        """Airflow's ``[database] sql_alchemy_conn_async``: asyncpg when installed, else '' (no async engine).

        Airflow derives ``postgresql+asyncpg://`` from the sync URL and fails at import when asyncpg is
        missing; psycopg2 has no async dialect. Only a few api-server endpoints use the async engine (waiting
        for a run's end over HTTP, the task state store), none of which the cluster or the DAGs need."""
        if importlib.util.find_spec("asyncpg") is None:
            return ""
        return f"postgresql+asyncpg://{ROLE}:{self.password}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def celery_result_backend(self) -> str:
        """Celery's database result backend on the same database (``db+`` + an SQLAlchemy URL)."""
        return f"db+postgresql+psycopg2://{ROLE}:{self.password}@{LOOPBACK}:{self.port}/{DATABASE}"

    def connect(self, *, superuser: bool = False):
        """A psycopg2 connection to the ``airflow`` database (autocommit: readers see every new row)."""
        user, password, dbname = (SUPERUSER, self.superuser_password, "postgres") if superuser else (
            ROLE, self.password, DATABASE)
        conn = psycopg2.connect(host=LOOPBACK, port=self.port, user=user, password=password, dbname=dbname,
                                connect_timeout=5)
        conn.autocommit = True
        return conn

    def stop(self, grace: float = 20.0) -> None:
        """Fast shutdown (SIGINT: open sessions are ended, not waited for), SIGKILL after ``grace``."""
        stop([self.process], grace=grace, first=signal.SIGINT)
        if self.scratch:
            shutil.rmtree(self.folder, ignore_errors=True)


def _initdb(bin_dir: Path, folder: Path, data: Path, user: str | None, superuser_password: str, log: Path) -> None:
    pwfile = folder / "initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(superuser_password + "\n")
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        with open(log, "ab") as out:
            done = _as_user([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                             "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                             "--no-locale", "--no-sync"],
                            user, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise ClusterError(f"postgres: initdb failed (exit code {done.returncode}); log {log}")


def _create_role_and_database(server: PostgresServer) -> None:
    with contextlib.closing(server.connect(superuser=True)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(ROLE)), (server.password,))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(ROLE)))


def start_postgres(home: Path, log: Path, port: int, *, superuser_password: str, password: str,
                   timeout: float = 90.0) -> PostgresServer:
    """Initialises (first start) and starts the server, waits until it accepts the superuser's connection,
    then makes sure the ``airflow`` role (with ``password``) and database exist."""
    bin_dir = binaries.postgres_bin_dir()
    if bin_dir is None:
        raise ClusterError(f"postgres: not installed ({binaries.INSTALL_HINT})")
    user = server_user()
    folder, scratch = server_folder(home, user)
    data = folder / "data"
    if not (data / "PG_VERSION").is_file():
        _initdb(bin_dir, folder, data, user, superuser_password, log)
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
    for key, value in SETTINGS.items():
        argv += ["-c", f"{key}={value}"]
    process = spawn("postgres", argv, log=log, cwd=folder, user=user,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    server = PostgresServer(process, port, password, superuser_password, folder, scratch)

    def accepts() -> bool:
        try:
            server.connect(superuser=True).close()
        except psycopg2.OperationalError as e:
            if "password authentication failed" in str(e):
                raise ClusterError(f"postgres: the superuser password in {home} does not match the database in "
                                   f"{data} (delete that folder to start afresh); log {log}") from e
            return False
        return True

    try:
        wait_until(accepts, timeout=timeout, what=f"postgres on {LOOPBACK}:{port}", watch=[process])
        _create_role_and_database(server)
    except BaseException:
        server.stop(grace=5)
        raise
    return server
