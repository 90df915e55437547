"""A tiny project with two real published versions: A (published by the publish stage) and B (the other
row's model and indexes of the same run, installed the way publish installs a version); the same project
with a multi-objective (sass_mt) version; and real ``sass serve`` processes over them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # a dependency of dvc: which worker process holds a connection
import pytest
from support import cwd


@pytest.fixture(scope="session")
def served_project(built_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines import publish
    from sass_retrieval.publish import SERVED_FILE, current_version, install_version, served_row

    root = tmp_path_factory.mktemp("serve") / "project"
    shutil.copytree(built_project, root, symlinks=True)
    # a day on which the pre-rankers measurably beat retrieval order (evaluate.cascade.serves): version A serves
    # retrieval + rank whichever row wins, whatever the tiny project's own evidence said
    metrics = root / "metrics" / "metrics.json"
    m = json.loads(metrics.read_text())
    for entry in m["cascade"].values():
        entry["served"] = True
    metrics.write_text(json.dumps(m))
    with cwd(root):
        assert publish.main([]) == 0
    published = root / "published"
    a = current_version(published)
    row_a = served_row(a)
    row_b = "dssm_mixed" if row_a == "sass" else "sass"
    b = install_version(published, "B-" + a.name, {f"models/{row_b}": root / "models" / row_b,
                                                  "indexes": root / "indexes" / row_b,
                                                  "metrics.json": root / "metrics" / "metrics.json"},
                        {SERVED_FILE: json.dumps({"row": row_b}) + "\n"})
    return {"root": root, "published": published, "features": root / "data" / "features",
            "store": root / "data" / "store", "a": a, "b": b, "row_a": row_a, "row_b": row_b}


@pytest.fixture
def published_copy(served_project: dict, tmp_path: Path) -> Path:
    """A private copy of the publish folder (``current`` -> A) that a test may re-point."""
    dst = tmp_path / "published"
    shutil.copytree(served_project["published"], dst, symlinks=True)
    return dst


@pytest.fixture
def make_settings(served_project: dict):
    """``make_settings(published, interval=0.0)``: service settings over the project's features and store."""
    from sass_retrieval.serve.settings import ServeSettings

    def make(published: Path, interval: float = 0.0) -> ServeSettings:
        return ServeSettings(published=published, features=served_project["features"],
                             store=served_project["store"], reload_interval=interval)

    return make


MT_OBJECTIVES = ["click", "long_view", "like"]


def build_mt_project(src: Path, root: Path, seed: int) -> Path:
    """A copy of the project ``src`` with a sass_mt model (the sass towers, fresh heads drawn with ``seed``)
    and its s0 and s1 indexes, built by the index stage itself."""
    import torch

    from pipelines import index
    from sass_retrieval.models.checkpoint import load_model
    from sass_retrieval.models.multitask import MultiTaskModel
    from sass_retrieval.train.checkpoint import save_checkpoint

    shutil.copytree(src, root, symlinks=True)
    base, _ = load_model(root / "models" / "sass" / "model.pt")
    torch.manual_seed(seed)
    save_checkpoint(root / "models" / "sass_mt" / "model.pt", MultiTaskModel(base, MT_OBJECTIVES, 8, {"click": 1.0}))
    with cwd(root):
        for s in ("s0", "s1"):
            assert index.main(["--scenario", s, "--row", "sass_mt"]) == 0
    return root


@pytest.fixture(scope="session")
def mt_project(served_project: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served project with a sass_mt model and its indexes (models/sass_mt, indexes/sass_mt/<scenario>)."""
    return build_mt_project(served_project["root"], tmp_path_factory.mktemp("mt") / "project", seed=0)


def mt_version_sources(root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """(sources, texts) of a version serving row sass_mt from ``root``, for ``publish.install_version``: the
    files the publish stage puts in a version serving that row, and its served.json."""
    from sass_retrieval.publish import SERVED_FILE, served_record

    sources = {"models/sass_mt": root / "models" / "sass_mt", "indexes": root / "indexes" / "sass_mt",
               "metrics.json": root / "metrics" / "metrics.json"}
    served = served_record("sass_mt", sources["indexes"])
    return sources, {SERVED_FILE: json.dumps(served, sort_keys=True) + "\n"}


@pytest.fixture(scope="session")
def mt_published(mt_project: Path, served_project: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A publish folder whose ``current`` serves row sass_mt (version ``old``), and the sources of a second
    sass_mt version (the same towers, other heads: other answers) that a test installs while serving."""
    from sass_retrieval.publish import install_version, point_current

    published = tmp_path_factory.mktemp("mt-published") / "published"
    sources, texts = mt_version_sources(mt_project)
    old = install_version(published, "mt-old", sources, texts)
    point_current(published, old)
    second = build_mt_project(served_project["root"], tmp_path_factory.mktemp("mt2") / "project", seed=1)
    new_sources, new_texts = mt_version_sources(second)
    return {"root": mt_project, "published": published, "features": served_project["features"],
            "store": served_project["store"], "old": old.name, "new_id": "mt-new", "new_sources": new_sources,
            "new_texts": new_texts}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A ``sass serve`` process group on a loopback port."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, lines: int = 60) -> str:
        """The tail of the server's log without its access lines, for assertion messages."""
        kept = [line for line in self.log.read_text(errors="replace").splitlines() if " HTTP/1.1\" " not in line]
        return "\n".join(kept[-lines:])

    def worker_of(self, port: int, tries: int = 20) -> int:
        """The pid of the worker process holding the server end of the connection from local ``port``.

        Read from the operating system (the workers are the uvicorn master's children; the one that
        accepted the connection holds it), because a response does not say which worker wrote it."""
        for _ in range(tries):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    conns = child.net_connections(kind="tcp")
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if any(c.laddr and c.laddr.port == self.port and c.raddr and c.raddr.port == port for c in conns):
                    return child.pid
            time.sleep(0.05)
        raise AssertionError(f"no worker of the server holds the connection from port {port}")

    def stop(self) -> None:
        """Master and workers: SIGTERM to the group while the master (its leader) is alive, then SIGKILL to
        any process of it still running (psutil checks a pid still names the process it found)."""
        try:
            workers = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=30)


@pytest.fixture
def sass_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``sass_server(cwd, *args, workers=2)``: a real ``sass serve`` subprocess in its own process group on a
    free loopback port, healthy when returned; every server started is killed (its group) at teardown."""
    started: list[Server] = []

    def start(cwd_: Path, *args: str, workers: int = 2, ready_timeout: float = 180.0) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        cmd = [sys.executable, "-m", "sass_retrieval.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(log, "w") as out:   # a file, not a pipe nobody reads: the log can not block the server
            proc = subprocess.Popen(cmd, cwd=cwd_, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        server = Server(proc, port, log)
        started.append(server)
        deadline = time.monotonic() + ready_timeout   # a safety limit, not a measurement
        while True:
            assert proc.poll() is None, f"sass serve exited with {proc.returncode}:\n{server.output()}"
            try:
                if httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"sass serve did not become healthy:\n{server.output()}"
            time.sleep(0.3)

    yield start
    for server in started:
        server.stop()
