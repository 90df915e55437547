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
    Each recorded run is a git commit of dvc.yaml, dvc.lock, params.yaml, metrics/metrics.json,
    reports/publish.json and the plot data, made after ``dvc push`` sent the cache to the default remote,
    with two annotated tags whose message is the run's metadata as JSON (day, end_date as requested,
    recorded_at, pushed, the Airflow run_id and data interval, run_tag):

    - ``run-YYYYMMDD-NN``, the run's own tag: NN numbers the day's runs from 01 (zero-padded, so a day's
      tags sort by name). It is created with ``git tag`` without ``-f``, never moved: two runs of one day
      are two tags, even when their files are identical (both then name the same commit).
    - ``day-YYYYMMDD``, the day's current run: the latest run recorded for that day, moved by each rerun.

    dvc.lock names every model and index by content hash, so a tag is enough to compare and restore any
    run with DVC's own commands: ``dvc metrics diff day-A day-B`` (or two runs of a day: ``run-A-01 run-A-02``),
    ``dvc plots diff``, ``git checkout day-X && dvc checkout``, ``dvc get . models/sass --rev day-X``. ``sass runs list |
    diff | restore`` are thin views over those tags (``restore`` is ``dvc get --rev``): ``list`` shows one
    line per run tag, ordered by ``recorded_at``, with the day's current run marked; ``diff`` and ``restore``
    take a day (its current run) or a run tag. A run recorded before run tags existed (a ``day-`` tag only)
    lists as one row; when its day is recorded again it first gets a run tag of its own, so it stays listed.
    A workspace that is not a git repository is ``git init``-ed on its first record, and DVC's
    ``core.no_scm`` is switched off.
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
TAG_PREFIX = "day-"      # the day's current run: moved by a rerun of the day
RUN_PREFIX = "run-"      # one per run, run-YYYYMMDD-NN: created once, never moved
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
_RUN_TAG = re.compile(r"^run-(\d{8})-(\d{2,})$")


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
    from ..config import get, read_params_file, resolve_window
    from ..data.schema import stored_dates

    root = Path(root)
    params = read_params_file(root / "params.yaml")   # the `params` stage checked it
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
    """Record this run as day ``day`` (YYYYMMDD, or 'auto': :func:`resolve_day`): ``dvc push``, then a git
    commit of the run's text files (dvc.lock, dvc.yaml, params.yaml, metrics, publish decision, plot data:
    :data:`RECORDED_FILES`), the run's own annotated tag ``run-YYYYMMDD-NN`` (created once, never moved) and
    the day's tag ``day-YYYYMMDD`` (moved onto this run), both with ``meta`` as JSON (plus ``day``,
    ``end_date`` as requested, ``recorded_at``, ``pushed``, ``run_tag``). Returns the day's tag; the run's
    tag is :func:`current_run_tag` of it.

    Only those paths are committed (other changes in the workspace stay as they are); a run whose files did
    not change tags the existing commit. A workspace that is not a git repository is ``git init``-ed first.
    """
    logger = logger or log
    root = Path(root).resolve()
    requested, day = str(day), resolve_day(root, day)
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise MissingFile(f"can not record run {day}: missing {', '.join(missing)} in {root}")
    ensure_git(root, logger)
    info = {"day": day, "end_date": requested, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "pushed": False, **dict(meta or {})}
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
    commit = git(root, "rev-parse", "HEAD").strip()
    tag = TAG_PREFIX + day
    _keep_untagged_run(root, day, logger)
    run_tag, message = _create_run_tag(root, day, commit, info)
    git(root, "tag", "-f", "-a", tag, "-m", message, commit, identity=True)
    logger.info("recorded run %s as git tags %s and %s (%s)", day, run_tag, tag, ", ".join(files))
    return tag


def current_run_tag(root: str | Path, day: str) -> str | None:
    """The run tag ``day-YYYYMMDD`` (or a day) currently points to; None for a day recorded before run tags
    or not recorded."""
    tag, _ = _parse_ref(day)
    found = _read_tags(Path(root), tag).get(tag)
    run_tag = found.meta.get("run_tag") if found else None
    return str(run_tag) if run_tag and _tag_exists(Path(root), str(run_tag)) else None


def run_tag_name(day: str, number: int) -> str:
    """``run-YYYYMMDD-NN``: NN counts the day's runs from 01 (zero-padded, so the tags of a day sort by name
    up to 99 runs; a 100th is ``-100`` and still sorts right by number, as :func:`list_runs` does)."""
    return f"{RUN_PREFIX}{as_day(day)}-{number:02d}"


