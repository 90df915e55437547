"""The daily runs: the run's day, and the git tags every run leaves, the way DVC users version.

:func:`record_run` pushes the DVC cache and commits the run's text files (dvc.lock names every model and
index by content hash), tagged twice with its metadata as JSON: ``run-YYYYMMDD-NN``, the run's own tag,
never moved (two runs of a day are two tags even on one commit), and ``day-YYYYMMDD``, moved onto the day's
latest run. DVC's commands then work on any run (``dvc metrics diff day-A day-B``, ``dvc get --rev``);
``sass runs list | diff | restore`` are views over the tags (docs/orchestration.md). GTO's tags
(``name@vX.Y.Z``, ``name#stage#N``, one version per commit) can name neither.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import staged_dir
from ..config import read_params_file, resolve_window, update_params_file
from ..errors import MissingFile, NotADay
from ..gitinfo import GitError, git, git_ok, is_repo_root
from ..publish import macro
from ..runlock import dvc_lock
from .assets import param_path
from .stages import dvc, stage_env

log = logging.getLogger("sass.orchestration")

DAY_PREFIX, RUN_PREFIX = "day-", "run-"
# The run's text files; .dvc/config (the remote) and .dvcignore make a tag a DVC repository for `dvc get --rev`,
# and the .gitignore files DVC writes beside outputs keep the workspace clean after a record.
RECORDED_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", "metrics/metrics.json", "reports/publish.json",
                  "plots/per_scenario.json", "plots/metric_vs_k.json", "plots/table.md", ".dvc/config",
                  ".dvc/.gitignore", ".dvcignore", "metrics/.gitignore", "plots/.gitignore", "reports/.gitignore")
REQUIRED_FILES = ("dvc.lock", "params.yaml")
RESTORED_PREFIXES = ("models", "indexes")
_RUN_TAG = re.compile(r"^run-(\d{8})-(\d{2,})$")


def project_root(default: str | Path | None = None) -> Path:
    """$SASS_PROJECT_DIR, else ``default``, else the repository this package lives in."""
    return Path(os.environ.get("SASS_PROJECT_DIR") or default or Path(__file__).resolve().parents[3]).resolve()


# ---------------------------------------------------------------- the run's day

def as_day(value: Any) -> str:
    """A date, datetime, 'YYYYMMDD' or ISO 'YYYY-MM-DD...' string -> 'YYYYMMDD'."""
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime("%Y%m%d")
    s = str(value).strip()
    if re.fullmatch(r"\d{8}", s):
        return s
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).strftime("%Y%m%d")
    except ValueError as exc:
        raise NotADay(f"not a day: {value!r} (want YYYYMMDD or an ISO date)") from exc


def end_date_for(*, override: Any = None, data_interval_start: Any = None, logical_date: Any = None,
                 run_after: Any = None) -> str:
    """The run's last day of data (YYYYMMDD or 'auto'): the override (DAG param ``end_date``), else the date
    of ``data_interval_start``, else (a manual run) the logical date or the day before ``run_after``."""
    if override not in (None, ""):
        return "auto" if str(override).strip().lower() == "auto" else as_day(override)
    if data_interval_start is not None or logical_date is not None:
        return as_day(data_interval_start if data_interval_start is not None else logical_date)
    if run_after is None:
        raise ValueError("no data interval, logical date or run_after to take the run's day from")
    after = run_after if isinstance(run_after, dt.datetime) else dt.datetime.fromisoformat(str(run_after))
    return as_day(after - dt.timedelta(days=1))


def resolve_day(root: str | Path, day: str | int) -> str:
    """The run's day as YYYYMMDD; 'auto' is the last day of the window ``config.resolve_window`` builds from
    params.yaml and the store's days, as every stage resolved it."""
    if str(day).strip().lower() != "auto":
        return as_day(day)
    from ..data.schema import stored_dates
    from ..params_schema import Window

    window = Window.model_validate(read_params_file(Path(root) / "params.yaml")["window"])
    return str(resolve_window(window, stored_dates(param_path(root, "data.store_dir", "data/store"))).test_end)


def set_window_end(params_path: str | Path, end_date: str | int) -> Any:
    """Write ``window.end_date`` into params.yaml, keeping comments and layout; returns the previous value."""
    value: str | int = "auto" if str(end_date) == "auto" else int(as_day(end_date))
    return update_params_file(params_path, {"window.end_date": value})["window.end_date"]


# ---------------------------------------------------------------- recording a run

