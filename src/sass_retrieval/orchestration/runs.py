"""Daily runs: what each DAG task does, and the versions every run leaves behind.

Executing a stage (``run_stage``)
    The DAG runs a stage's resolved ``cmd`` itself (a subprocess in the stage's wdir, output streamed to
    the task log), then records it in dvc.lock with ``dvc commit -f --no-relink <stage>``. Only that
    bookkeeping step touches DVC, and it runs under :func:`dvc_lock`, an ``fcntl`` lock on
    ``.dvc/tmp/sass-orchestration.lock``: parallel mapped tasks (``split@s0`` ... ``split@s4``) compute
    at the same time but enter DVC one at a time, so DVC's own repo lock is never contended (several
    ``dvc repro`` processes in one workspace fail on it). The result is the dvc.lock ``dvc repro`` would
    write: ``dvc status`` is clean after a DAG run.

    Exit code 2 (the validation stage's "data is bad", or a usage error) and exit code 3 (the
    ``params`` stage's "params.yaml does not validate") are final: the task fails without retries,
    downstream tasks do not run, and the published model stays in service. Any other non-zero exit is
    an ordinary failure that Airflow retries with backoff.

The run's day (``end_date_for`` / ``set_window_end``)
    The last day of data is the date of the run's ``data_interval_start`` (YYYYMMDD), written into
    params.yaml ``window.end_date`` with a round-trip YAML edit that keeps comments and layout.

Daily versions (``record_run``, ``list_runs``, ``restore``)
    ``runs/<YYYYMMDD>/`` keeps a copy of dvc.lock, params.yaml, metrics/metrics.json,
    reports/publish.json (and the plots data) plus ``run.json``; the DVC cache then goes to the default
    remote with ``dvc push``. dvc.lock names every output by content hash, so a saved dvc.lock is enough
    to bring back that day's ``models/`` and ``indexes/``: the objects are read from the local DVC cache
    (``.dvc/cache/files/md5/..``; a directory is a ``.dir`` manifest of its files), fetched from the
    remote first when the cache no longer has them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import update_params_file
from .dvc_graph import load_graph

log = logging.getLogger("sass.orchestration")

LOCK_FILE = ".dvc/tmp/sass-orchestration.lock"
RUNS_DIR = "runs"
# What runs/<day>/ keeps: source path in the project -> name in the run folder.
RECORDED_FILES = {
    "dvc.lock": "dvc.lock",
    "params.yaml": "params.yaml",
    "metrics/metrics.json": "metrics.json",
    "reports/publish.json": "publish.json",
    "reports/validation/summary.json": "validation.json",
    "plots/per_scenario.json": "plots/per_scenario.json",
    "plots/metric_vs_k.json": "plots/metric_vs_k.json",
    "plots/table.md": "plots/table.md",
}
REQUIRED_FILES = ("dvc.lock", "params.yaml")
RESTORED_PREFIXES = ("models", "indexes")
FINAL_EXIT_CODES = (2, 3)  # 2: validation failure / usage error, 3: invalid params.yaml: retrying can not help
_DAY = re.compile(r"^\d{8}$")


class StageFailed(RuntimeError):
    def __init__(self, stage: str, returncode: int):
        self.stage, self.returncode = stage, returncode
        super().__init__(f"stage {stage!r} exited with code {returncode}")

    @property
    def final(self) -> bool:
        return self.returncode in FINAL_EXIT_CODES


def project_root(default: str | Path | None = None) -> Path:
    """$SASS_PROJECT_DIR, else ``default``, else the repo this package lives in."""
    env = os.environ.get("SASS_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    if default is not None:
        return Path(default).resolve()
    return Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- subprocesses and the DVC lock

@contextlib.contextmanager
def dvc_lock(root: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Process-level exclusive lock around every DVC call the DAG makes (fcntl.flock, blocking)."""
    path = Path(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (fcntl.LOCK_NB if timeout is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"could not take {path} within {timeout}s") from None
                time.sleep(0.2)
        waited = time.monotonic() - t0
        if waited > 1:
            log.info("waited %.1fs for the DVC lock", waited)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def stage_env(root: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a stage subprocess: this interpreter's bin first on PATH (``python`` in a cmd is the
    project's venv), the project's src/ and root on PYTHONPATH, unbuffered output."""
    root = Path(root).resolve()
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")]).rstrip(os.pathsep)
    paths = [str(root / "src"), str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["SASS_PROJECT_DIR"] = str(root)
    env.pop("VIRTUAL_ENV_PROMPT", None)
    return env


def stream(cmd: str | Sequence[str], cwd: str | Path, env: Mapping[str, str], prefix: str = "",
           logger: logging.Logger | None = None) -> int:
    """Run ``cmd`` (a shell string or an argv list), stream its merged output line by line to the log."""
    logger = logger or log
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=dict(env), shell=isinstance(cmd, str),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=False)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            logger.info("%s%s", prefix, line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        # The task was killed or timed out: do not leave the stage running behind Airflow's back.
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def dvc(root: str | Path, *args: str, logger: logging.Logger | None = None, check: bool = True) -> int:
    """``dvc <args>`` with this interpreter, in ``root``, output streamed to the log. Call it under dvc_lock."""
    # --wait-for-lock: a DVC command someone runs by hand in the workspace delays us instead of failing us
    rc = stream([sys.executable, "-m", "dvc", "--wait-for-lock", *args], root, stage_env(root), "[dvc] ", logger)
    if check and rc != 0:
        raise RuntimeError(f"dvc {' '.join(args)} exited with code {rc}")
    return rc


def run_stage(root: str | Path, stage: str, *, commit: bool = True, logger: logging.Logger | None = None) -> float:
    """Run one resolved dvc.yaml stage's cmd, then (under the lock) record it in dvc.lock. Returns seconds.

    The cmd is resolved from dvc.yaml at run time, so the task always runs exactly what ``dvc repro``
    would. Raises :class:`StageFailed` on a non-zero exit.
    """
    logger = logger or log
    root = Path(root).resolve()
    graph = load_graph(root)
    if stage not in graph.stages:
        raise KeyError(f"no stage {stage!r} in {root / 'dvc.yaml'} (stages: {', '.join(graph.stages)})")
    st = graph.stages[stage]
    logger.info("stage %s: %s  (in %s)", stage, st.cmd, root / st.wdir)
    t0 = time.perf_counter()
    rc = stream(st.cmd, root / st.wdir, stage_env(root), "", logger)
    seconds = time.perf_counter() - t0
    if rc != 0:
        logger.error("stage %s failed with exit code %d after %.1fs", stage, rc, seconds)
        raise StageFailed(stage, rc)
    logger.info("stage %s done in %.1fs", stage, seconds)
    if commit:
        with dvc_lock(root):
            dvc(root, "commit", "--force", "--no-relink", "--quiet", stage, logger=logger)
        logger.info("stage %s recorded in dvc.lock", stage)
    return seconds


# ---------------------------------------------------------------- the run's day

def as_day(value: Any) -> str:
    """A date, datetime, pendulum DateTime, 'YYYYMMDD' or 'YYYY-MM-DD...' string -> 'YYYYMMDD'."""
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime("%Y%m%d")
    s = str(value).strip()
    if _DAY.match(s):
        return s
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).strftime("%Y%m%d")
    except ValueError as exc:
        raise ValueError(f"not a day: {value!r} (want YYYYMMDD or an ISO date)") from exc


def end_date_for(*, override: Any = None, data_interval_start: Any = None, logical_date: Any = None,
                 run_after: Any = None) -> str:
    """The run's last day of data, YYYYMMDD (or 'auto').

    An explicit override (DAG param / run conf ``end_date``: YYYYMMDD or 'auto') wins; else the date of
    ``data_interval_start``; a manual run without a data interval falls back to its logical date, or to
    the day before ``run_after`` (the last complete day).
    """
    if override not in (None, ""):
        return "auto" if str(override).strip().lower() == "auto" else as_day(override)
    if data_interval_start is not None:
        return as_day(data_interval_start)
    if logical_date is not None:
        return as_day(logical_date)
    if run_after is not None:
        ra = run_after if isinstance(run_after, dt.datetime) else dt.datetime.fromisoformat(str(run_after))
        return as_day(ra - dt.timedelta(days=1))
    raise ValueError("no data interval, logical date or run_after to take the run's day from")


def set_window_end(params_path: str | Path, end_date: str | int) -> Any:
    """Write ``window.end_date`` into params.yaml, keeping comments and layout; returns the previous value."""
    value: str | int = "auto" if str(end_date) == "auto" else int(as_day(end_date))
    return update_params_file(params_path, {"window.end_date": value})["window.end_date"]


# ---------------------------------------------------------------- recording a day

def _git_rev(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def record_run(root: str | Path, day: str, meta: Mapping[str, Any] | None = None, *, push: bool = True,
               runs_dir: str | Path = RUNS_DIR, logger: logging.Logger | None = None) -> Path:
    """Copy this run's dvc.lock, params, metrics and publish decision to ``runs/<day>/``; push the cache.

    A rerun of the same day replaces its folder (atomically: written aside, then renamed into place).
    """
    logger = logger or log
    root = Path(root).resolve()
    day = as_day(day)
    runs = (root / runs_dir).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise FileNotFoundError(f"can not record run {day}: missing {', '.join(missing)} in {root}")
    tmp = runs / f".{day}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    copied = []
    try:
        for src, name in RECORDED_FILES.items():
            if (root / src).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / src, tmp / name)
                copied.append(name)
        info = {"day": day, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "git_rev": _git_rev(root), "files": copied, "pushed": False, **dict(meta or {})}
        (tmp / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        target = runs / day
        if target.exists():
            old = runs / f".{day}.{uuid.uuid4().hex}.old"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("recorded run %s in %s (%s)", day, target, ", ".join(copied))
    if push:
        with dvc_lock(root):
            dvc(root, "push", "--quiet", logger=logger)
        info["pushed"] = True
        info["pushed_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        (target / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        logger.info("pushed the DVC cache to the default remote")
    return target


# ---------------------------------------------------------------- listing

@dataclass
class RunInfo:
    day: str
    path: Path
    ndcg50: dict[str, float | None] = field(default_factory=dict)   # reference row -> macro NDCG@50
    published: bool | None = None
    version: str | None = None
    reason: str | None = None
    pushed: bool | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _declared_rows(params_path: Path) -> list[str]:
    """The reference rows in the order the run's params.yaml lists them (evaluate.rows)."""
    import yaml

    try:
        rows = (yaml.safe_load(params_path.read_text()) or {}).get("evaluate", {}).get("rows", [])
        return [str(r) for r in rows]
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return []


def list_runs(root: str | Path, runs_dir: str | Path = RUNS_DIR) -> list[RunInfo]:
    runs = Path(root) / runs_dir
    out: list[RunInfo] = []
    if not runs.is_dir():
        return out
    for d in sorted(p for p in runs.iterdir() if p.is_dir() and _DAY.match(p.name)):
        info = RunInfo(day=d.name, path=d)
        metrics = _read_json(d / "metrics.json") or {}
        rows = metrics.get("rows") or ({"sass": metrics["sass"]} if "sass" in metrics else {})
        order = _declared_rows(d / "params.yaml")
        for row in sorted(rows, key=lambda r: (order.index(r) if r in order else len(order), r)):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                info.ndcg50[row] = float(rows[row]["macro"]["ndcg@50"])
        pub = _read_json(d / "publish.json")
        if isinstance(pub, dict):
            info.published = bool(pub.get("publish"))
            info.version, info.reason = pub.get("version"), pub.get("reason")
        meta = _read_json(d / "run.json")
        if isinstance(meta, dict):
            info.pushed = meta.get("pushed")
        out.append(info)
    return out


def format_runs(runs: Sequence[RunInfo]) -> str:
    """A table: day, macro NDCG@50 of every reference row, published or not, version."""
    if not runs:
        return "no runs recorded yet (runs/<YYYYMMDD>/ is written by the DAG's record_run task)"
    rows: list[str] = []
    for r in runs:
        rows += [k for k in r.ndcg50 if k not in rows]
    header = ["day", *[f"{row} ndcg@50" for row in rows], "published", "version"]
    lines = [header]
    for r in runs:
        pub = "-" if r.published is None else ("yes" if r.published else "no")
        lines.append([r.day, *[("-" if r.ndcg50.get(row) is None else f"{r.ndcg50[row]:.4f}") for row in rows],
                      pub, r.version or "-"])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def diff_runs(root: str | Path, a: str, b: str, runs_dir: str | Path = RUNS_DIR) -> str:
    """Macro metrics of every reference row, day a vs day b (like ``dvc metrics diff`` for two runs)."""
    out = [f"{'row':<12} {'metric':<14} {as_day(a):>10} {as_day(b):>10} {'change':>9}"]
    ma = _read_json(Path(root) / runs_dir / as_day(a) / "metrics.json") or {}
    mb = _read_json(Path(root) / runs_dir / as_day(b) / "metrics.json") or {}
    if not ma or not mb:
        raise FileNotFoundError(f"metrics missing for {a if not ma else b} under {Path(root) / runs_dir}")
    for row in dict.fromkeys([*ma.get("rows", {}), *mb.get("rows", {})]):
        macro_a = (ma.get("rows", {}).get(row) or {}).get("macro", {})
        macro_b = (mb.get("rows", {}).get(row) or {}).get("macro", {})
        for metric in dict.fromkeys([*macro_a, *macro_b]):
            va, vb = macro_a.get(metric), macro_b.get(metric)
            fa = "-" if va is None else f"{va:.4f}"
            fb = "-" if vb is None else f"{vb:.4f}"
            ch = "-" if va is None or vb is None else f"{vb - va:+.4f}"
            out.append(f"{row:<12} {metric:<14} {fa:>10} {fb:>10} {ch:>9}")
    return "\n".join(out)


# ---------------------------------------------------------------- restoring

@dataclass
class Restored:
    path: str           # the output's path in the project ("models/sass")
    md5: str            # its hash in the saved dvc.lock ("...dir" for a folder)
    stage: str
    files: int = 0
    bytes: int = 0
    destination: str = ""
    fetched: bool = False   # objects had to be fetched from the remote first


def lock_outputs(lock: Mapping[str, Any], prefixes: Sequence[str] = RESTORED_PREFIXES) -> list[tuple[str, dict[str, Any]]]:
    """(stage, out) for every cached output in a dvc.lock under one of ``prefixes``, outermost only."""
    found: list[tuple[str, dict[str, Any]]] = []
    for stage, body in (lock.get("stages") or {}).items():
        for out in body.get("outs") or []:
            p = posixpath.normpath(str(out.get("path", "")))
            if out.get("md5") and any(p == pre or p.startswith(pre + "/") for pre in prefixes):
                found.append((stage, {**out, "path": p}))
    paths = [o["path"] for _, o in found]
    return [(s, o) for s, o in found
            if not any(o["path"] != q and o["path"].startswith(q + "/") for q in paths)]


def _object_path(odb_dir: Path, md5: str) -> Path:
    """Where a DVC object database keeps ``md5`` (``.dvc/cache/files/md5/ab/cdef...`` for DVC 3 hashes)."""
    return odb_dir / md5[:2] / md5[2:]


def _missing_objects(odb_dir: Path, md5: str) -> list[str]:
    obj = _object_path(odb_dir, md5)
    if not obj.exists():
        return [md5]
    if not md5.endswith(".dir"):
        return []
    entries = json.loads(obj.read_text())
    return [e["md5"] for e in entries if not _object_path(odb_dir, e["md5"]).exists()]


def _materialize(odb_dir: Path, md5: str, dest: Path) -> tuple[int, int]:
    """Copy one object (file, or a .dir manifest's files) out of the cache into ``dest``, atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.restore")
    files = nbytes = 0
    try:
        if md5.endswith(".dir"):
            tmp.mkdir()
            for e in json.loads(_object_path(odb_dir, md5).read_text()):
                target = tmp / e["relpath"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(_object_path(odb_dir, e["md5"]), target)
                files += 1
                nbytes += target.stat().st_size
        else:
            shutil.copyfile(_object_path(odb_dir, md5), tmp)
            files, nbytes = 1, tmp.stat().st_size
        if dest.exists() or dest.is_symlink():
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
            dest.rename(old)
            tmp.rename(dest)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return files, nbytes


def restore(root: str | Path, day: str, to: str | Path | None = None, *, fetch: bool = True,
            remote: str | None = None, prefixes: Sequence[str] = RESTORED_PREFIXES,
            runs_dir: str | Path = RUNS_DIR) -> list[Restored]:
    """Bring back ``day``'s ``models/`` and ``indexes/`` outputs, as named by ``runs/<day>/dvc.lock``.

    Objects come from the local DVC cache; missing ones are fetched from the DVC remote (``remote`` or
    the default one) first. ``to=None`` replaces the outputs in the workspace (each one swapped in
    atomically); ``to=DIR`` writes ``DIR/models/...`` and ``DIR/indexes/...`` and leaves the workspace alone.
    """
    import yaml

    root = Path(root).resolve()
    day = as_day(day)
    lock_path = root / runs_dir / day / "dvc.lock"
    if not lock_path.exists():
        known = ", ".join(r.day for r in list_runs(root, runs_dir)) or "none"
        raise FileNotFoundError(f"no recorded run {day} ({lock_path} missing; recorded runs: {known})")
    lock = yaml.safe_load(lock_path.read_text()) or {}
    outs = lock_outputs(lock, prefixes)
    if not outs:
        raise ValueError(f"{lock_path} lists no cached output under {', '.join(prefixes)}")

    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        dest_root = Path(to).resolve() if to is not None else root
        restored: list[Restored] = []
        for stage, out in outs:
            md5, legacy = str(out["md5"]), out.get("hash") != "md5"
            odb = repo.cache.legacy if legacy else repo.cache.local
            odb_dir = Path(odb.path)
            item = Restored(path=out["path"], md5=md5, stage=stage)
            if _missing_objects(odb_dir, md5):
                if not fetch:
                    raise FileNotFoundError(f"{out['path']} ({md5}) is not in the local DVC cache")
                _fetch(repo, md5, legacy, remote)
                item.fetched = True
                still = _missing_objects(odb_dir, md5)
                if still:
                    raise FileNotFoundError(f"{out['path']} ({md5}): {len(still)} object(s) are neither in the "
                                            "local cache nor on the remote")
            dest = dest_root / out["path"]
            item.files, item.bytes = _materialize(odb_dir, md5, dest)
            item.destination = str(dest)
            restored.append(item)
        return restored
    finally:
        repo.close()


def _fetch(repo: Any, md5: str, legacy: bool, remote: str | None) -> None:
    """Fetch one object (a file, or a directory manifest and then all its files) from a DVC remote."""
    from dvc_data.hashfile.hash_info import HashInfo

    name = "md5-dos2unix" if legacy else "md5"
    odb_dir = Path((repo.cache.legacy if legacy else repo.cache.local).path)
    with dvc_lock(repo.root_dir):
        failed = set(repo.cloud.pull([HashInfo(name, md5)], remote=remote).failed)
        if not failed and md5.endswith(".dir"):
            missing = _missing_objects(odb_dir, md5)
            if missing:
                failed |= set(repo.cloud.pull([HashInfo(name, h) for h in missing], remote=remote).failed)
    if failed:
        raise FileNotFoundError(f"could not fetch {md5} from the DVC remote: {len(failed)} object(s) failed")


def format_restored(day: str, restored: Sequence[Restored], to: str | Path | None) -> str:
    lines = [f"restored run {as_day(day)} ({'into ' + str(to) if to else 'into the workspace'}):"]
    w = max(len(r.path) for r in restored)
    for r in restored:
        src = "remote -> cache" if r.fetched else "cache"
        lines.append(f"  {r.path.ljust(w)}  {r.md5:<36}  {r.files:>4} files  {r.bytes / 1e6:8.2f} MB  "
                     f"from {src}  -> {r.destination}")
    if to is None:
        lines.append("note: dvc.lock still describes the latest run, so `dvc status` shows these outputs as "
                     "modified; `dvc checkout` brings the latest run's outputs back.")
    return "\n".join(lines)
