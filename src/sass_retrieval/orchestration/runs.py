"""Daily runs: what each DAG task does, and the versions every run leaves behind.

Executing a stage (``run_stage``)
    The DAG runs a stage's resolved ``cmd`` itself (a subprocess in the stage's wdir, output streamed to
    the task log), then records it in dvc.lock with ``dvc commit -f --no-relink <stage>``. Only that
    bookkeeping step touches DVC, and it runs under :func:`dvc_lock`, an ``fcntl`` lock on
    ``.dvc/tmp/sass-orchestration.lock``: parallel mapped tasks (``split@s0`` ... ``split@s4``) compute
    at the same time but enter DVC one at a time, so DVC's own repo lock is never contended (several
    ``dvc repro`` processes in one workspace fail on it). The result is the dvc.lock ``dvc repro`` would
    write: ``dvc status`` is clean after a DAG run.

    The exit codes of :mod:`sass_retrieval.errors` say what a retry can do. 2 (bad input: the data
    does not validate, an empty source file), 3 (bad config: params.yaml does not validate) and 4 (a
    missing prerequisite) are final: the task fails without retries, downstream tasks do not run, and
    the published model stays in service. Any other non-zero exit (1: a bug or an environment failure,
    5: the workspace was busy) is an ordinary failure that Airflow retries with backoff.

The run's day (``end_date_for`` / ``set_window_end`` / ``resolve_day``)
    The last day of data is the date of the run's ``data_interval_start`` (YYYYMMDD), written into
    params.yaml ``window.end_date`` with a round-trip YAML edit that keeps comments and layout. An
    ``end_date`` of 'auto' stays 'auto' in params.yaml (only ingest knows which days the source has);
    ``record_run`` resolves it afterwards, the way the stages did (``config.resolve_window`` over the
    store), so the day is tagged under its date.

Daily versions (``record_run``, ``list_runs``, ``restore``): the way DVC users version
    Each recorded day is a git commit of dvc.yaml, dvc.lock, params.yaml, metrics/metrics.json,
    reports/publish.json and the plot data, tagged ``day-YYYYMMDD`` (annotated: the tag message is the run's
    metadata as JSON), after ``dvc push`` sent the cache to the default remote. dvc.lock names every model
    and index by content hash, so the tag is enough to compare and restore any day with DVC's own commands:
    ``dvc metrics diff day-A day-B``, ``dvc plots diff day-A day-B``, ``git checkout day-X && dvc checkout``,
    ``dvc get . models/sass --rev day-X``. ``sass runs list | diff | restore`` are thin views over those tags
    (``restore`` is ``dvc get --rev``). A workspace that is not a git repository is ``git init``-ed on its
    first record, and DVC's ``core.no_scm`` is switched off.
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

from ..atomic import swap_dir
from ..config import update_params_file
from ..errors import FINAL_EXIT_CODES, MissingFile, NotADay
from .dvc_graph import load_graph

log = logging.getLogger("sass.orchestration")

LOCK_FILE = ".dvc/tmp/sass-orchestration.lock"
TAG_PREFIX = "day-"
GIT_NAME, GIT_EMAIL = "sass-daily", "sass-daily@localhost"   # only when git has no identity configured
# What a day's git commit holds (DVC's cached outputs are named by hash in dvc.lock, never committed).
# .dvc/config (the remote) and .dvcignore make the tag a DVC repository of its own for `dvc get --rev`.
RECORDED_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", "metrics/metrics.json", "reports/publish.json",
                  "plots/per_scenario.json", "plots/metric_vs_k.json", "plots/table.md",
                  ".dvc/config", ".dvc/.gitignore", ".dvcignore",
                  # what DVC writes beside the outputs in those folders (e.g. metrics/per_pair.npz is an output):
                  # committed with the day so the workspace is clean after a recorded run
                  "metrics/.gitignore", "plots/.gitignore", "reports/.gitignore")
REQUIRED_FILES = ("dvc.lock", "params.yaml")
RESTORED_PREFIXES = ("models", "indexes")
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
    env.setdefault("DVC_NO_ANALYTICS", "1")
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
        raise NotADay(f"not a day: {value!r} (want YYYYMMDD or an ISO date)") from exc


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


def resolve_day(root: str | Path, day: str | int) -> str:
    """The run's day as YYYYMMDD. 'auto' is resolved as every stage resolved it: the last day of the
    window ``config.resolve_window`` builds from params.yaml and the days in the store it names (so a
    run triggered with ``end_date=auto`` is recorded under the day its stages actually ran on)."""
    if str(day).strip().lower() != "auto":
        return as_day(day)
    from ..config import get, load_params, resolve_window
    from ..data.schema import stored_dates

    root = Path(root)
    params = load_params(root / "params.yaml", validate=False)   # the `params` stage checked it
    store = Path(get(params, "data.store_dir"))
    return str(resolve_window(params, stored_dates(store if store.is_absolute() else root / store)).test_end)


def set_window_end(params_path: str | Path, end_date: str | int) -> Any:
    """Write ``window.end_date`` into params.yaml, keeping comments and layout; returns the previous value."""
    value: str | int = "auto" if str(end_date) == "auto" else int(as_day(end_date))
    return update_params_file(params_path, {"window.end_date": value})["window.end_date"]


# ---------------------------------------------------------------- recording a day (git + DVC)

def git(root: str | Path, *args: str, check: bool = True, identity: bool = False) -> str:
    """``git <args>`` in ``root``; returns stdout. ``identity``: a fallback author when git has none."""
    cmd = ["git"]
    if identity and not subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True,
                                       text=True).stdout.strip():
        cmd += ["-c", f"user.name={GIT_NAME}", "-c", f"user.email={GIT_EMAIL}"]
    out = subprocess.run([*cmd, *args], cwd=root, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def is_git_root(root: str | Path) -> bool:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    return out.returncode == 0 and Path(out.stdout.strip()).resolve() == Path(root).resolve()


def ensure_git(root: str | Path, logger: logging.Logger | None = None) -> bool:
    """Make the workspace a git repository if it is not the root of one (``git init``), and turn off DVC's
    ``core.no_scm`` so DVC tracks outputs the git way from then on. Returns True when it initialised git."""
    root = Path(root)
    if is_git_root(root):
        return False
    git(root, "init", "-q")
    if (root / ".dvc").is_dir():
        with dvc_lock(root):
            dvc(root, "config", "core.no_scm", "false", logger=logger)
    (logger or log).info("initialised a git repository in %s to record daily versions", root)
    return True


def record_run(root: str | Path, day: str, meta: Mapping[str, Any] | None = None, *, push: bool = True,
               logger: logging.Logger | None = None) -> str:
    """Record this run as day ``day`` (YYYYMMDD, or 'auto': :func:`resolve_day`): ``dvc push``, then a git commit of the run's text files (dvc.lock,
    dvc.yaml, params.yaml, metrics, publish decision, plot data: :data:`RECORDED_FILES`) and the annotated
    tag ``day-YYYYMMDD`` on it, whose message is ``meta`` as JSON. Returns the tag.

    Only those paths are committed (other changes in the workspace stay as they are). A rerun of the same
    day moves its tag. A workspace that is not a git repository is ``git init``-ed first.
    """
    logger = logger or log
    root = Path(root).resolve()
    requested, day = str(day), resolve_day(root, day)
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise MissingFile(f"can not record run {day}: missing {', '.join(missing)} in {root}")
    ensure_git(root, logger)
    info = {"day": day, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "pushed": False, **({"end_date": requested} if requested != day else {}), **dict(meta or {})}
    if push:
        with dvc_lock(root):
            dvc(root, "push", "--quiet", logger=logger)
        info.update(pushed=True, pushed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        logger.info("pushed the DVC cache to the default remote")
    files = [f for f in RECORDED_FILES if (root / f).is_file()]
    git(root, "add", "-f", "--", *files)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *files], cwd=root).returncode != 0
    has_head = subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=root,
                              capture_output=True).returncode == 0
    if staged or not has_head:
        git(root, "commit", "-q", "--allow-empty", "--no-verify", "-m", f"day {day}: dvc.lock, params and metrics",
            "--only", "--", *files, identity=True)
    tag = TAG_PREFIX + day
    git(root, "tag", "-f", "-a", tag, "-m", json.dumps(info, sort_keys=True, default=str), identity=True)
    logger.info("recorded run %s as git tag %s (%s)", day, tag, ", ".join(files))
    return tag


# ---------------------------------------------------------------- listing

@dataclass
class RunInfo:
    day: str
    tag: str
    ndcg50: dict[str, float | None] = field(default_factory=dict)   # reference row -> macro NDCG@50
    published: bool | None = None
    version: str | None = None
    winner: str | None = None
    reason: str | None = None
    pushed: bool | None = None


def _show_json(root: Path, rev: str, path: str) -> Any:
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout)
    except ValueError:
        return None


def _declared_rows(params_text: str) -> list[str]:
    """The reference rows in the order the run's params.yaml lists them (evaluate.rows)."""
    import yaml

    try:
        rows = (yaml.safe_load(params_text) or {}).get("evaluate", {}).get("rows", [])
        return [str(r) for r in rows]
    except (ValueError, AttributeError, yaml.YAMLError):
        return []


