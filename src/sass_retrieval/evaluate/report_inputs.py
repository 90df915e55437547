"""The run report's inputs: what the stages wrote, read into one :class:`RunReport`.

:func:`gather` reads metrics.json, the validation summary, the split statistics, the training reports, the
training curves DVCLive logged (train.loop.LiveLog: ``models/<row>[/<model>]/dvclive/plots/metrics``) and
the metrics of the model in service. It never raises: a missing or unreadable input stays ``None``/empty
and is named in ``RunReport.problems``, so a failed stage still gets a report that says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.schema import OBJECTIVES
from ..gitinfo import head_commit
from ..rows import PER_SCENARIO, REGISTRY, spec

CANDIDATE = "sass"
ROW_ORDER = ("popular", "dssm_mixed", "dssm_single", "sass_base", CANDIDATE)  # unknown rows go before sass
CURVE_COLUMNS = ["model", "row", "series", "step", "value"]


def _curves_frame(parts: list[pd.DataFrame] | None = None) -> pd.DataFrame:
    parts = [p for p in parts or [] if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)


@dataclass
class RunReport:
    """Everything the report shows, read from the stage outputs (see :func:`gather`)."""

    generated: str                                   # ISO time (UTC) the report was made
    commit: str | None = None                        # git commit of the code, when known
    metrics: dict | None = None                      # metrics/metrics.json
    metrics_path: str = "metrics/metrics.json"
    validation: dict | None = None                   # reports/validation/summary.json
    validation_path: str = "reports/validation/summary.json"
    data_docs_href: str | None = None                # GE Data Docs index, relative to the report folder
    stats: dict[str, dict] = field(default_factory=dict)       # scenario -> data/features/<s>/stats.json
    pairs_stats: dict | None = None                  # data/features/pairs/stats.json
    pretrain_report: dict | None = None              # models/pretrain/report.json
    train_reports: dict[str, dict] = field(default_factory=dict)  # row -> models/<row>/report.json
    # DVCLive's series, tidy: model (the row, or "<row>/<sub folder>": dssm_single's scenarios, ctnet's source
    # and targets), row, series ("loss-refit", "per_step/loss-refit", "val_ndcg@50"), step, value
    curves: pd.DataFrame = field(default_factory=_curves_frame)
    published: dict | None = None                    # <publish.dir>/current/metrics.json
    published_version: str | None = None             # the version folder "current" points at
    problems: list[str] = field(default_factory=list)  # inputs that were missing or unreadable
    gate: dict | None = None                         # the publish gate's decision on this run (publish.decide)

    @property
    def rows(self) -> dict[str, dict]:
        """Row -> results, in the benchmark's order (metrics.json stores them sorted by name)."""
        rows = dict((self.metrics or {}).get("rows") or {})
        return {r: rows[r] for r in sorted(rows, key=row_rank)}

    @property
    def scenarios(self) -> list[str]:
        m = self.metrics or {}
        if m.get("reported"):
            return [str(s) for s in m["reported"]]
        for r in self.rows.values():
            return list(r.get("per_scenario", {}))
        return sorted(s for s, st in self.stats.items() if st.get("reported", True))

    @property
    def skipped(self) -> dict[str, dict]:
        """Declared scenarios skipped today -> {reason, rows, min_scenario_rows, served_by, eval_pairs}
        (metrics.json ``skipped``, written by the evaluate stage; {} for older runs)."""
        return _dicts((self.metrics or {}).get("skipped"))

    @property
    def objectives(self) -> dict[str, dict]:
        """Objective -> {scenarios, pairs, too_few, rows}: every row scored on a non-click objective's ground
        truth (metrics.json ``objectives``, written when the multi-task row sass_mt runs; {} otherwise)."""
        ob = _dicts((self.metrics or {}).get("objectives"))
        order = list(OBJECTIVES)   # metrics.json stores them sorted by name; show them in the schema's order
        return {k: ob[k] for k in sorted(ob, key=lambda k: (order.index(k) if k in order else len(order), k))}

    @property
    def cascade(self) -> dict[str, dict]:
        """Row -> {top_k, features, retrieval, delta, metric, gauc}: the rows served through a pre-ranker
        (metrics.json ``cascade``, written by the evaluate stage with the rank stage on; {} otherwise)."""
        return _dicts((self.metrics or {}).get("cascade"))

    @property
    def rerank(self) -> dict[str, dict]:
        """Row -> {weights, utilities, better_share, ndcg, ...}: the rows with a re-ranker (metrics.json ``rerank``,
        written by the evaluate stage with the rerank stage on; {} otherwise)."""
        return _dicts((self.metrics or {}).get("rerank"))

    @property
    def window(self) -> dict:
        return dict((self.metrics or {}).get("window") or {})

    @property
    def ks(self) -> list[int]:
        names = {n for r in self.rows.values() for n in r.get("macro", {})}
        return sorted({int(k) for n in names for k in [n.partition("@")[2]] if k.isdigit()})

    @property
    def significance(self) -> dict[str, dict[str, dict]]:
        """Slice -> row -> paired bootstrap of the reference row against it ({} for older runs)."""
        return _dicts((self.metrics or {}).get("significance"))

    @property
    def significance_config(self) -> dict:
        cfg = (self.metrics or {}).get("significance_config")
        return dict(cfg) if isinstance(cfg, dict) else {}

    @property
    def slice_pairs(self) -> dict[str, dict[str, int]]:
        """Slice -> scenario -> evaluation pairs ({} for older runs)."""
        return _dicts((self.metrics or {}).get("slice_pairs"))


