"""The daily runs: the run's day, and the git tags every run leaves, the way DVC users version.

:func:`record_run` pushes the DVC cache and commits the run's text files (dvc.lock names every model and
index by content hash), tagged twice with its metadata as JSON: ``run-YYYYMMDD-NN``, the run's own tag,
never moved (two runs of a day are two tags even on one commit), and ``day-YYYYMMDD``, moved onto the day's
latest run. DVC's commands then work on any run (``dvc metrics diff day-A day-B``, ``dvc get --rev``);
``sass runs list | diff | restore`` are views over the tags (docs/orchestration.md). GTO's tags
(``name@vX.Y.Z``, ``name#stage#N``, one version per commit) can name neither.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import staged_dir
from ..config import update_params_file
from ..errors import MissingFile, NotADay
from ..gitinfo import GitError, git, git_ok, is_repo_root
from ..runlock import dvc_lock
from .stages import dvc

log = logging.getLogger("sass.orchestration")

DAY_PREFIX, RUN_PREFIX = "day-", "run-"
# The run's text files; .dvc/config (the remote) and .dvcignore make a tag a DVC repository for `dvc get --rev`,
# and the .gitignore files DVC writes beside outputs keep the workspace clean after a record.
RECORDED_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", "metrics/metrics.json", "reports/publish.json",
                  "plots/per_scenario.json", "plots/metric_vs_k.json", "plots/table.md", ".dvc/config",
                  ".dvc/.gitignore", ".dvcignore", "metrics/.gitignore", "plots/.gitignore", "reports/.gitignore")
REQUIRED_FILES = ("dvc.lock", "params.yaml")
RESTORED_PREFIXES = ("models", "indexes")
_DAY = re.compile(r"^\d{8}$")
_DAY_TAG = re.compile(r"^day-(\d{8})$")
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
    try:
        return s if _DAY.match(s) else dt.datetime.fromisoformat(s.replace("Z", "+00:00")).strftime("%Y%m%d")
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
    from ..config import read_params_file, resolve_window
    from ..data.schema import stored_dates
    from ..params_schema import Window
    from .assets import param_path

    window = Window.model_validate(read_params_file(Path(root) / "params.yaml")["window"])
    return str(resolve_window(window, stored_dates(param_path(root, "data.store_dir", "data/store"))).test_end)


def set_window_end(params_path: str | Path, end_date: str | int) -> Any:
    """Write ``window.end_date`` into params.yaml, keeping comments and layout; returns the previous value."""
    value: str | int = "auto" if str(end_date) == "auto" else int(as_day(end_date))
    return update_params_file(params_path, {"window.end_date": value})["window.end_date"]


# ---------------------------------------------------------------- recording a run

@dataclass
class _Tag:
    name: str
    commit: str
    tagged_at: str
    meta: dict[str, Any]


def _read_tags(root: Path, *patterns: str) -> dict[str, _Tag]:
    """The workspace's tags matching ``patterns`` (under refs/tags/, sorted by name): commit, tagger date and
    JSON message, in one ``git for-each-ref``. None outside the workspace's own repository."""
    if not is_repo_root(root):
        return {}
    fmt = "%(refname:strip=2)%1f%(objectname)%1f%(*objectname)%1f%(taggerdate:iso-strict)%1f%(contents)%1e"
    tags: dict[str, _Tag] = {}
    for record in git(root, "for-each-ref", f"--format={fmt}", *[f"refs/tags/{p}" for p in patterns]).split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) == 5:
            meta: Any = None
            with contextlib.suppress(ValueError):
                meta = json.loads(fields[4].strip() or "null")
            tags[fields[0]] = _Tag(fields[0], fields[2] or fields[1], fields[3], meta if isinstance(meta, dict) else {})
    return tags


def _tag_exists(root: Path, name: str) -> bool:
    return git_ok(root, "rev-parse", "-q", "--verify", f"refs/tags/{name}")


def _run_tag_of(root: Path, day_tag: _Tag) -> str | None:
    """The run tag a day tag's message names, if it exists (None: a run recorded before run tags)."""
    name = day_tag.meta.get("run_tag")
    return str(name) if name and _tag_exists(root, str(name)) else None


def run_tag_name(day: str, number: int) -> str:
    """``run-YYYYMMDD-NN``: zero-padded so a day's tags sort by name up to 99 runs (beyond, by number)."""
    return f"{RUN_PREFIX}{as_day(day)}-{number:02d}"