def recorded_days(root: str | Path) -> list[str]:
    root = Path(root)
    if not is_git_root(root):
        return []
    tags = git(root, "tag", "-l", f"{TAG_PREFIX}*", check=False).split()
    return sorted(t[len(TAG_PREFIX):] for t in tags if _DAY.match(t[len(TAG_PREFIX):]))


def list_runs(root: str | Path) -> list[RunInfo]:
    root = Path(root)
    out: list[RunInfo] = []
    for day in recorded_days(root):
        tag = TAG_PREFIX + day
        info = RunInfo(day=day, tag=tag)
        metrics = _show_json(root, tag, "metrics/metrics.json") or {}
        rows = metrics.get("rows") or ({"sass": metrics["sass"]} if "sass" in metrics else {})
        params = subprocess.run(["git", "show", f"{tag}:params.yaml"], cwd=root, capture_output=True, text=True)
        order = _declared_rows(params.stdout)
        for row in sorted(rows, key=lambda r: (order.index(r) if r in order else len(order), r)):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                info.ndcg50[row] = float(rows[row]["macro"]["ndcg@50"])
        pub = _show_json(root, tag, "reports/publish.json")
        if isinstance(pub, dict):
            info.published = bool(pub.get("publish"))
            info.version, info.reason, info.winner = pub.get("version"), pub.get("reason"), pub.get("winner")
        with contextlib.suppress(ValueError):
            meta = json.loads(git(root, "tag", "-l", "--format=%(contents)", tag, check=False) or "{}")
            info.pushed = meta.get("pushed") if isinstance(meta, dict) else None
        out.append(info)
    return out