def _dicts(value: Any) -> dict[str, dict]:
    """The mapping entries of a metrics.json object (keys as text); {} when it is not one."""
    return {str(k): dict(v) for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


def row_rank(row: str) -> tuple[int, str]:
    return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER) - 1, row)


def row_reports(row: str, report_json: dict) -> dict[str, dict]:
    """Label -> the fine-tuning report of one model (dssm_single has one per scenario; ctnet a source and one
    target per other scenario), labelled as their curves are: ``ctnet/source``, ``ctnet/<scenario>``."""
    inner = report_json.get("report", report_json) if isinstance(report_json, dict) else {}
    if not isinstance(inner, dict):
        return {}
    if isinstance(inner.get("targets"), list) and isinstance(inner.get("source"), dict):   # train.ctnet's report
        return {f"{row}/source": inner["source"],
                **{f"{row}/{s}": inner[s] for s in inner["targets"] if isinstance(inner.get(s), dict)}}
    if row in REGISTRY and spec(row).layout == PER_SCENARIO and inner and all(isinstance(v, dict) for v in inner.values()):
        return {f"{row}/{s}": v for s, v in inner.items()}
    return {row: inner}


def _read_json(path: Path, problems: list[str], what: str) -> Any:
    if not path.is_file():
        problems.append(f"{what}: {path} not found")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{what}: {path} unreadable ({type(exc).__name__}: {exc})")
        return None


def read_dvclive(folder: Path, model: str, row: str) -> pd.DataFrame:
    """Every series DVCLive logged under ``folder/dvclive`` as tidy rows; empty when there is none. A resumed
    phase redoes the steps after its last checkpoint and logs them again: the last value of a step wins."""
    parts = []
    for tsv in sorted((folder / "dvclive" / "plots" / "metrics").rglob("*.tsv")):
        try:
            df = pd.read_csv(tsv, sep="\t")
        except (OSError, ValueError):
            continue
        if not {"step", tsv.stem} <= set(df.columns):
            continue
        df = df[["step", tsv.stem]].apply(pd.to_numeric, errors="coerce").dropna()
        df = df.drop_duplicates("step", keep="last").sort_values("step")
        series = tsv.relative_to(folder / "dvclive" / "plots" / "metrics").with_suffix("").as_posix()
        parts.append(pd.DataFrame({"model": model, "row": row, "series": series,
                                   "step": df["step"].astype(int), "value": df[tsv.stem].astype(float)}))
    return _curves_frame(parts)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checked-out commit (short hash, "+dirty" with uncommitted tracked changes), or None."""
    return os.environ.get("SASS_GIT_COMMIT") or head_commit(cwd, short=10, mark_dirty=True)


def gather(metrics: str | Path, validation_dir: str | Path, models_dir: str | Path,
           features_dir: str | Path, published_dir: str | Path | None, out_dir: str | Path,
           commit: str | None = None, now: dt.datetime | None = None) -> RunReport:
    """Read the run's outputs into a :class:`RunReport`; missing inputs are recorded, not raised."""
    metrics, validation_dir, models_dir = Path(metrics), Path(validation_dir), Path(models_dir)
    features_dir, out_dir = Path(features_dir), Path(out_dir)
    now = now or dt.datetime.now(dt.UTC)
    rep = RunReport(generated=now.isoformat(timespec="seconds"), commit=commit, metrics_path=str(metrics),
                    validation_path=str(validation_dir / "summary.json"))
    problems = rep.problems
    rep.metrics = _read_json(metrics, problems, "metrics")
    rep.validation = _read_json(validation_dir / "summary.json", problems, "validation summary")
    docs = validation_dir / "data_docs" / "index.html"
    if docs.is_file():
        rep.data_docs_href = Path(os.path.relpath(docs.resolve(), out_dir.resolve())).as_posix()
    if features_dir.is_dir():
        for f in sorted(features_dir.glob("*/stats.json")):
            st = _read_json(f, problems, "split statistics")
            if isinstance(st, dict) and f.parent.name == "pairs":
                rep.pairs_stats = st
            elif isinstance(st, dict):
                rep.stats[f.parent.name] = st
    else:
        problems.append(f"split statistics: {features_dir} not found")
    pre = models_dir / "pretrain"
    curves = [read_dvclive(pre, "pretrain", "pretrain")]
    if (pre / "report.json").is_file():
        rep.pretrain_report = _read_json(pre / "report.json", problems, "pretraining report")
    order = list(rep.rows)
    if models_dir.is_dir():
        order += sorted(p.name for p in models_dir.iterdir() if p.is_dir())
    else:
        problems.append(f"training outputs: {models_dir} not found")
    for row in dict.fromkeys(order):
        folder = models_dir / row
        if row == "pretrain" or not folder.is_dir():
            continue
        curves.append(read_dvclive(folder, row, row))
        curves += [read_dvclive(sub, f"{row}/{sub.name}", row)
                   for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "dvclive")]
        if (folder / "report.json").is_file():
            r = _read_json(folder / "report.json", problems, f"training report of {row}")
            if isinstance(r, dict):
                rep.train_reports[row] = r
    rep.curves = _curves_frame(curves)
    if published_dir is not None:
        cur = Path(published_dir) / "current"
        if (cur / "metrics.json").is_file():
            pub = _read_json(cur / "metrics.json", problems, "published metrics")
            if isinstance(pub, dict):
                rep.published = pub
                rep.published_version = cur.resolve().name
    return rep