def _create_run_tag(root: Path, day: str, commit: str, info: Mapping[str, Any]) -> tuple[str, str]:
    """The next free ``run-YYYYMMDD-NN`` on ``commit``: ``git tag`` without ``-f`` never touches an existing
    tag, and a name another recorder took meanwhile moves on to the next number."""
    while True:
        numbers = [int(m.group(2)) for t in _read_tags(root, f"{RUN_PREFIX}{day}-*") if (m := _RUN_TAG.match(t))]
        name = run_tag_name(day, max(numbers, default=0) + 1)
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
    earlier = _read_tags(root, day_tag).get(day_tag)
    if earlier is not None and _run_tag_of(root, earlier) is None:   # keep a run recorded before run tags
        kept, _ = _create_run_tag(root, day, earlier.commit, {**earlier.meta, "tagged_from": day_tag})
        logger.info("kept the earlier run of %s (tag %s, recorded before run tags) as %s", day, day_tag, kept)
    run_tag, message = _create_run_tag(root, day, commit, info)
    git(root, "tag", "-f", "-a", day_tag, "-m", message, commit, identity=True)
    logger.info("recorded run %s as git tags %s and %s (%s)", day, run_tag, day_tag, ", ".join(files))
    return day_tag


def current_run_tag(root: str | Path, day: str) -> str | None:
    """The run tag of a day's current run (``day`` or its tag); None for a day recorded before run tags."""
    tag, _ = _parse_ref(day)
    found = _read_tags(Path(root), tag).get(tag)
    return _run_tag_of(Path(root), found) if found else None


# ---------------------------------------------------------------- listing and comparing

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
    run_id: str | None = None        # the Airflow run id, when the DAG recorded the run
    recorded_at: str | None = None   # ISO timestamp (UTC)
    current: bool = True             # the day's current run: what day-YYYYMMDD points to
    end_date: str | None = None      # the end_date the run was recorded with (YYYYMMDD or auto)

    @property
    def number(self) -> int:
        """The run's number within its day (0 for a run recorded before run tags)."""
        return int(self.run_tag.rsplit("-", 1)[1]) if self.run_tag else 0

    def to_json(self) -> dict[str, Any]:
        """The run as ``sass runs list --json`` prints it."""
        return {"day": self.day, "tag": self.tag, "run_tag": self.run_tag, "run_id": self.run_id,
                "recorded_at": self.recorded_at, "current": self.current, "end_date": self.end_date,
                "ndcg@50": self.ndcg50, "published": self.published, "winner": self.winner,
                "version": self.version, "reason": self.reason, "pushed": self.pushed}


def _show_json(root: Path, rev: str, path: str) -> Any:
    try:
        return json.loads(git(root, "show", f"{rev}:{path}"))
    except (GitError, ValueError):
        return None