def format_runs(runs: Sequence[RunInfo]) -> str:
    """A table: day, macro NDCG@50 of every reference row, published or not (which row), version."""
    if not runs:
        return f"no runs recorded yet (git tags {TAG_PREFIX}YYYYMMDD are written by the DAG's record_run task)"
    rows: list[str] = []
    for r in runs:
        rows += [k for k in r.ndcg50 if k not in rows]
    header = ["day", *[f"{row} ndcg@50" for row in rows], "published", "version"]
    lines = [header]
    for r in runs:
        pub = "-" if r.published is None else (f"yes ({r.winner})" if r.published and r.winner else
                                                "yes" if r.published else "no")
        lines.append([r.day, *[("-" if r.ndcg50.get(row) is None else f"{r.ndcg50[row]:.4f}") for row in rows],
                      pub, r.version or "-"])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def diff_runs(root: str | Path, a: str, b: str) -> str:
    """Macro metrics of every reference row, day a vs day b (``dvc metrics diff day-A day-B`` shows every metric)."""
    root = Path(root)
    out = [f"{'row':<12} {'metric':<14} {as_day(a):>10} {as_day(b):>10} {'change':>9}"]
    ma = _show_json(root, TAG_PREFIX + as_day(a), "metrics/metrics.json") or {}
    mb = _show_json(root, TAG_PREFIX + as_day(b), "metrics/metrics.json") or {}
    if not ma or not mb:
        raise MissingFile(f"metrics missing for {a if not ma else b} (no tag {TAG_PREFIX}{as_day(a if not ma else b)} "
                                "with metrics/metrics.json)")
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
    path: str           # "models", "indexes"
    outputs: list[str]  # the DVC outputs under it at that day ("models/sass", ...)
    files: int = 0
    bytes: int = 0
    destination: str = ""


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