def _create_run_tag(root: Path, day: str, commit: str, info: Mapping[str, Any]) -> tuple[str, str]:
    """Create the next free ``run-YYYYMMDD-NN`` on ``commit`` (``git tag`` without ``-f``: an existing tag is
    never touched; a name taken meanwhile by another recorder moves on to the next number)."""
    for _ in range(1000):
        numbers = [int(m.group(2)) for t in git(root, "tag", "-l", f"{RUN_PREFIX}{day}-*", check=False).split()
                   if (m := _RUN_TAG.match(t)) and m.group(1) == day]
        name = run_tag_name(day, max(numbers, default=0) + 1)
        message = json.dumps({**info, "run_tag": name}, sort_keys=True, default=str)
        try:
            git(root, "tag", "-a", name, "-m", message, commit, identity=True)
            return name, message
        except RuntimeError:
            if not _tag_exists(root, name):
                raise
    raise RuntimeError(f"could not create a run tag for day {day}")


def _keep_untagged_run(root: Path, day: str, logger: logging.Logger) -> None:
    """Before the day's tag moves: a run recorded before run tags existed (its ``day-`` tag names no
    existing ``run-`` tag) gets its own run tag on its commit, with its metadata, so it still lists."""
    day_tag = _read_tags(root, TAG_PREFIX + day).get(TAG_PREFIX + day)
    if day_tag is None or (day_tag.meta.get("run_tag") and _tag_exists(root, str(day_tag.meta["run_tag"]))):
        return
    name, _ = _create_run_tag(root, day, day_tag.commit, {**day_tag.meta, "tagged_from": day_tag.name})
    logger.info("kept the earlier run of %s (tag %s, recorded before run tags) as %s", day, day_tag.name, name)


def _tag_exists(root: Path, name: str) -> bool:
    return subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{name}"], cwd=root,
                          capture_output=True).returncode == 0


@dataclass
class _Tag:
    name: str
    commit: str
    tagged_at: str
    meta: dict[str, Any]


def _read_tags(root: Path, *patterns: str) -> dict[str, _Tag]:
    """Tags matching ``patterns`` (fnmatch, under refs/tags/) -> commit, tagger date and JSON message, with
    one ``git for-each-ref``."""
    fmt = "%(refname:strip=2)%1f%(objectname)%1f%(*objectname)%1f%(taggerdate:iso-strict)%1f%(contents)%1e"
    out = git(root, "for-each-ref", f"--format={fmt}", *[f"refs/tags/{p}" for p in patterns], check=False)
    tags: dict[str, _Tag] = {}
    for record in out.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) != 5:
            continue
        name, obj, peeled, tagged_at, contents = fields
        meta: Any = None
        with contextlib.suppress(ValueError):
            meta = json.loads(contents.strip() or "null")
        tags[name] = _Tag(name, peeled or obj, tagged_at, meta if isinstance(meta, dict) else {})
    return tags


# ---------------------------------------------------------------- listing

@dataclass
class RunInfo:
    day: str
    tag: str            # the git tag naming this run: its run tag, or the day tag of a run recorded before them
    ndcg50: dict[str, float | None] = field(default_factory=dict)   # reference row -> macro NDCG@50
    published: bool | None = None
    version: str | None = None
    winner: str | None = None
    reason: str | None = None
    pushed: bool | None = None
    run_tag: str | None = None       # run-YYYYMMDD-NN; None for a run recorded before run tags
    run_id: str | None = None        # the Airflow run id, when the run was recorded by the DAG
    recorded_at: str | None = None   # ISO timestamp (UTC) of the record
    current: bool = True             # the day's current run: what day-YYYYMMDD points to
    end_date: str | None = None      # the end_date the run was recorded with (YYYYMMDD or auto)

    @property
    def day_tag(self) -> str:
        return TAG_PREFIX + self.day

    @property
    def number(self) -> int:
        """The run's number within its day (0 for a run recorded before run tags)."""
        m = _RUN_TAG.match(self.run_tag or "")
        return int(m.group(2)) if m else 0

    def to_json(self) -> dict[str, Any]:
        """The run as ``sass runs list --json`` prints it."""
        return {"day": self.day, "tag": self.tag, "run_tag": self.run_tag, "run_id": self.run_id,
                "recorded_at": self.recorded_at, "current": self.current, "end_date": self.end_date,
                "ndcg@50": self.ndcg50, "published": self.published, "winner": self.winner,
                "version": self.version, "reason": self.reason, "pushed": self.pushed}


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


