"""A task's workspace of its own, for Airflow workers that share no disk.

Each task of ``sass_daily`` then works in an empty folder under $SASS_WORKSPACE_ROOT (one per worker): a
clean git checkout of the run's commit, the run's day written into its params.yaml, the dvc.lock entries of
the upstream stages (they travel as XCom, with the few ``cache: false`` outputs, which are small text files)
and those stages' outputs pulled from the DVC remote. The stage runs there as it runs in one folder
(:func:`stages.run_stage`: its cmd, then ``dvc commit``); its outputs and DVC's run-cache are pushed, and
the task returns its own dvc.lock entry. The folder is removed at the end, failed or not. Nothing is
shared but git, the remote, the published-model store (:mod:`sass_retrieval.published_store`) and the
metadata database; several tasks never meet in one DVC repository, so DVC's repo lock never stops one.

The record task assembles the day's one dvc.lock from every task's entry, commits it with the run's text
files in its own checkout, and pushes the run's tags to the project's repository (:func:`record`).

Settings come from the environment, never from the repository: $SASS_WORKSPACE_ROOT, $SASS_REPO_URL (the
git repository to clone, default the project folder), $SASS_DVC_REMOTE_URL (``s3://bucket/prefix`` or any
DVC remote URL), $SASS_S3_ENDPOINT_URL (an S3-compatible server), $SASS_PUBLISHED_URL, and the usual
AWS_* credentials read by DVC's S3 client.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadConfigError
from ..gitinfo import GitError, git
from .dvc_graph import Stage, load_graph
from .stages import dvc, run_stage

log = logging.getLogger("sass.orchestration")
ENABLE = "SASS_TASK_WORKSPACES"     # "1": every component of the deployment runs tasks in workspaces
REMOTE = "cluster"                  # the DVC remote's name in a workspace's .dvc/config
MAX_TEXT = 1 << 20                  # a cache: false output travels as XCom: at most this many bytes


class RemoteFailed(RuntimeError):
    """A transfer with the DVC remote failed (retrying may help: the remote may be back by then)."""


def enabled(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get(ENABLE) == "1"


@dataclass(frozen=True)
class Settings:
    root: Path                      # where this worker makes its task workspaces
    repo_url: str                   # the git repository of the project
    remote_url: str                 # the DVC remote every task pulls from and pushes to
    endpoint_url: str | None = None
    published_url: str | None = None

    @classmethod
    def from_env(cls, project: Path, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if not env.get("SASS_DVC_REMOTE_URL"):
            raise BadConfigError(f"{ENABLE}=1 needs SASS_DVC_REMOTE_URL: the DVC remote the tasks share "
                                 "(s3://bucket/prefix, with SASS_S3_ENDPOINT_URL for an S3-compatible server)")
        return cls(root=Path(env.get("SASS_WORKSPACE_ROOT") or Path.cwd() / "workspaces").resolve(),
                   repo_url=env.get("SASS_REPO_URL") or str(project),
                   remote_url=env["SASS_DVC_REMOTE_URL"], endpoint_url=env.get("SASS_S3_ENDPOINT_URL") or None,
                   published_url=env.get("SASS_PUBLISHED_URL") or None)


def run_commit(repo_url: str, ref: str = "HEAD") -> str:
    """The commit every task of a run checks out: ``ref`` of the project's repository when the run starts."""
    out = git(None, "ls-remote", repo_url, ref).split()
    if not out:
        raise BadConfigError(f"{repo_url}: no {ref} to run (a git repository with at least one commit?)")
    return out[0]


@dataclass
class TaskResult:
    """What a task hands on (as XCom): its dvc.lock entries and cache: false outputs, and where time went."""

    lock: dict[str, Any] = field(default_factory=dict)      # stage name -> its dvc.lock entry
    files: dict[str, str] = field(default_factory=dict)     # relative path -> text (cache: false outputs)
    seconds: dict[str, float] = field(default_factory=dict)  # checkout, pull, stage, push
    worker: str = ""
    workspace: str = ""

    def to_xcom(self) -> dict[str, Any]:
        return {"lock": self.lock, "files": self.files, "seconds": self.seconds, "worker": self.worker,
                "workspace": self.workspace}


def merge(results: Iterable[Mapping[str, Any] | None]) -> TaskResult:
    """One TaskResult of several upstream ones (a mapped task's list included)."""
    merged = TaskResult()
    for r in results:
        if r:
            merged.lock.update(r.get("lock") or {})
            merged.files.update(r.get("files") or {})
    return merged