def restore(root: str | Path, day: str, to: str | Path | None = None, *, remote: str | None = None,
            prefixes: Sequence[str] = RESTORED_PREFIXES) -> list[Restored]:
    """Bring back ``day``'s ``models/`` and ``indexes/`` with ``dvc get <root> <prefix> --rev day-YYYYMMDD``.

    DVC reads the objects named by that day's dvc.lock from the local cache, or else from the remote
    (``remote`` or the default one). ``to=DIR`` writes ``DIR/models`` and ``DIR/indexes``; ``to=None``
    swaps them into the workspace atomically (dvc.lock then still describes the latest run: `dvc checkout`
    brings it back). The DVC way to restore a whole day is ``git checkout day-YYYYMMDD && dvc checkout``.
    """
    import yaml

    root = Path(root).resolve()
    day = as_day(day)
    tag = TAG_PREFIX + day
    if day not in recorded_days(root):
        known = ", ".join(recorded_days(root)) or "none"
        raise MissingFile(f"no recorded run {day} (no git tag {tag}; recorded runs: {known})")
    lock = yaml.safe_load(git(root, "show", f"{tag}:dvc.lock")) or {}
    outs = [o["path"] for _, o in lock_outputs(lock, prefixes)]
    if not outs:
        raise ValueError(f"dvc.lock of {tag} lists no cached output under {', '.join(prefixes)}")
    dest_root = Path(to).resolve() if to is not None else root
    restored: list[Restored] = []
    for prefix in prefixes:
        under = [o for o in outs if o == prefix or o.startswith(prefix + "/")]
        if not under:
            continue
        dest = dest_root / prefix
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.restore")
        try:
            args = ["get", str(root), prefix, "--rev", tag, "-o", str(tmp), "--quiet"]
            if remote:
                args += ["--remote", remote]
            rc = dvc(root, *args, check=False)
            if rc != 0:
                raise MissingFile(f"dvc get {prefix} --rev {tag} failed (exit {rc}): objects neither in the "
                                        "local cache nor on the remote?")
            for f in list(tmp.rglob(".gitignore")):  # git's bookkeeping of the outputs, not data
                f.unlink()
            files = [f for f in tmp.rglob("*") if f.is_file()]
            item = Restored(path=prefix, outputs=under, files=len(files), bytes=sum(f.stat().st_size for f in files),
                            destination=str(dest))
            swap_dir(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        restored.append(item)
    return restored


def format_restored(day: str, restored: Sequence[Restored], to: str | Path | None) -> str:
    lines = [f"restored run {as_day(day)} (git tag {TAG_PREFIX}{as_day(day)}, dvc get; "
             f"{'into ' + str(to) if to else 'into the workspace'}):"]
    for r in restored:
        lines.append(f"  {r.path:<8} {r.files:>4} files  {r.bytes / 1e6:8.2f} MB  -> {r.destination}  "
                     f"({', '.join(r.outputs)})")
    if to is None:
        lines.append("note: dvc.lock still describes the latest run, so `dvc status` shows these outputs as "
                     "modified; `dvc checkout` brings the latest run's outputs back.")
    return "\n".join(lines)