def _utc(stamp: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _contents(root: Path, commit: str) -> dict[str, Any]:
    """What a run's commit says: macro NDCG@50 per reference row (params.yaml's order) and the publish decision."""
    found: dict[str, Any] = {"ndcg50": {}}
    metrics = _show_json(root, commit, "metrics/metrics.json") or {}
    rows = metrics.get("rows") or ({"sass": metrics["sass"]} if "sass" in metrics else {})
    params = subprocess.run(["git", "show", f"{commit}:params.yaml"], cwd=root, capture_output=True, text=True)
    order = _declared_rows(params.stdout)
    for row in sorted(rows, key=lambda r: (order.index(r) if r in order else len(order), r)):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            found["ndcg50"][row] = float(rows[row]["macro"]["ndcg@50"])
    pub = _show_json(root, commit, "reports/publish.json")
    if isinstance(pub, dict):
        found.update(published=bool(pub.get("publish")), version=pub.get("version"), reason=pub.get("reason"),
                     winner=pub.get("winner"))
    return found


def list_runs(root: str | Path) -> list[RunInfo]:
    """One :class:`RunInfo` per recorded run, in the order they were recorded (``recorded_at``; a day's runs
    by number). Every ``run-YYYYMMDD-NN`` tag is a run; a ``day-`` tag that names no existing run tag (a run
    recorded before run tags) is one too. ``current``: the run ``day-YYYYMMDD`` points to."""
    root = Path(root)
    if not is_git_root(root):
        return []
    tags = _read_tags(root, f"{TAG_PREFIX}*", f"{RUN_PREFIX}*")
    day_tags = {t.name[len(TAG_PREFIX):]: t for t in tags.values()
                if t.name.startswith(TAG_PREFIX) and _DAY.match(t.name[len(TAG_PREFIX):])}
    run_tags = {t.name: t for t in tags.values() if _RUN_TAG.match(t.name)}
    entries: list[tuple[_Tag, str, str | None, bool]] = []   # (tag, day, run tag, current)
    for name, t in run_tags.items():
        day = name[len(RUN_PREFIX):len(RUN_PREFIX) + 8]
        entries.append((t, day, name, day in day_tags and day_tags[day].meta.get("run_tag") == name))
    for day, t in day_tags.items():
        if t.meta.get("run_tag") not in run_tags:
            entries.append((t, day, None, True))
    cache: dict[str, dict[str, Any]] = {}   # runs of identical files share a commit
    out: list[RunInfo] = []
    for t, day, run_tag, current in entries:
        if t.commit not in cache:
            cache[t.commit] = _contents(root, t.commit)
        run_id = t.meta.get("run_id")
        info = RunInfo(day=day, tag=t.name, run_tag=run_tag, current=current, pushed=t.meta.get("pushed"),
                       run_id=None if run_id is None else str(run_id),
                       recorded_at=t.meta.get("recorded_at") or t.tagged_at or None,
                       end_date=None if t.meta.get("end_date") is None else str(t.meta["end_date"]),
                       **{k: (dict(v) if isinstance(v, dict) else v) for k, v in cache[t.commit].items()})
        out.append(info)
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(out, key=lambda r: (_utc(r.recorded_at) or never, r.day, r.number))


def _short_run_id(run_id: str | None) -> str:
    """Airflow's ``scheduled__2022-05-01T02:00:00+00:00`` -> ``scheduled`` (the time is in "recorded"); a
    custom run id is cut to 24 characters."""
    if not run_id:
        return ""
    kind, sep, _ = run_id.partition("__")
    return kind if sep and kind else (run_id if len(run_id) <= 24 else run_id[:23] + "~")


def format_runs(runs: Sequence[RunInfo]) -> str:
    """A table, one line per run: the day's current run marked ``*``, day, run (number within the day and
    the Airflow run kind), when it was recorded (UTC), macro NDCG@50 of every reference row, published or
    not (which row), version."""
    if not runs:
        return (f"no runs recorded yet (git tags {RUN_PREFIX}YYYYMMDD-NN and {TAG_PREFIX}YYYYMMDD are written by "
                "the DAG's record_run task)")
    rows: list[str] = []
    for r in runs:
        rows += [k for k in r.ndcg50 if k not in rows]
    header = ["", "day", "run", "recorded (UTC)", *[f"{row} ndcg@50" for row in rows], "published", "version"]
    lines = [header]
    for r in runs:
        pub = "-" if r.published is None else (f"yes ({r.winner})" if r.published and r.winner else
                                                "yes" if r.published else "no")
        number = r.run_tag[len(RUN_PREFIX) + 9:] if r.run_tag else "-"
        run = " ".join(x for x in (number, _short_run_id(r.run_id)) if x)
        when = _utc(r.recorded_at)
        lines.append(["*" if r.current else "", r.day, run, when.strftime("%Y-%m-%d %H:%M:%S") if when else "-",
                      *[("-" if r.ndcg50.get(row) is None else f"{r.ndcg50[row]:.4f}") for row in rows],
                      pub, r.version or "-"])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join(("-" if i else " ") * w for i, w in enumerate(widths)))
    text.append(f"* the day's current run ({TAG_PREFIX}YYYYMMDD, `sass runs restore YYYYMMDD`); any run: "
                f"`sass runs restore {RUN_PREFIX}YYYYMMDD-NN`")
    return "\n".join(text)