class Workspace:
    """An empty folder made a checkout of ``commit`` for day ``day``; see the module docstring."""

    def __init__(self, settings: Settings, path: Path, commit: str, day: str,
                 logger: logging.Logger | None = None):
        self.settings, self.path, self.commit, self.day = settings, path, commit, day
        self.log = logger or log
        self.seconds: dict[str, float] = {}

    # ------------------------------------------------------------ setting up
    def checkout(self) -> None:
        from .runs import set_window_end

        t0 = time.perf_counter()
        git(None, "clone", "--quiet", "--no-checkout", self.settings.repo_url, str(self.path))
        git(self.path, "checkout", "--quiet", "--detach", self.commit)
        set_window_end(self.path / "params.yaml", self.day)
        self._link_installed_assets()
        s = self.settings
        dvc(self.path, "remote", "add", "--default", "--force", REMOTE, s.remote_url, logger=self.log)
        if s.endpoint_url:
            dvc(self.path, "remote", "modify", REMOTE, "endpointurl", s.endpoint_url, logger=self.log)
        self.seconds["checkout"] = time.perf_counter() - t0
        self.log.info("workspace %s: commit %s, day %s, remote %s", self.path, self.commit[:12], self.day,
                      s.remote_url)

    def _link_installed_assets(self) -> None:
        """The Data Docs' offline scripts and styles are this worker's installed npm packages (``make install``),
        not files of the commit: the checkout links them where the stage looks for them."""
        from ..data.offline_assets import default_modules

        modules, link = default_modules(), self.path / "report-assets" / "node_modules"
        if modules.is_dir() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(modules.resolve(), target_is_directory=True)

    def write_inputs(self, upstream: TaskResult) -> None:
        """The upstream stages' dvc.lock entries and cache: false outputs, as their tasks left them."""
        lock_path = self.path / "dvc.lock"
        doc = (yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else None) or {}
        doc.setdefault("schema", "2.0")
        doc["stages"] = {**(doc.get("stages") or {}), **upstream.lock}
        lock_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        for rel, text in upstream.files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def pull(self, stages: Iterable[str]) -> None:
        """The outputs of ``stages`` (upstream ones, recorded in dvc.lock) from the remote."""
        targets = sorted(stages)
        t0 = time.perf_counter()
        if targets:
            self._remote("pull", "--quiet", *targets)
        self.seconds["pull"] = self.seconds.get("pull", 0.0) + time.perf_counter() - t0

    def pull_published(self, publish_dir: str) -> str | None:
        from .. import published_store

        if not self.settings.published_url:
            return None
        t0 = time.perf_counter()
        vid = published_store.pull(self.settings.published_url, self.path / publish_dir)
        self.seconds["pull"] = self.seconds.get("pull", 0.0) + time.perf_counter() - t0
        return vid

    # ------------------------------------------------------------ the stage and after
    def run(self, stage: str) -> float:
        self.seconds["stage"] = run_stage(self.path, stage, logger=self.log)
        return self.seconds["stage"]

    def push(self, stages: Iterable[str]) -> None:
        t0 = time.perf_counter()
        self._remote("push", "--quiet", "--run-cache", *stages)
        self.seconds["push"] = self.seconds.get("push", 0.0) + time.perf_counter() - t0

    def push_published(self, publish_dir: str) -> str | None:
        from .. import published_store

        if not self.settings.published_url:
            return None
        t0 = time.perf_counter()
        vid = published_store.push(self.path / publish_dir, self.settings.published_url)
        self.seconds["push"] = self.seconds.get("push", 0.0) + time.perf_counter() - t0
        return vid

    def result(self, stages: Iterable[Stage]) -> TaskResult:
        lock = (yaml.safe_load((self.path / "dvc.lock").read_text()) or {}).get("stages") or {}
        out = TaskResult(seconds=dict(self.seconds), worker=os.environ.get("SASS_WORKER_NAME", ""),
                         workspace=str(self.path))
        for st in stages:
            out.lock[st.name] = lock[st.name]
            for rel in st.uncached:
                f = self.path / st.wdir / rel
                if f.is_dir() or (f.is_file() and f.stat().st_size > MAX_TEXT):
                    raise BadConfigError(f"dvc.yaml stage {st.name}: cache: false output {rel} must be a text file "
                                         f"of at most {MAX_TEXT} bytes to travel between workspaces")
                if f.is_file():
                    out.files[rel] = f.read_text()
        return out

    def _remote(self, verb: str, *args: str) -> None:
        rc = dvc(self.path, verb, *args, logger=self.log, check=False)
        if rc != 0:
            raise RemoteFailed(f"dvc {verb} with remote {REMOTE!r} ({self.settings.remote_url}) failed with exit "
                               f"code {rc}; the task's retry tries again")


@contextmanager
def workspace(settings: Settings, label: str, commit: str, day: str,
              logger: logging.Logger | None = None) -> Iterator[Workspace]:
    """A new empty folder ``<root>/<label>-<random>`` checked out at ``commit``; removed on the way out."""
    settings.root.mkdir(parents=True, exist_ok=True)
    path = settings.root / f"{label}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        ws = Workspace(settings, path, commit, day, logger)
        ws.checkout()
        yield ws
    finally:
        shutil.rmtree(path, ignore_errors=True)
        (logger or log).info("workspace %s removed", path)