def _tags(root: Path, pattern: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Tag name -> (commit, metadata) for the tags matching ``pattern``, sorted by name, in one ``git
    for-each-ref``: the message is one line of JSON, so it is the subject. Empty outside the workspace's own
    repository."""
    if not is_repo_root(root):
        return {}
    tags = {}
    fmt = "--format=%(refname:strip=2) %(*objectname) %(contents:subject)"
    for line in git(root, "for-each-ref", fmt, f"refs/tags/{pattern}").splitlines():
        name, commit, message = line.split(" ", 2)
        try:
            meta = json.loads(message)
        except ValueError:
            meta = None
        tags[name] = (commit or name, meta if isinstance(meta, dict) else {})   # a lightweight tag: itself
    return tags


def _tag_exists(root: Path, name: str) -> bool:
    return git_ok(root, "rev-parse", "-q", "--verify", f"refs/tags/{name}")


def run_tag_name(day: str, number: int) -> str:
    """``run-YYYYMMDD-NN``: zero-padded so a day's tags sort by name up to 99 runs (beyond, by number)."""
    return f"{RUN_PREFIX}{as_day(day)}-{number:02d}"


def _create_run_tag(root: Path, day: str, commit: str, info: Mapping[str, Any]) -> tuple[str, str]:
    """The next free ``run-YYYYMMDD-NN`` on ``commit``: ``git tag`` without ``-f`` never touches an existing
    tag, and a name another recorder took meanwhile moves on to the next number."""
    while True:
        taken = [int(m.group(2)) for t in _tags(root, f"{RUN_PREFIX}{day}-*") if (m := _RUN_TAG.match(t))]
        name = run_tag_name(day, max(taken, default=0) + 1)
        message = json.dumps({**info, "run_tag": name}, sort_keys=True, default=str)
        try:
            git(root, "tag", "-a", name, "-m", message, commit, identity=True)
            return name, message
        except GitError:
            if not _tag_exists(root, name):
                raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def record_run(root: str | Path, day: str, meta: Mapping[str, Any] | None = None, *, push: bool = True,
               logger: logging.Logger | None = None) -> str:
    """Record the workspace's run as day ``day`` (YYYYMMDD, or 'auto': :func:`resolve_day`): ``dvc push``, a
    commit of :data:`RECORDED_FILES` only (other changes stay as they are; unchanged files tag the existing
    commit), the run's tag and the day's tag, both with ``meta`` as JSON. Returns the day's tag."""
    logger = logger or log
    root = Path(root).resolve()
    requested, day = str(day), resolve_day(root, day)
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise MissingFile(f"can not record run {day}: missing {', '.join(missing)} in {root}")
    if not is_repo_root(root):
        git(root, "init", "-q")
        if (root / ".dvc").is_dir():   # DVC tracks outputs the git way from now on
            with dvc_lock(root):
                dvc(root, "config", "core.no_scm", "false", logger=logger)
        logger.info("initialised a git repository in %s to record daily versions", root)
    info = {"day": day, "end_date": requested, "recorded_at": _now(), "pushed": False, **dict(meta or {})}
    if push:
        with dvc_lock(root):
            dvc(root, "push", "--quiet", logger=logger)
        info.update(pushed=True, pushed_at=_now())
        logger.info("pushed the DVC cache to the default remote")
    files = [f for f in RECORDED_FILES if (root / f).is_file()]
    git(root, "add", "-f", "--", *files)
    staged = not git_ok(root, "diff", "--cached", "--quiet", "--", *files)
    if staged or not git_ok(root, "rev-parse", "-q", "--verify", "HEAD"):
        git(root, "commit", "-q", "--allow-empty", "--no-verify", "-m", f"day {day}: dvc.lock, params and metrics",
            "--only", "--", *files, identity=True)
    commit, day_tag = git(root, "rev-parse", "HEAD").strip(), DAY_PREFIX + day
    before, meta_before = _tags(root, day_tag).get(day_tag, ("", {}))
    if before and not _tag_exists(root, str(meta_before.get("run_tag"))):   # from before run tags: keep it
        kept, _ = _create_run_tag(root, day, before, {**meta_before, "tagged_from": day_tag})
        logger.info("kept the earlier run of %s (tag %s, recorded before run tags) as %s", day, day_tag, kept)
    run_tag, message = _create_run_tag(root, day, commit, info)
    git(root, "tag", "-f", "-a", day_tag, "-m", message, commit, identity=True)
    logger.info("recorded run %s as git tags %s and %s (%s)", day, run_tag, day_tag, ", ".join(files))
    return day_tag


def current_run_tag(root: str | Path, ref: str) -> str | None:
    """The run tag of a day's current run (``ref``: the day or its tag); None for a day recorded before run
    tags."""
    tag = resolve_run(root, ref)
    return _tags(Path(root), tag)[tag][1].get("run_tag")


# ---------------------------------------------------------------- listing and comparing

def _show_json(root: Path, rev: str, path: str) -> dict[str, Any]:
    try:
        found = json.loads(git(root, "show", f"{rev}:{path}"))
    except (GitError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _contents(root: Path, commit: str) -> dict[str, Any]:
    """What a run's commit says: macro NDCG@50 per reference row (metrics.json lists them in params.yaml's
    order) and the publish decision."""
    metrics, pub = (_show_json(root, commit, f) for f in ("metrics/metrics.json", "reports/publish.json"))
    return {"ndcg@50": {row: macro(metrics, row) for row in metrics.get("rows") or {}},
            "published": bool(pub.get("publish")) if pub else None,
            **{key: pub.get(key) for key in ("winner", "version", "reason")}}


def _number(run: Mapping[str, Any]) -> int:
    """The run's number within its day (0 for a run recorded before run tags)."""
    return int(run["run_tag"].rsplit("-", 1)[1]) if run["run_tag"] else 0


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every recorded run in the order recorded (``recorded_at``, then number), as ``sass runs list --json``
    prints it: each ``run-`` tag, and each ``day-`` tag that names no existing run tag (a run recorded before
    run tags; its ``run_tag`` is None). ``current``: the day's tag names this run."""
    root = Path(root)
    runs = {name: found for name, found in _tags(root, "run-*").items() if _RUN_TAG.match(name)}
    days = {name: found for name, found in _tags(root, "day-*").items() if re.fullmatch(r"day-\d{8}", name)}
    current = {meta.get("run_tag") for _, meta in days.values()}
    older = {name: found for name, found in days.items() if found[1].get("run_tag") not in runs}
    contents: dict[str, dict[str, Any]] = {}   # runs with identical files share a commit
    listed = []
    for tag, (commit, meta) in {**runs, **older}.items():
        if commit not in contents:
            contents[commit] = _contents(root, commit)
        listed.append({"day": tag[4:12], "tag": tag, "run_tag": None if tag in older else tag,
                       "run_id": meta.get("run_id"), "recorded_at": meta.get("recorded_at"),
                       "current": tag in older or tag in current, "end_date": meta.get("end_date"),
                       "pushed": meta.get("pushed"), **contents[commit]})
    return sorted(listed, key=lambda r: (str(r["recorded_at"] or ""), r["day"], _number(r)))


def format_runs(runs: Sequence[Mapping[str, Any]]) -> str:
    """One line per run: ``*`` on the day's current run, day, run (number and Airflow run kind), recorded (UTC),
    macro NDCG@50 of every reference row, published (which row), version."""
    if not runs:
        return (f"no runs recorded yet (git tags {RUN_PREFIX}YYYYMMDD-NN and {DAY_PREFIX}YYYYMMDD are written by "
                "the DAG's record_run task)")
    rows = list(dict.fromkeys(row for r in runs for row in r["ndcg@50"]))
    lines = [["", "day", "run", "recorded (UTC)", *[f"{row} ndcg@50" for row in rows], "published", "version"]]
    for r in runs:
        published = "-" if r["published"] is None else "no" if not r["published"] else \
            f"yes ({r['winner']})" if r["winner"] else "yes"
        kind = (r["run_id"] or "").partition("__")[0][:24]   # scheduled__<time>, manual__<time>: the kind
        number = f"{_number(r):02d}" if r["run_tag"] else "-"
        lines.append(["*" if r["current"] else "", r["day"], f"{number} {kind}".strip(),
                      (r["recorded_at"] or "-")[:19].replace("T", " "),   # recorded_at is UTC
                      *["-" if r["ndcg@50"].get(row) is None else f"{r['ndcg@50'][row]:.4f}" for row in rows],
                      published, r["version"] or "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join(("-" if i else " ") * w for i, w in enumerate(widths)))
    return "\n".join([*text, f"* the day's current run ({DAY_PREFIX}YYYYMMDD, `sass runs restore YYYYMMDD`); "
                              f"any run: `sass runs restore {RUN_PREFIX}YYYYMMDD-NN`"])


def resolve_run(root: str | Path, ref: str) -> str:
    """``ref`` -> its git tag: a day (YYYYMMDD, an ISO date, ``day-YYYYMMDD``) is its current run
    (``day-YYYYMMDD``), ``run-YYYYMMDD-NN`` that run. Raises NotADay (neither), MissingFile (no such run)."""
    s = str(ref).strip()
    if _RUN_TAG.match(s):
        tag, label, pattern, listing = s, s, f"{RUN_PREFIX}{s[4:12]}-*", f"runs of {s[4:12]}"
    else:
        try:
            label = as_day(s.removeprefix(DAY_PREFIX))
        except NotADay:
            raise NotADay(f"not a day or run: {ref!r} (want YYYYMMDD, an ISO date or a run tag "
                          f"{RUN_PREFIX}YYYYMMDD-NN)") from None
        tag, pattern, listing = DAY_PREFIX + label, f"{DAY_PREFIX}*", "recorded runs"
    known = git(root, "tag", "-l", pattern).split() if is_repo_root(root) else []
    if tag not in known:
        listed = ", ".join(t.removeprefix(DAY_PREFIX) for t in known) or "none"
        raise MissingFile(f"no recorded run {label} (no git tag {tag}; {listing}: {listed})")
    return tag


def diff_runs(root: str | Path, a: str, b: str) -> int:
    """``dvc metrics diff`` then ``dvc params diff`` of two runs' tags, their output passed through: DVC's own
    comparison of every metric and param that changed. Returns the first non-zero exit code, else 0."""
    tags = [resolve_run(root, a), resolve_run(root, b)]
    codes = [subprocess.run([sys.executable, "-m", "dvc", what, "diff", *tags], cwd=root,
                            env=stage_env(root)).returncode for what in ("metrics", "params")]
    return next((c for c in codes if c), 0)


# ---------------------------------------------------------------- restoring

def restore(root: str | Path, ref: str, to: str | Path | None = None, *,
            remote: str | None = None) -> tuple[str, list[str]]:
    """A run's ``models/`` and ``indexes/`` by ``dvc get <root> <folder> --rev <tag>`` (``ref``: a day, its
    current run, or a run tag), from the local cache or else the remote; returns the tag and the DVC outputs
    restored (dvc.lock's outermost ones).

    ``to=DIR`` writes ``DIR/models`` and ``DIR/indexes``; ``to=None`` swaps them into the workspace atomically
    (dvc.lock still describes the latest run then: ``dvc checkout`` brings it back). The DVC way to restore a
    whole run is ``git checkout <tag> && dvc checkout``.
    """
    import yaml

    root = Path(root).resolve()
    tag = resolve_run(root, ref)
    lock = yaml.safe_load(git(root, "show", f"{tag}:dvc.lock")) or {}
    outs = {posixpath.normpath(str(o["path"])) for stage in (lock.get("stages") or {}).values()
            for o in stage.get("outs") or [] if o.get("md5")}
    outs = {o for o in outs if o.split("/")[0] in RESTORED_PREFIXES}
    outs = {o for o in outs if not any(o.startswith(f"{q}/") for q in outs)}   # the outermost ones
    if not outs:
        raise ValueError(f"dvc.lock of {tag} lists no cached output under {', '.join(RESTORED_PREFIXES)}")
    for folder in sorted({o.split("/")[0] for o in outs}):
        with staged_dir(Path(to or root).resolve() / folder, ".restore") as tmp:
            tmp.rmdir()   # dvc get creates its output itself
            rc = dvc(root, "get", str(root), folder, "--rev", tag, "-o", str(tmp), "--quiet",
                     *(["--remote", remote] if remote else []), check=False)
            if rc != 0:
                raise MissingFile(f"dvc get {folder} --rev {tag} failed (exit {rc}): objects neither in the "
                                  "local cache nor on the remote?")
            for f in list(tmp.rglob(".gitignore")):  # git's bookkeeping of the outputs, not data
                f.unlink()
    return tag, sorted(outs)


def format_restored(tag: str, outputs: Sequence[str], to: str | Path | None) -> str:
    lines = [f"restored {tag} (dvc get --rev {tag}) into {to or 'the workspace'}: {', '.join(outputs)}"]
    if to is None:
        lines.append("note: dvc.lock still describes the latest run, so `dvc status` shows these outputs as "
                     "modified; `dvc checkout` brings the latest run's outputs back.")
    return "\n".join(lines)