def _parse_ref(ref: str) -> tuple[str, str]:
    """A day (YYYYMMDD, an ISO date, ``day-YYYYMMDD``) or a run tag -> (git tag, label); raises NotADay."""
    s = str(ref).strip()
    if _RUN_TAG.match(s):
        return s, s
    if s.startswith(TAG_PREFIX) and _DAY.match(s[len(TAG_PREFIX):]):
        s = s[len(TAG_PREFIX):]
    try:
        day = as_day(s)
    except NotADay:
        raise NotADay(f"not a day or run: {ref!r} (want YYYYMMDD, an ISO date or a run tag "
                      f"{RUN_PREFIX}YYYYMMDD-NN)") from None
    return TAG_PREFIX + day, day


def resolve_run(root: str | Path, ref: str) -> tuple[str, str]:
    """``ref`` -> (git tag, label): a day is its current run (``day-YYYYMMDD``), ``run-YYYYMMDD-NN`` that run.
    Raises NotADay (neither) or MissingFile (no such recorded run)."""
    root = Path(root)
    tag, label = _parse_ref(ref)
    if tag.startswith(RUN_PREFIX):
        if not is_git_root(root) or not _tag_exists(root, tag):
            day = label[len(RUN_PREFIX):len(RUN_PREFIX) + 8]
            same_day = git(root, "tag", "-l", f"{RUN_PREFIX}{day}-*", check=False).split() if is_git_root(root) else []
            known = ", ".join(t for t in same_day if _RUN_TAG.match(t)) or "none"
            raise MissingFile(f"no recorded run {label} (no git tag {tag}; runs of {day}: {known})")
        return tag, label
    days = recorded_days(root)
    if label not in days:
        raise MissingFile(f"no recorded run {label} (no git tag {tag}; recorded runs: {', '.join(days) or 'none'})")
    return tag, label


def diff_runs(root: str | Path, a: str, b: str) -> str:
    """Macro metrics of every reference row, run a vs run b, each a day (its current run) or a run tag
    (``dvc metrics diff day-A run-B-NN`` shows every metric)."""
    root = Path(root)
    (tag_a, la), (tag_b, lb) = resolve_run(root, a), resolve_run(root, b)
    wa, wb = max(10, len(la)), max(10, len(lb))
    out = [f"{'row':<12} {'metric':<14} {la:>{wa}} {lb:>{wb}} {'change':>9}"]
    ma = _show_json(root, tag_a, "metrics/metrics.json") or {}
    mb = _show_json(root, tag_b, "metrics/metrics.json") or {}
    if not ma or not mb:
        raise MissingFile(f"metrics missing for {la if not ma else lb} (tag {tag_a if not ma else tag_b} has no "
                          "metrics/metrics.json)")
    for row in dict.fromkeys([*ma.get("rows", {}), *mb.get("rows", {})]):
        macro_a = (ma.get("rows", {}).get(row) or {}).get("macro", {})
        macro_b = (mb.get("rows", {}).get(row) or {}).get("macro", {})
        for metric in dict.fromkeys([*macro_a, *macro_b]):
            va, vb = macro_a.get(metric), macro_b.get(metric)
            fa = "-" if va is None else f"{va:.4f}"
            fb = "-" if vb is None else f"{vb:.4f}"
            ch = "-" if va is None or vb is None else f"{vb - va:+.4f}"
            out.append(f"{row:<12} {metric:<14} {fa:>{wa}} {fb:>{wb}} {ch:>9}")
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
    """Bring back a run's ``models/`` and ``indexes/`` with ``dvc get <root> <prefix> --rev <tag>``: ``day`` is
    a day (YYYYMMDD: its current run, tag ``day-YYYYMMDD``) or a run tag (``run-YYYYMMDD-NN``).

    DVC reads the objects named by that run's dvc.lock from the local cache, or else from the remote
    (``remote`` or the default one). ``to=DIR`` writes ``DIR/models`` and ``DIR/indexes``; ``to=None``
    swaps them into the workspace atomically (dvc.lock then still describes the latest run: `dvc checkout`
    brings it back). The DVC way to restore a whole day is ``git checkout day-YYYYMMDD && dvc checkout``.
    """
    import yaml

    root = Path(root).resolve()
    tag, _ = resolve_run(root, day)
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
    tag, label = _parse_ref(day)
    lines = [f"restored run {label} (git tag {tag}, dvc get; {'into ' + str(to) if to else 'into the workspace'}):"]
    for r in restored:
        lines.append(f"  {r.path:<8} {r.files:>4} files  {r.bytes / 1e6:8.2f} MB  -> {r.destination}  "
                     f"({', '.join(r.outputs)})")
    if to is None:
        lines.append("note: dvc.lock still describes the latest run, so `dvc status` shows these outputs as "
                     "modified; `dvc checkout` brings the latest run's outputs back.")
    return "\n".join(lines)