def run_task(settings: Settings, stage_names: Iterable[str], commit: str, day: str,
             upstream: Iterable[Mapping[str, Any] | None], label: str, logger: logging.Logger | None = None,
             after: Any = None) -> dict[str, Any]:
    """Run dvc.yaml stages ``stage_names`` (one task's) in a workspace of their own; the task's XCom.

    ``after(workspace)``, when given, runs in the workspace after the push (the publish task announces the
    version it published from there)."""
    inputs = merge(upstream)
    with workspace(settings, label, commit, day, logger) as ws:
        graph = load_graph(ws.path)
        stages = [graph.stages[n] for n in stage_names]
        ws.write_inputs(inputs)
        ups = {u for st in stages for u in graph.upstream(st.name)} - {st.name for st in stages}
        if missing := sorted(ups - set(inputs.lock)):
            raise RuntimeError(f"no dvc.lock entry handed on by the upstream stages {', '.join(missing)}")
        ws.pull(u for u in ups if set(_outs(inputs.lock[u])) - set(graph.stages[u].uncached))   # cached ones
        publish_dir = _publish_dir(ws.path)
        if any(k == "publish" or k.startswith("publish.dir") for st in stages for k in st.params):
            ws.pull_published(publish_dir)
        for st in stages:
            ws.run(st.name)
        ws.push(st.name for st in stages)
        if any(st.group == "publish" for st in stages):
            ws.push_published(publish_dir)
        result = ws.result(stages)
        if after is not None:
            after(ws)
    return result.to_xcom()


def join_task(settings: Settings, stage_name: str, commit: str, day: str,
              upstream: Iterable[Mapping[str, Any] | None], label: str,
              logger: logging.Logger | None = None) -> None:
    """Run training stage ``stage_name`` as a joining node of a multi-node training (``train.nodes`` > 1): the
    same checkout and upstream inputs as :func:`run_task`, then the stage's cmd, and nothing else. The main
    task's node keeps the outputs (train.distributed: the joining node's ranks write none); this one records
    nothing in dvc.lock and pushes nothing, so a joining node can never overwrite the stage's outputs."""
    inputs = merge(upstream)
    with workspace(settings, label, commit, day, logger) as ws:
        graph = load_graph(ws.path)
        ws.write_inputs(inputs)
        ups = set(graph.upstream(stage_name)) - {stage_name}
        if missing := sorted(ups - set(inputs.lock)):
            raise RuntimeError(f"no dvc.lock entry handed on by the upstream stages {', '.join(missing)}")
        ws.pull(u for u in ups if set(_outs(inputs.lock[u])) - set(graph.stages[u].uncached))
        if any(k == "publish" or k.startswith("publish.dir") for k in graph.stages[stage_name].params):
            ws.pull_published(_publish_dir(ws.path))
        ws.seconds["stage"] = run_stage(ws.path, stage_name, commit=False, logger=ws.log)


def _outs(entry: Mapping[str, Any]) -> list[str]:
    return [str(o["path"]) for o in entry.get("outs") or []]


def _publish_dir(root: Path) -> str:
    from ..config import read_params_file

    return str(read_params_file(root / "params.yaml")["publish"]["dir"])


def record(settings: Settings, commit: str, day: str, results: Iterable[Mapping[str, Any] | None],
           meta: Mapping[str, Any], logger: logging.Logger | None = None, attempts: int = 5) -> str:
    """Assemble the day's dvc.lock from every task's entry, commit it with the run's text files and tag the
    run (:func:`runs.record_run`, in a workspace), then push the tags to the project's repository. A run tag
    another recorder pushed meanwhile is taken again with the next number. Returns the day's tag."""
    from .runs import current_run_tag, record_run

    logger = logger or log
    inputs = merge(results)
    for attempt in range(1, attempts + 1):
        with workspace(settings, "record_run", commit, day, logger) as ws:
            graph = load_graph(ws.path)
            inputs.lock = {name: inputs.lock[name] for name in graph.stages if name in inputs.lock}
            missing = [name for name in graph.stages if name not in inputs.lock]
            if missing:
                raise RuntimeError(f"no dvc.lock entry from the tasks of stages {', '.join(missing)}")
            lock_path = ws.path / "dvc.lock"
            lock_path.write_text(yaml.safe_dump({"schema": "2.0", "stages": inputs.lock}, sort_keys=False))
            ws.write_inputs(TaskResult(files=inputs.files))
            if str(day).lower() == "auto":   # the day is the last stored one: the store says which
                ws.pull(n for n in graph.stages if graph.stages[n].group == "ingest")
            git(ws.path, "fetch", "--quiet", "--force", "origin", "refs/tags/*:refs/tags/*")
            day_tag = record_run(ws.path, day, {**meta, "pushed": True, "pushed_by": "tasks", "commit_of_run": commit},
                                 push=False, logger=logger)
            run_tag = current_run_tag(ws.path, day_tag)
            try:
                git(ws.path, "push", "--quiet", "origin", f"refs/tags/{run_tag}", f"+refs/tags/{day_tag}")
            except GitError as exc:
                if attempt == attempts:
                    raise
                logger.warning("pushing %s failed (%s); recording again", run_tag, str(exc).splitlines()[-1:])
                continue
            logger.info("recorded %s as %s and %s in %s", day, run_tag, day_tag, settings.repo_url)
            return day_tag
    raise AssertionError("unreachable")