def _utc(stamp: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _contents(root: Path, commit: str) -> dict[str, Any]:
    """What a run's commit says: macro NDCG@50 per reference row (metrics.json lists them in params.yaml's
    order) and the publish decision."""
    metrics = _show_json(root, commit, "metrics/metrics.json") or {}
    ndcg50: dict[str, float] = {}
    for row, entry in (metrics.get("rows") or {"sass": metrics.get("sass")}).items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            ndcg50[row] = float(entry["macro"]["ndcg@50"])
    found: dict[str, Any] = {"ndcg50": ndcg50}
    pub = _show_json(root, commit, "reports/publish.json")
    if isinstance(pub, dict):
        found.update(published=bool(pub.get("publish")), version=pub.get("version"), reason=pub.get("reason"),
                     winner=pub.get("winner"))
    return found


def list_runs(root: str | Path) -> list[RunInfo]:
    """Every recorded run in the order recorded (``recorded_at``, then number): each ``run-`` tag, and each
    ``day-`` tag that names no existing run tag (a run recorded before run tags)."""
    root = Path(root)
    tags = _read_tags(root, f"{DAY_PREFIX}*", f"{RUN_PREFIX}*")
    days = {m.group(1): t for n, t in tags.items() if (m := _DAY_TAG.match(n))}
    entries = [(t, m.group(1), n, m.group(1) in days and days[m.group(1)].meta.get("run_tag") == n)
               for n, t in tags.items() if (m := _RUN_TAG.match(n))]
    entries += [(t, day, None, True) for day, t in days.items() if t.meta.get("run_tag") not in tags]
    cache: dict[str, dict[str, Any]] = {}   # runs with identical files share a commit
    out = []
    for t, day, run_tag, current in entries:
        if t.commit not in cache:
            cache[t.commit] = _contents(root, t.commit)
        m = t.meta
        out.append(RunInfo(day=day, tag=t.name, run_tag=run_tag, current=current, pushed=m.get("pushed"),
                           run_id=None if m.get("run_id") is None else str(m["run_id"]),
                           recorded_at=m.get("recorded_at") or t.tagged_at or None,
                           end_date=None if m.get("end_date") is None else str(m["end_date"]),
                           **{k: dict(v) if isinstance(v, dict) else v for k, v in cache[t.commit].items()}))
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(out, key=lambda r: (_utc(r.recorded_at) or never, r.day, r.number))


def _short_run_id(run_id: str | None) -> str:
    """``scheduled__2022-05-01T02:00:00+00:00`` -> ``scheduled`` (the time is in "recorded"); a custom run
    id is cut to 24 characters."""
    if not run_id:
        return ""
    kind, sep, _ = run_id.partition("__")
    return kind if sep and kind else run_id if len(run_id) <= 24 else run_id[:23] + "~"


def format_runs(runs: Sequence[RunInfo]) -> str:
    """One line per run: ``*`` on the day's current run, day, run (number and Airflow run kind), recorded (UTC),
    macro NDCG@50 of every reference row, published (which row), version."""
    if not runs:
        return (f"no runs recorded yet (git tags {RUN_PREFIX}YYYYMMDD-NN and {DAY_PREFIX}YYYYMMDD are written by "
                "the DAG's record_run task)")
    rows = list(dict.fromkeys(row for r in runs for row in r.ndcg50))
    lines = [["", "day", "run", "recorded (UTC)", *[f"{row} ndcg@50" for row in rows], "published", "version"]]
    for r in runs:
        pub = "-" if r.published is None else f"yes ({r.winner})" if r.published and r.winner else \
            "yes" if r.published else "no"
        run = " ".join(filter(None, (f"{r.number:02d}" if r.run_tag else "-", _short_run_id(r.run_id))))
        when = _utc(r.recorded_at)
        lines.append(["*" if r.current else "", r.day, run, when.strftime("%Y-%m-%d %H:%M:%S") if when else "-",
                      *["-" if r.ndcg50.get(row) is None else f"{r.ndcg50[row]:.4f}" for row in rows],
                      pub, r.version or "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join(("-" if i else " ") * w for i, w in enumerate(widths)))
    return "\n".join([*text, f"* the day's current run ({DAY_PREFIX}YYYYMMDD, `sass runs restore YYYYMMDD`); "
                              f"any run: `sass runs restore {RUN_PREFIX}YYYYMMDD-NN`"])


def _parse_ref(ref: str) -> tuple[str, str]:
    """A day (YYYYMMDD, an ISO date, ``day-YYYYMMDD``) or a run tag -> (git tag, label); raises NotADay."""
    s = str(ref).strip()
    if _RUN_TAG.match(s):
        return s, s
    try:
        day = as_day(m.group(1) if (m := _DAY_TAG.match(s)) else s)
    except NotADay:
        raise NotADay(f"not a day or run: {ref!r} (want YYYYMMDD, an ISO date or a run tag "
                      f"{RUN_PREFIX}YYYYMMDD-NN)") from None
    return DAY_PREFIX + day, day


def resolve_run(root: str | Path, ref: str) -> tuple[str, str]:
    """``ref`` -> (git tag, label): a day is its current run (``day-YYYYMMDD``), ``run-YYYYMMDD-NN`` that run.
    Raises NotADay (neither) or MissingFile (no such recorded run)."""
    root = Path(root)
    tag, label = _parse_ref(ref)
    if tag.startswith(RUN_PREFIX):
        day = label[len(RUN_PREFIX):len(RUN_PREFIX) + 8]
        known = [t for t in _read_tags(root, f"{RUN_PREFIX}{day}-*") if _RUN_TAG.match(t)]
        if tag not in known:
            raise MissingFile(f"no recorded run {label} (no git tag {tag}; runs of {day}: {', '.join(known) or 'none'})")
        return tag, label
    days = [m.group(1) for t in _read_tags(root, f"{DAY_PREFIX}*") if (m := _DAY_TAG.match(t))]
    if label not in days:
        raise MissingFile(f"no recorded run {label} (no git tag {tag}; recorded runs: {', '.join(days) or 'none'})")
    return tag, label


def diff_runs(root: str | Path, a: str, b: str) -> str:
    """Macro metrics of every reference row, run a vs run b (``dvc metrics diff`` shows every metric)."""
    root = Path(root)
    (tag_a, la), (tag_b, lb) = resolve_run(root, a), resolve_run(root, b)
    ma, mb = (_show_json(root, t, "metrics/metrics.json") or {} for t in (tag_a, tag_b))
    if not ma or not mb:
        raise MissingFile(f"metrics missing for {la if not ma else lb} (tag {tag_a if not ma else tag_b} has no "
                          "metrics/metrics.json)")
    wa, wb = max(10, len(la)), max(10, len(lb))
    out = [f"{'row':<12} {'metric':<14} {la:>{wa}} {lb:>{wb}} {'change':>9}"]
    for row in dict.fromkeys([*ma.get("rows", {}), *mb.get("rows", {})]):
        macro_a, macro_b = ((m.get("rows", {}).get(row) or {}).get("macro", {}) for m in (ma, mb))
        for metric in dict.fromkeys([*macro_a, *macro_b]):
            va, vb = macro_a.get(metric), macro_b.get(metric)
            fa, fb = ("-" if v is None else f"{v:.4f}" for v in (va, vb))
            change = "-" if va is None or vb is None else f"{vb - va:+.4f}"
            out.append(f"{row:<12} {metric:<14} {fa:>{wa}} {fb:>{wb}} {change:>9}")
    return "\n".join(out)


# ---------------------------------------------------------------- restoring

@dataclass
class Restored:
    path: str           # "models", "indexes"
    outputs: list[str]  # the DVC outputs under it in that run ("models/sass", ...)
    files: int = 0
    bytes: int = 0
    destination: str = ""


def restore(root: str | Path, day: str, to: str | Path | None = None, *, remote: str | None = None,
            prefixes: Sequence[str] = RESTORED_PREFIXES) -> list[Restored]:
    """A run's ``models/`` and ``indexes/`` by ``dvc get <root> <prefix> --rev <tag>`` (``day``: a day, its
    current run, or a run tag), from the local cache or else the remote.

    ``to=DIR`` writes ``DIR/models`` and ``DIR/indexes``; ``to=None`` swaps them into the workspace atomically
    (dvc.lock still describes the latest run then: ``dvc checkout`` brings it back). The DVC way to restore a
    whole run is ``git checkout <tag> && dvc checkout``.
    """
    import yaml

    root = Path(root).resolve()
    tag, _ = resolve_run(root, day)
    lock = yaml.safe_load(git(root, "show", f"{tag}:dvc.lock")) or {}
    outs = {posixpath.normpath(str(o.get("path"))) for body in (lock.get("stages") or {}).values()
            for o in body.get("outs") or [] if o.get("md5")}
    outs = {o for o in outs if any(o == p or o.startswith(p + "/") for p in prefixes)}
    outs = sorted(o for o in outs if not any(o.startswith(q + "/") for q in outs))   # outermost only
    if not outs:
        raise ValueError(f"dvc.lock of {tag} lists no cached output under {', '.join(prefixes)}")
    restored = []
    for prefix in prefixes:
        under = [o for o in outs if o == prefix or o.startswith(prefix + "/")]
        if not under:
            continue
        dest = (Path(to).resolve() if to is not None else root) / prefix
        with staged_dir(dest, ".restore") as tmp:
            tmp.rmdir()   # dvc get creates its output itself
            rc = dvc(root, "get", str(root), prefix, "--rev", tag, "-o", str(tmp), "--quiet",
                     *(["--remote", remote] if remote else []), check=False)
            if rc != 0:
                raise MissingFile(f"dvc get {prefix} --rev {tag} failed (exit {rc}): objects neither in the "
                                  "local cache nor on the remote?")
            for f in list(tmp.rglob(".gitignore")):  # git's bookkeeping of the outputs, not data
                f.unlink()
            files = [f for f in tmp.rglob("*") if f.is_file()]
            restored.append(Restored(prefix, under, len(files), sum(f.stat().st_size for f in files), str(dest)))
    return restored


def format_restored(day: str, restored: Sequence[Restored], to: str | Path | None) -> str:
    tag, label = _parse_ref(day)
    lines = [f"restored run {label} (git tag {tag}, dvc get; {'into ' + str(to) if to else 'into the workspace'}):"]
    lines += [f"  {r.path:<8} {r.files:>4} files  {r.bytes / 1e6:8.2f} MB  -> {r.destination}  "
              f"({', '.join(r.outputs)})" for r in restored]
    if to is None:
        lines.append("note: dvc.lock still describes the latest run, so `dvc status` shows these outputs as "
                     "modified; `dvc checkout` brings the latest run's outputs back.")
    return "\n".join(lines)
