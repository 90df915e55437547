"""The run report: one self-contained HTML page per run, plus a markdown twin.

Three steps, each a plain function:

1. :func:`gather` reads what the stages wrote (metrics, validation summary, split statistics,
   training reports and loss CSVs, the last published metrics) into a :class:`RunReport`. A missing
   or unreadable input never raises: it is left ``None``/empty and named in ``RunReport.problems``.
2. :func:`draw_figures` draws the training curves and the per-scenario bar chart with matplotlib's
   Agg canvas (no pyplot state, no display) and returns PNG bytes by figure name.
3. :func:`sections` turns both into a list of format-neutral blocks (headings, notes, tables,
   images; among them "Is the difference real?": paired-bootstrap intervals per slice, from the
   ``significance``/``slice_pairs`` keys of metrics.json when present). Two Jinja2 templates in
   ``templates/`` iterate the same blocks: ``report.html.j2`` (:func:`render_html`: autoescaped,
   inline CSS, base64 images, no external resource) and ``report.md.j2`` (:func:`render_markdown`:
   images linked from ``images/``). Tests check the blocks; the templates only lay them out.

:func:`write_report` does all three and writes ``index.html``, ``report.md`` and ``images/*.png``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from ..atomic import write_text
from ..data.schema import OBJECTIVES
from ..gitinfo import head_commit
from .significance import format_ci
from .slices import SLICE_DESCRIPTIONS, SLICES

HEADLINE = ("ndcg@50", "hit_rate@50")
METRIC_LABEL = {"ndcg": "NDCG", "hit_rate": "HitRate", "recall": "Recall"}
CANDIDATE = "sass"
ROW_ORDER = ("popular", "dssm_mixed", "dssm_single", "sass_base", CANDIDATE)  # unknown rows go before sass
SHORT_LABEL = {"ndcg": "NDCG", "hit_rate": "HR", "recall": "Recall"}
LOSS_PHASES = ("select", "refit", "full")
PHASE_LABEL = {"select": "select (early-stopping run)", "refit": "refit (finetune.refit)",
               "full": "full (all training days)"}
DASH = "–"


# ---- inputs -------------------------------------------------------------------------------------


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
    pretrain_loss: pd.DataFrame | None = None        # models/pretrain/loss.csv
    pretrain_report: dict | None = None              # models/pretrain/report.json
    # row -> curve label -> phase -> loss frame; the label is the row, or "<row>/<scenario>" (dssm_single)
    finetune_loss: dict[str, dict[str, dict[str, pd.DataFrame]]] = field(default_factory=dict)
    train_reports: dict[str, dict] = field(default_factory=dict)  # row -> models/<row>/report.json
    published: dict | None = None                    # <publish.dir>/current/metrics.json
    published_version: str | None = None             # the version folder "current" points at
    problems: list[str] = field(default_factory=list)  # inputs that were missing or unreadable
    gate: dict | None = None                         # the publish gate's decision on this run (publish.decide)

    # -- derived views
    @property
    def rows(self) -> dict[str, dict]:
        """Row -> results, in the benchmark's order (metrics.json stores them sorted by name)."""
        rows = dict((self.metrics or {}).get("rows") or {})
        return {r: rows[r] for r in sorted(rows, key=_row_rank)}

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
        sk = (self.metrics or {}).get("skipped")
        return {str(k): dict(v) for k, v in sk.items() if isinstance(v, dict)} if isinstance(sk, dict) else {}

    @property
    def objectives(self) -> dict[str, dict]:
        """Objective -> {scenarios, pairs, too_few, rows}: every row scored on a non-click objective's ground
        truth (metrics.json ``objectives``, written when the multi-task row sass_mt runs; {} otherwise)."""
        ob = (self.metrics or {}).get("objectives")
        if not isinstance(ob, dict):
            return {}
        order = list(OBJECTIVES)   # metrics.json stores them sorted by name; show them in the schema's order
        return {str(k): dict(ob[k]) for k in sorted(ob, key=lambda k: (order.index(k) if k in order else len(order), k))
                if isinstance(ob[k], dict)}

    @property
    def window(self) -> dict:
        return dict((self.metrics or {}).get("window") or {})

    @property
    def ks(self) -> list[int]:
        ks: set[int] = set()
        for r in self.rows.values():
            for name in r.get("macro", {}):
                if "@" in name and name.split("@")[1].isdigit():
                    ks.add(int(name.split("@")[1]))
        return sorted(ks)

    @property
    def significance(self) -> dict[str, dict[str, dict]]:
        """Slice -> row -> paired bootstrap of the reference row against it ({} for older runs)."""
        sig = (self.metrics or {}).get("significance")
        return {str(k): v for k, v in sig.items() if isinstance(v, dict)} if isinstance(sig, dict) else {}

    @property
    def significance_config(self) -> dict:
        cfg = (self.metrics or {}).get("significance_config")
        return dict(cfg) if isinstance(cfg, dict) else {}

    @property
    def slice_pairs(self) -> dict[str, dict[str, int]]:
        """Slice -> scenario -> evaluation pairs ({} for older runs)."""
        sp = (self.metrics or {}).get("slice_pairs")
        return {str(k): v for k, v in sp.items() if isinstance(v, dict)} if isinstance(sp, dict) else {}

    @property
    def validation_curves(self) -> dict[str, list[dict]]:
        """Curve label -> [{"epoch", "val_ndcg@50"}] from the fine-tuning reports."""
        out: dict[str, list[dict]] = {}
        for row, rep in self.train_reports.items():
            for label, inner in _row_reports(row, rep).items():
                curve = inner.get("validation") or []
                if curve:
                    out[label] = curve
        return out


def _row_rank(row: str) -> tuple[int, str]:
    return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER) - 1, row)


def _row_reports(row: str, report_json: dict) -> dict[str, dict]:
    """Label -> the fine-tuning report of one model (dssm_single has one per scenario; ctnet a source and one
    target per other scenario, labelled as their loss curves are: ``ctnet/source``, ``ctnet/<scenario>``)."""
    inner = report_json.get("report", report_json) if isinstance(report_json, dict) else {}
    if not isinstance(inner, dict):
        return {}
    if isinstance(inner.get("targets"), list) and isinstance(inner.get("source"), dict):   # train.ctnet's report
        return {f"{row}/source": inner["source"],
                **{f"{row}/{s}": inner[s] for s in inner["targets"] if isinstance(inner.get(s), dict)}}
    if row == "dssm_single" and inner and all(isinstance(v, dict) for v in inner.values()):
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


def read_loss(path: Path) -> pd.DataFrame | None:
    """A step,epoch,loss CSV; None when missing, unreadable or empty."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    if not {"step", "loss"} <= set(df.columns):
        return None
    df = df[["step", "epoch", "loss"] if "epoch" in df.columns else ["step", "loss"]]
    df = df.apply(pd.to_numeric, errors="coerce").dropna(subset=["step", "loss"])
    return df.reset_index(drop=True) if len(df) else None


def _phase_losses(folder: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for phase in LOSS_PHASES:
        df = read_loss(folder / f"loss-{phase}.csv")
        if df is not None:
            out[phase] = df
    return out


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
            if not isinstance(st, dict):
                continue
            if f.parent.name == "pairs":
                rep.pairs_stats = st
            else:
                rep.stats[f.parent.name] = st
    else:
        problems.append(f"split statistics: {features_dir} not found")
    pre = models_dir / "pretrain"
    rep.pretrain_loss = read_loss(pre / "loss.csv")
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
        curves = {}
        if own := _phase_losses(folder):
            curves[row] = own
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if got := _phase_losses(sub):
                curves[f"{row}/{sub.name}"] = got
        if curves:
            rep.finetune_loss[row] = curves
        if (folder / "report.json").is_file():
            r = _read_json(folder / "report.json", problems, f"training report of {row}")
            if isinstance(r, dict):
                rep.train_reports[row] = r
    if published_dir is not None:
        cur = Path(published_dir) / "current"
        if (cur / "metrics.json").is_file():
            pub = _read_json(cur / "metrics.json", problems, "published metrics")
            if isinstance(pub, dict):
                rep.published = pub
                rep.published_version = cur.resolve().name
    return rep


# ---- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str       # file stem in images/
    title: str      # caption
    png: bytes


PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#8c8c8c", "#ccb974", "#64b5cd",
           "#da8bc3"]  # no red: red is the candidate's
MARKERS = ["x", "^", "s", "v", "d", "P", "*", "<", ">"]


def _colors(names: Iterable[str]) -> dict[str, str]:
    names = list(dict.fromkeys(names))
    out = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(n for n in names if n != CANDIDATE)}
    out[CANDIDATE] = "#c0392b"
    return out


def _new_figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _smooth(values: pd.Series) -> pd.Series:
    window = max(1, len(values) // 15)
    return values.rolling(window, min_periods=1, center=True).mean()


def _loss_line(ax, df: pd.DataFrame, color: str, label: str, raw: bool = True) -> None:
    x = df["step"].to_numpy()
    if raw and len(df) > 10:
        ax.plot(x, df["loss"].to_numpy(), color=color, alpha=0.2, linewidth=0.7)
    ax.plot(x, _smooth(df["loss"]).to_numpy(), color=color, linewidth=1.6, label=label)


def _final_phase(phases: Mapping[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
    for phase in ("refit", "full", "select"):
        if phase in phases:
            return phase, phases[phase]
    raise KeyError("no loss phase")


def draw_figures(rep: RunReport) -> dict[str, Figure]:
    """PNG figures by name; a figure whose data is missing is simply absent."""
    figs: dict[str, Figure] = {}
    colors = _colors(list(rep.rows) + list(rep.finetune_loss))
    if rep.pretrain_loss is not None:
        fig = _new_figure(11, 3.2)
        ax = fig.add_subplot()
        _loss_line(ax, rep.pretrain_loss, "#4c72b0", "loss (smoothed)")
        _style(ax, "Contrastive pretraining loss", "step", "loss")
        ax.legend(fontsize=8, frameon=False)
        figs["pretrain_loss"] = Figure("pretrain_loss", "Contrastive pretraining loss per step "
                                       "(faint: raw, solid: moving average)", _png(fig))
    if rep.finetune_loss:
        rows = list(rep.finetune_loss)
        ncols = 2 if len(rows) > 1 else 1
        nrows = math.ceil(len(rows) / ncols)
        fig = _new_figure(11, 2.9 * nrows)
        for i, row in enumerate(rows):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            curves = rep.finetune_loss[row]
            if len(curves) == 1:
                phases = next(iter(curves.values()))
                shades = {"select": "#9aa5b1", "refit": colors.get(row, "#4c72b0"),
                          "full": colors.get(row, "#4c72b0")}
                for phase, df in phases.items():
                    _loss_line(ax, df, shades[phase], PHASE_LABEL[phase])
            else:  # one model per scenario: the final phase of each, smoothed only
                for j, (label, phases) in enumerate(curves.items()):
                    phase, df = _final_phase(phases)
                    _loss_line(ax, df, PALETTE[j % len(PALETTE)], f"{label.split('/', 1)[-1]} ({phase})",
                               raw=False)
            _style(ax, row, "step", "loss")
            ax.legend(fontsize=7, frameon=False, loc="upper right")
        figs["finetune_loss"] = Figure("finetune_loss", "Fine-tuning loss per step and row "
                                       "(faint: raw, solid: moving average)", _png(fig))
    curves = rep.validation_curves
    if curves:
        fig = _new_figure(11, 3.4)
        ax = fig.add_subplot()
        scen_markers: dict[str, str] = {}
        for label, pts in curves.items():
            row = label.split("/", 1)[0]
            ep = [p.get("epoch") for p in pts]
            val = [_num(p.get("val_ndcg@50")) for p in pts]
            if "/" in label:  # one model per scenario: the row's colour, one marker per scenario
                marker = MARKERS[len(scen_markers) % len(MARKERS)]
                scen_markers.setdefault(label, marker)
                ax.plot(ep, val, color=colors.get(row, "#55a868"), linewidth=1, linestyle="--",
                        marker=scen_markers[label], markersize=4, alpha=0.8, label=label)
            else:
                ax.plot(ep, val, color=colors.get(row, "#4c72b0"), linewidth=1.8, marker="o", markersize=4,
                        label=label)
            finite = [(e, v) for e, v in zip(ep, val, strict=True) if v is not None and math.isfinite(v)]
            if finite:
                be, bv = max(finite, key=lambda t: t[1])
                ax.scatter([be], [bv], s=60, facecolors="none", edgecolors="black", linewidths=1, zorder=5)
        _style(ax, "Validation NDCG@50 (held-out training days) per epoch", "epoch", "NDCG@50")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        caption = "Validation NDCG@50 on the held-out newest training days (finetune.holdout_days) per fine-tuning epoch (circle: best epoch)"
        if scen_markers:
            caption += "; dashed: one model per scenario, scored on its own scenario only"
        figs["validation_ndcg"] = Figure("validation_ndcg", caption, _png(fig))
    if rep.rows and rep.scenarios:
        groups = rep.scenarios + ["macro"]
        names = list(rep.rows)
        width = 0.8 / max(len(names), 1)
        fig = _new_figure(11, 3.6)
        ax = fig.add_subplot()
        for i, row in enumerate(names):
            r = rep.rows[row]
            vals = [_num((r.get("per_scenario", {}).get(s) or {}).get("ndcg@50")) for s in rep.scenarios]
            vals.append(_num((r.get("macro") or {}).get("ndcg@50")))
            vals = [v if v is not None and math.isfinite(v) else 0.0 for v in vals]
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, vals, width=width * 0.92, color=colors.get(row, PALETTE[i % len(PALETTE)]), label=row)
        ax.set_xticks(range(len(groups)), groups)
        _style(ax, "NDCG@50 per scenario and row", "", "NDCG@50")
        ax.grid(False, axis="x")
        ax.legend(fontsize=8, frameon=False, ncols=min(len(names), 5), loc="upper left",
                  bbox_to_anchor=(0, -0.08))
        figs["ndcg_per_scenario"] = Figure("ndcg_per_scenario", "NDCG@50 per scenario for every row "
                                           "(last group: macro average)", _png(fig))
    return figs


# ---- blocks -------------------------------------------------------------------------------------


@dataclass
class Cell:
    text: str
    bold: bool = False
    tone: str | None = None     # "pos" | "neg" | "muted"
    num: bool = False           # right-aligned


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] | None = None   # an upper header row: (label, column span)
    group_notes: list[str] | None = None          # a second line under each group label (HTML only)
    highlight: set[int] = field(default_factory=set)  # row indices to shade

    def flat_header(self) -> list[str]:
        """The header with the group labels folded in ("s0 NDCG@50"), for formats with one header row."""
        flat = [g for g, n in self.groups or [] for _ in range(n)]
        if len(flat) != len(self.header):
            return list(self.header)
        return [f"{g} {h}".strip() for g, h in zip(flat, self.header, strict=True)]

    def numeric_columns(self) -> list[bool]:
        """Per column, whether any row holds a number there (right-aligned)."""
        return [any(r[i].num for r in self.rows if i < len(r)) for i in range(len(self.header))]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Note:
    text: str
    kind: str = "note"          # note | ok | fail
    link: tuple[str, str] | None = None  # (label, href) appended after the text


@dataclass
class Cards:
    items: list[tuple[str, str, str | None]]  # (label, value, tone)


@dataclass
class Image:
    name: str


Block = Heading | Text | Note | Table | Cards | Image


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_metric(v: Any, digits: int = 4) -> str:
    f = _num(v)
    return DASH if f is None else f"{f:.{digits}f}"


def fmt_date(v: Any) -> str:
    """YYYYMMDD as YYYY-MM-DD (anything else as given)."""
    text = str(v) if v is not None else DASH
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if len(text) == 8 and text.isdigit() else text


def fmt_count(v: Any) -> str:
    f = _num(v)
    return DASH if f is None else f"{int(f):,}"


def fmt_delta(v: float | None, digits: int = 4) -> str:
    if v is None:
        return DASH
    if round(v, digits) == 0:
        return f"±{0:.{digits}f}"
    return f"{v:+.{digits}f}"


def _tone(v: float | None, digits: int = 4) -> str | None:
    if v is None or round(v, digits) == 0:
        return "muted"
    return "pos" if v > 0 else "neg"


def metric_label(name: str) -> str:
    base, _, k = name.partition("@")
    return f"{METRIC_LABEL.get(base, base)}@{k}" if k else METRIC_LABEL.get(base, base)


def short_label(name: str) -> str:
    base, _, k = name.partition("@")
    return f"{SHORT_LABEL.get(base, base)}@{k}" if k else SHORT_LABEL.get(base, base)


def _bold_best(columns: list[list[float | None]], digits: int = 4) -> list[list[bool]]:
    """Per column, which cells hold the best (highest) value at the shown precision (ties all bold)."""
    out = []
    for col in columns:
        shown = [round(v, digits) if v is not None else None for v in col]
        vals = [v for v in shown if v is not None]
        best = max(vals) if len(vals) > 1 else None
        out.append([best is not None and v == best for v in shown])
    return out


def _value_table(names: list[str], columns: list[tuple[str, list[float | None]]],
                 groups: list[tuple[str, int]] | None = None, first: str = "row",
                 group_notes: list[str] | None = None) -> Table:
    bold = _bold_best([c for _, c in columns])
    rows = []
    for i, name in enumerate(names):
        cells = [Cell(name + (" (candidate)" if name == CANDIDATE else ""))]
        for j, (_, col) in enumerate(columns):
            cells.append(Cell(fmt_metric(col[i]), bold=bold[j][i], num=True))
        rows.append(cells)
    highlight = {i for i, n in enumerate(names) if n == CANDIDATE}
    return Table([first] + [h for h, _ in columns], rows, groups=groups, group_notes=group_notes,
                 highlight=highlight)


def headline_table(rep: RunReport, metrics: Iterable[str] = HEADLINE) -> Table:
    """NDCG@50 and HitRate@50 per scenario, macro and micro; the best value per column in bold."""
    metrics = list(metrics)
    names = list(rep.rows)
    columns: list[tuple[str, list[float | None]]] = []
    groups: list[tuple[str, int]] = [("", 1)]
    notes = [""]
    first = next(iter(rep.rows.values()), {})
    for s in rep.scenarios:
        ps = (first.get("per_scenario") or {}).get(s) or {}
        groups.append((s, len(metrics)))
        notes.append(f"{fmt_count(ps.get('pairs'))} pairs · pool {fmt_count(ps.get('pool'))}")
        for m in metrics:
            columns.append((short_label(m),
                            [_num(((rep.rows[n].get("per_scenario") or {}).get(s) or {}).get(m)) for n in names]))
    for scope, note in (("macro", "mean over scenarios"), ("micro", "mean over pairs")):
        groups.append((scope, len(metrics)))
        notes.append(note)
        for m in metrics:
            columns.append((short_label(m), [_num((rep.rows[n].get(scope) or {}).get(m)) for n in names]))
    return _value_table(names, columns, groups, group_notes=notes)


def k_table(rep: RunReport) -> Table:
    """Macro NDCG, HitRate and Recall at every K, one line per row."""
    names = list(rep.rows)
    columns: list[tuple[str, list[float | None]]] = []
    groups: list[tuple[str, int]] = [("", 1)]
    for base in ("ndcg", "hit_rate", "recall"):
        groups.append((f"{METRIC_LABEL[base]} (macro)", len(rep.ks)))
        for k in rep.ks:
            columns.append((f"@{k}", [_num((rep.rows[n].get("macro") or {}).get(f"{base}@{k}")) for n in names]))
    return _value_table(names, columns, groups)


def _observed_text(obs: Any, limit: int = 160) -> str:
    if isinstance(obs, dict) and "unexpected_count" in obs:
        text = (f"{fmt_count(obs.get('unexpected_count'))} of {fmt_count(obs.get('element_count'))} rows "
                f"unexpected ({_num(obs.get('unexpected_percent')) or 0:.2f}%)")
        sample = next((obs[k] for k in obs if str(k).startswith("unknown_")), obs.get("sample"))
        if sample:
            text += ", e.g. " + ", ".join(map(str, list(sample)[:5]))
        return text
    if isinstance(obs, dict) and set(obs) == {"missing"}:
        return "missing " + ", ".join(map(str, obs["missing"][:10]))
    text = obs if isinstance(obs, str) else json.dumps(obs, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rule_text(rule: Any, limit: int = 120) -> str:
    if isinstance(rule, dict):
        text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rule.items() if k != "notes")
    else:
        text = str(rule)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- sections -----------------------------------------------------------------------------------


def _header(rep: RunReport) -> list[Block]:
    w = rep.window
    blocks: list[Block] = [Heading("SASS retrieval — run report", 1)]
    facts = []
    if w:
        facts.append(("Training window", f"{fmt_date(w.get('train_start'))} … {fmt_date(w.get('train_end'))}", None))
        facts.append(("Test window", f"{fmt_date(w.get('test_start'))} … {fmt_date(w.get('test_end'))}", None))
    facts.append(("Scenarios", ", ".join(rep.scenarios) or DASH, None))
    if rep.skipped:
        facts.append(("Skipped today", ", ".join(f"{s} → {d.get('served_by', DASH)}" for s, d in rep.skipped.items()),
                      "neg"))
    facts.append(("Generated", rep.generated.replace("T", " ").replace("+00:00", " UTC"), None))
    facts.append(("Code commit", rep.commit or "unknown", None))
    blocks.append(Cards(facts))
    key = []
    head = (rep.metrics or {}).get("sass") or {}
    for m in HEADLINE:
        key.append((f"{CANDIDATE} macro {metric_label(m)}", fmt_metric((head.get("macro") or {}).get(m)), None))
    if rep.published is not None and head:
        d = _delta(head, rep.published.get("sass") or {}, "macro", "ndcg@50")
        key.append(("vs published (NDCG@50)", fmt_delta(d), _tone(d)))
    else:
        key.append(("vs published (NDCG@50)", "no published run yet", "muted"))
    v = rep.validation
    key.append(("Data validation", DASH if v is None else ("passed" if v.get("success") else "FAILED"),
                None if v is None else ("pos" if v.get("success") else "neg")))
    blocks.append(Cards(key))
    if rep.metrics is None:
        blocks.append(Note(f"No metrics found at {rep.metrics_path}: the evaluate stage has not run or failed. "
                           "The metrics sections below are empty.", "fail"))
    return blocks


def _validation(rep: RunReport) -> list[Block]:
    blocks: list[Block] = [Heading("Data validation")]
    docs = ("Great Expectations Data Docs", rep.data_docs_href) if rep.data_docs_href else None
    v = rep.validation
    if v is None:
        blocks.append(Note(f"No validation summary at {rep.validation_path}: the validate stage has not run.",
                           "fail", docs))
        return blocks
    dates = v.get("dates") or []
    scope = f" over {fmt_date(dates[0])} … {fmt_date(dates[-1])} ({len(dates)} days)" if dates else ""
    if v.get("success"):
        blocks.append(Note(f"All expectation suites passed{scope}.", "ok", docs))
    else:
        n = len(v.get("failures") or [])
        blocks.append(Note(f"Validation FAILED{scope}: {n} failed check(s), listed below. A run with failed "
                           "validation is not published.", "fail", docs))
    if not docs:
        blocks.append(Note("The Great Expectations Data Docs were not found next to the summary."))
    rows = []
    for name, suite in (v.get("suites") or {}).items():
        counts = suite.get("counts") or {}
        files = len(suite.get("file_checks") or [])
        ok = bool(suite.get("success"))
        rows.append([Cell(name), Cell("passed" if ok else "FAILED", bold=not ok, tone="pos" if ok else "neg"),
                     Cell(fmt_count(counts.get("evaluated")), num=True),
                     Cell(fmt_count(counts.get("successful")), num=True),
                     Cell(fmt_count((counts.get("unsuccessful") or 0) + files), num=True,
                          tone="neg" if (counts.get("unsuccessful") or files) else None),
                     Cell(fmt_count(suite.get("rows")), num=True)])
    if rows:
        blocks.append(Table(["suite", "status", "expectations", "passed", "failed", "rows checked"], rows))
    fails = v.get("failures") or []
    if fails:
        blocks.append(Text("Failed checks:"))
        blocks.append(Table(["suite", "where", "column", "expectation", "observed", "rule"], [
            [Cell(str(f.get("table", DASH))), Cell(str(f.get("where", DASH))), Cell(str(f.get("column", DASH))),
             Cell(str(f.get("expectation_type", DASH))), Cell(_observed_text(f.get("observed")), tone="neg"),
             Cell(_rule_text(f.get("rule")))] for f in fails]))
    return blocks


def _data(rep: RunReport) -> list[Block]:
    blocks: list[Block] = [Heading("Data")]
    eval_pairs = dict((rep.metrics or {}).get("eval_pairs") or {})
    for s in rep.scenarios:  # fall back on the sizes every row carries
        if s not in eval_pairs:
            for r in rep.rows.values():
                if ps := (r.get("per_scenario") or {}).get(s):
                    eval_pairs[s] = {"pairs": ps.get("pairs"), "pool": ps.get("pool")}
                    break
    names = list(dict.fromkeys(rep.scenarios + list(rep.stats)))
    if not names:
        blocks.append(Note("No split statistics and no metrics: nothing to show."))
        return blocks
    rows = []
    for s in names:
        st = rep.stats.get(s) or {}
        ev = eval_pairs.get(s) or {}
        reported = st.get("reported", s in rep.scenarios)
        status = "yes" if reported else "skipped" if s in rep.skipped or st.get("skipped") else "no"
        rows.append([Cell(s), Cell(status, tone=None if reported else "muted"),
                     *(Cell(fmt_count(st.get(k)), num=True) for k in ("rows", "users", "items", "positives")),
                     Cell(fmt_count(ev.get("pairs")), num=True), Cell(fmt_count(ev.get("pool")), num=True)])
    blocks.append(Text("Training-window rows, users, items and positives (clicks) per scenario from the split; "
                       "evaluation pairs and candidate pool sizes from the evaluation protocol."))
    blocks.append(Table(["scenario", "reported", "rows", "users", "items", "positives", "eval pairs", "pool"], rows))
    missing = [s for s in names if s not in rep.stats]
    if missing:
        blocks.append(Note(f"No split statistics for {', '.join(missing)}."))
    if rep.pairs_stats:
        p = rep.pairs_stats
        blocks.append(Text(f"Pretraining pairs (entities seen in two or more scenarios): "
                           f"{fmt_count(p.get('user_pairs'))} user pairs, {fmt_count(p.get('item_pairs'))} item pairs."))
    return blocks


def _skipped(rep: RunReport) -> list[Block]:
    """Declared scenarios that had too few training rows today: why, and which index serves their requests."""
    if not rep.skipped:
        return []
    blocks: list[Block] = [Heading("Scenarios skipped today"),
                           Note(f"{len(rep.skipped)} declared scenario(s) had too few training rows in this run's "
                                "window: no model scenario, no index and no metric row today. Their requests are "
                                "served by the index named below ('other' when the run trains it, else the "
                                "largest scenario); the macro averages leave them out.", "fail")]
    rows = [[Cell(s, bold=True), Cell(str(d.get("reason", DASH))), Cell(fmt_count(d.get("rows")), num=True),
             Cell(fmt_count(d.get("min_scenario_rows")), num=True), Cell(str(d.get("served_by", DASH))),
             Cell(fmt_count(d.get("eval_pairs")), num=True)] for s, d in rep.skipped.items()]
    blocks.append(Table(["scenario", "why", "training rows", "min_scenario_rows", "served by",
                         "eval pairs (test window)"], rows))
    return blocks


def _training(rep: RunReport, figs: Mapping[str, Figure]) -> list[Block]:
    blocks: list[Block] = [Heading("Training")]
    rows = []
    pre = rep.pretrain_report
    if pre:
        skipped = bool(pre.get("skipped"))
        losses = pre.get("epoch_loss") or []
        rows.append([Cell("pretrain"), Cell("skipped" if skipped else fmt_count(len(losses)), num=True),
                     Cell(DASH, num=True), Cell(DASH, num=True), Cell(DASH),
                     Cell(fmt_metric(losses[-1]) if losses else DASH, num=True),
                     Cell(_seconds(pre.get("seconds")), num=True)])
    kept: list[str] = []          # models whose selection kept their start (best epoch 0: ctnet.keep_start)
    for row, r in rep.train_reports.items():
        for label, inner in _row_reports(row, r).items():
            if inner.get("best_epoch") == 0:
                kept.append(label)
            final = next((inner[p] for p in ("refit", "full") if isinstance(inner.get(p), dict)), None)
            epochs = len(final.get("epoch_loss") or []) if final else None
            losses = (final or {}).get("epoch_loss") or []
            rows.append([Cell(label), Cell(fmt_count(epochs), num=True), Cell(fmt_count(inner.get("best_epoch")),
                         num=True), Cell(fmt_metric(inner.get("best_val_ndcg@50")), num=True),
                         Cell(_prior_weights(inner.get("prior_weights"))),
                         Cell(fmt_metric(losses[-1]) if losses else DASH, num=True),
                         Cell(_seconds(r.get("seconds")) if "/" not in label else "", num=True)])
    if rows:
        blocks.append(Table(["model", "epochs (final fit)", "best epoch", "best val NDCG@50",
                             "popularity prior w (held-out day)", "last epoch loss", "time"], rows))
        if kept:
            blocks.append(Note(f"Best epoch 0 ({', '.join(kept)}): early stopping kept the model as it started "
                               "(ctnet.keep_start): no epoch on its own clicks beat its warm start on the held-out day."))
    blocks.extend(_prior_evidence(rep))
    blocks.append(Heading("Pretraining loss", 3))
    if "pretrain_loss" in figs:
        blocks.append(Image("pretrain_loss"))
    elif rep.pretrain_report and rep.pretrain_report.get("skipped"):
        blocks.append(Note("Pretraining was skipped for this run (pretrain.enabled is false): no loss curve."))
    else:
        blocks.append(Note("No pretraining loss (models/pretrain/loss.csv missing or empty)."))
    blocks.append(Heading("Fine-tuning loss", 3))
    if "finetune_loss" in figs:
        blocks.append(Image("finetune_loss"))
        missing = [r for r in rep.rows if r not in rep.finetune_loss and r != "popular"]
        if missing:
            blocks.append(Note(f"No fine-tuning loss for {', '.join(missing)}."))
    else:
        blocks.append(Note("No fine-tuning loss CSVs found under the models folder."))
    blocks.append(Heading("Validation NDCG@50 per epoch", 3))
    if "validation_ndcg" in figs:
        blocks.append(Image("validation_ndcg"))
    else:
        blocks.append(Note("No validation curve in the training reports (early stopping off, or no reports)."))
    return blocks


def _prior_evidence(rep: RunReport) -> list[Block]:
    """Why each scenario got its popularity prior weight: the held-out day's gain of the chosen weight over none,
    and of the weight that day liked best (train.finetune.prior_summary); empty when no row chose one."""
    def gain(v: Any, se: Any) -> str:
        g = _num(v)
        return DASH if g is None else f"{g:+.4f}" + (f" ± {float(se):.4f}" if _num(se) else "")

    rows, margins = [], set()
    for row, r in rep.train_reports.items():
        for label, inner in _row_reports(row, r).items():
            for s, ev in (inner.get("prior_evidence") or {}).items():
                if isinstance(ev, dict):
                    margins.add(f"{float(ev.get('margin_z', math.nan)):g}")
                    rows.append([Cell(label), Cell(str(s)), Cell(f"{float(ev.get('w', 0)):g}", num=True),
                                 Cell(gain(ev.get("gain"), ev.get("se")), num=True),
                                 Cell(f"{float(ev.get('best_w', 0)):g}", num=True),
                                 Cell(gain(ev.get("best_gain"), ev.get("best_se")), num=True)])
    if not rows:
        return []
    return [Heading("Popularity prior: the held-out day's evidence", 3),
            Note("Gains are held-out NDCG@50 over no prior ± the paired standard error. A weight is chosen only where "
                 f"its gain exceeds {' / '.join(sorted(margins))} standard errors (finetune.prior_grid); a best weight "
                 "left at 0 was inside the day's noise."),
            Table(["model", "scenario", "chosen w", "its gain", "best w on the day", "its gain"], rows)]


def _prior_weights(weights: Any) -> str:
    """Each scenario's serving popularity prior weight as fine-tuning chose it (train.finetune), e.g. "s0 0 · s2 0.04"."""
    if not isinstance(weights, dict) or not weights:
        return DASH
    return " · ".join(f"{s} {float(w):g}" for s, w in weights.items())


def _seconds(v: Any) -> str:
    f = _num(v)
    if f is None:
        return DASH
    return f"{f:.0f} s" if f < 120 else f"{f / 60:.1f} min"


def _metrics(rep: RunReport, figs: Mapping[str, Figure]) -> list[Block]:
    blocks: list[Block] = [Heading("Metrics")]
    if not rep.rows:
        blocks.append(Note("No metrics: the evaluate stage's output is missing.", "fail"))
        return blocks
    over = ", ".join(rep.scenarios) or DASH
    left_out = f"; skipped today and not in the macro: {', '.join(rep.skipped)}" if rep.skipped else ""
    blocks.append(Text("Every reference row on the same evaluation pairs and pools (BENCHMARK.md protocol). "
                       f"NDCG@50 and HitRate@50 (HR@50) per scenario, macro (mean over the reported scenarios: "
                       f"{over}{left_out}) and micro (mean over pairs). Best value per column in bold; the "
                       "candidate row is shaded."))
    blocks.append(headline_table(rep))
    if rep.ks:
        blocks.append(Heading("Macro averages at every K", 3))
        blocks.append(k_table(rep))
    if "ndcg_per_scenario" in figs:
        blocks.append(Heading("NDCG@50 per scenario", 3))
        blocks.append(Image("ndcg_per_scenario"))
    return blocks


def objective_table(entry: Mapping[str, Any], metric: str = "ndcg@50") -> Table:
    """One objective's ground truth: ``metric`` per reported scenario and macro, one line per row."""
    scen = [str(x) for x in entry.get("scenarios", [])]
    rows = entry.get("rows") or {}
    names = sorted(rows, key=_row_rank)
    columns = [(f"{x} ({fmt_count((entry.get('pairs') or {}).get(x))} pairs)",
                [_num((((rows[n].get("per_scenario") or {}).get(x)) or {}).get(metric)) for n in names]) for x in scen]
    columns.append(("macro", [_num((rows[n].get("macro") or {}).get(metric)) for n in names]))
    return _value_table(names, columns)


def _objectives(rep: RunReport) -> list[Block]:
    """The multi-task row's other objectives: every row ranked against long-viewed (liked, ...) videos."""
    if not rep.objectives:
        return []
    blocks: list[Block] = [
        Heading("Other objectives (multi-task row sass_mt)"),
        Text("The same rankings scored against another feedback signal of the test window: the videos the user "
             "long-viewed, or liked, instead of clicked (removal of train-window clicks, pools and exclusions as "
             "in the protocol). sass_mt is served at its default weights (multitask.weights) and at the "
             "objective's weight alone, from the same index. NDCG@50; best per column in bold.")]
    for name, entry in rep.objectives.items():
        blocks.append(Heading(f"Ground truth: {name}", 3))
        few = entry.get("too_few") or {}
        if few:
            blocks.append(Note("Not reported (fewer evaluation pairs than evaluate.objective_min_pairs): " +
                               ", ".join(f"{s} ({fmt_count(n)})" for s, n in few.items())))
        if entry.get("scenarios"):
            blocks.append(objective_table(entry))
    return blocks


SLICE_ORDER = SLICES


def slice_descriptions(definition: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One line per slice, with the thresholds of this run (the definitions live in ``slices.py``)."""
    d = dict(definition or {})
    return {name: text.format(cold_max=d.get("cold_max", 5), cold_min_other=d.get("cold_min_other", 5))
            for name, text in SLICE_DESCRIPTIONS.items()}


def _slice_rank(name: str) -> tuple[int, str]:
    return (SLICE_ORDER.index(name) if name in SLICE_ORDER else len(SLICE_ORDER), name)


def verdict(res: Mapping[str, Any] | None, reference: str, row: str) -> tuple[str, str | None]:
    """(text, tone) of one bootstrap result: who is better, or "no measurable difference"."""
    if not res or _num(res.get("diff")) is None:
        return "no pairs", "muted"
    if not res.get("significant"):
        return "no measurable difference", "muted"
    return (f"{reference} better", "pos") if float(res["diff"]) > 0 else (f"{row} better", "neg")


def significance_table(rep: RunReport, slice_name: str) -> Table:
    """One slice: per row, Δ (reference − row) with its CI per scenario and macro, and the macro verdict."""
    cfg = rep.significance_config
    reference = str(cfg.get("reference") or CANDIDATE)
    by_row = rep.significance.get(slice_name) or {}
    counts = rep.slice_pairs.get(slice_name) or {}
    scen = list(rep.scenarios) or list(dict.fromkeys(s for r in by_row.values() for s in r if s != "macro"))
    rows = []
    for row in sorted(by_row, key=_row_rank):
        res = by_row[row] or {}
        cells = [Cell(row)]
        for scope in [*scen, "macro"]:
            r = res.get(scope) or {}
            _, tone = verdict(r, reference, row)
            ci = format_ci(r.get("diff"), r.get("lo"), r.get("hi"))
            cells.append(Cell(ci if ci != DASH else f"{DASH} (no pairs)", bold=bool(r.get("significant")),
                              tone=tone, num=True))
        text, tone = verdict(res.get("macro"), reference, row)
        cells.append(Cell(text, bold=tone in ("pos", "neg"), tone=tone))
        rows.append(cells)
    header = ["row", *(f"{s} ({fmt_count(counts.get(s))} pairs)" if s in counts else s for s in scen), "macro",
              "verdict (macro)"]
    return Table(header, rows)


def slice_table(rep: RunReport) -> Table:
    """Evaluation pairs per slice and scenario, with the slice's definition."""
    desc = slice_descriptions((rep.metrics or {}).get("slice_definition"))
    scen = list(rep.scenarios)
    rows = []
    for name in sorted(rep.slice_pairs, key=_slice_rank):
        counts = rep.slice_pairs[name] or {}
        for s in counts:
            if s not in scen:
                scen.append(s)
    for name in sorted(rep.slice_pairs, key=_slice_rank):
        counts = rep.slice_pairs[name] or {}
        total = sum(int(v) for v in counts.values() if _num(v) is not None)
        rows.append([Cell(name), *(Cell(fmt_count(counts.get(s)), num=True,
                                        tone="muted" if _num(counts.get(s)) == 0 else None) for s in scen),
                     Cell(fmt_count(total), num=True), Cell(desc.get(name, ""))])
    return Table(["slice", *scen, "total", "definition"], rows)


def _significance(rep: RunReport) -> list[Block]:
    if rep.metrics is None:
        return []
    blocks: list[Block] = [Heading("Is the difference real?")]
    sig = rep.significance
    if not sig:
        blocks.append(Note("No significance results in metrics.json (written by an evaluate stage older than the "
                           "paired bootstrap, or with a single row): re-run the evaluate stage to get confidence "
                           "intervals and slices."))
        return blocks
    cfg = rep.significance_config
    reference = str(cfg.get("reference") or CANDIDATE)
    metric = metric_label(str(cfg.get("metric") or "ndcg@50"))
    level = _num(cfg.get("level")) or 0.95
    n_boot = fmt_count(cfg.get("n_boot")) if cfg.get("n_boot") is not None else "2,000"
    blocks.append(Text(
        f"Each cell is Δ {metric} = {reference} − row on the same evaluation pairs, with its {level:.0%} confidence "
        f"interval from a paired bootstrap over the pairs ({n_boot} resamples; macro resamples each scenario "
        f"independently). Δ > 0 means {reference} is better. When the interval excludes 0 the cell is bold and "
        f"coloured (green: {reference} better, red: the row better); otherwise the two rows show no measurable "
        "difference on this test window, whatever their means say. One training seed per row: the intervals "
        "cover the choice of users and videos in the test window, not seed-to-seed training noise."))
    if rep.slice_pairs:
        desc = slice_descriptions((rep.metrics or {}).get("slice_definition"))
        blocks.append(Text(
            "Slices: the same rows scored on sub-populations where a multi-scenario model should help most. "
            + " ".join(f"{name}: {desc[name]}." for name in SLICE_ORDER if name in rep.slice_pairs)
            + " A slice with few pairs gives wide intervals (and with fewer than a few dozen pairs the bootstrap "
              "understates the uncertainty); a scenario with no pair in a slice is left out of its macro."))
        blocks.append(slice_table(rep))
        medians = ((rep.metrics or {}).get("slice_definition") or {}).get("tail_median_clicks") or {}
        empty = [s for s, n in (rep.slice_pairs.get("tail_truth") or {}).items() if _num(n) == 0]
        if empty:
            why = [s for s in empty if _num(medians.get(s)) == 0]
            text = f"tail_truth has no pair in {', '.join(empty)}"
            if why:
                text += f" ({', '.join(why)}: no training click in the scenario, so no video is below the median)"
            blocks.append(Note(text + "."))
    for name in sorted(sig, key=_slice_rank):
        if not sig[name]:
            continue
        total = sum(int(v) for v in (rep.slice_pairs.get(name) or {}).values() if _num(v) is not None)
        blocks.append(Heading(f"Slice {name}" + (f" ({total:,} pairs)" if rep.slice_pairs.get(name) else ""), 3))
        blocks.append(significance_table(rep, name))
    return blocks


def _value(res: Mapping, scope: str, metric: str, scenario: str | None = None) -> float | None:
    node = res.get(scope) or {}
    if scenario is not None:
        node = node.get(scenario) or {}
    return _num(node.get(metric))


def _delta(cur: Mapping, pub: Mapping, scope: str, metric: str, scenario: str | None = None) -> float | None:
    a, b = _value(cur, scope, metric, scenario), _value(pub, scope, metric, scenario)
    return None if a is None or b is None else a - b


def _changes(rep: RunReport) -> list[Block]:
    blocks: list[Block] = [Heading("Change against the last published run")]
    cur = (rep.metrics or {}).get("sass")
    if rep.published is None:
        blocks.append(Note("No published run yet: nothing to compare with."))
        return blocks
    pub = rep.published.get("sass") or {}
    if not cur:
        blocks.append(Note("This run has no metrics for the candidate row, so there is nothing to compare.", "fail"))
        return blocks
    pw = rep.published.get("window") or {}
    what = f"version {rep.published_version}" if rep.published_version else "the published run"
    if pw:
        what += f" (test window {fmt_date(pw.get('test_start'))} … {fmt_date(pw.get('test_end'))})"
    blocks.append(Text(f"Row {CANDIDATE} of this run against {what}. Δ = this run − published."))
    scopes = [("macro", None), ("micro", None)]
    scen = list(dict.fromkeys(list(cur.get("per_scenario") or {}) + list(pub.get("per_scenario") or {})))
    scopes += [("per_scenario", s) for s in scen]
    rows = []
    for scope, s in scopes:
        cells = [Cell(s if s is not None else scope, bold=s is None)]
        for m in HEADLINE:
            p, c, d = _value(pub, scope, m, s), _value(cur, scope, m, s), _delta(cur, pub, scope, m, s)
            cells += [Cell(fmt_metric(p), num=True), Cell(fmt_metric(c), num=True),
                      Cell(fmt_delta(d), num=True, tone=_tone(d), bold=d is not None and round(d, 4) != 0)]
        rows.append(cells)
    groups = [("", 1)] + [(metric_label(m), 3) for m in HEADLINE]
    blocks.append(Table(["scope", "published", "this run", "Δ", "published", "this run", "Δ"], rows, groups=groups))
    only = [s for s in scen if s not in (pub.get("per_scenario") or {})]
    if only:
        blocks.append(Note(f"New in this run (not in the published run): {', '.join(only)}."))
    return blocks


def _problems(rep: RunReport) -> list[Block]:
    if not rep.problems:
        return []
    return [Heading("Missing inputs"), Table(["input"], [[Cell(p)] for p in rep.problems])]


def _champion(rep: RunReport) -> list[Block]:
    """Champion / challenger: which row the publish gate picks on this run and by how much (publish.decide)."""
    g = rep.gate
    if not g:
        return []
    verdict = (f"{g['winner']} will be published" if g.get("publish")
               else "the model in service stays" if g.get("published") is not None else "nothing will be published")
    blocks: list[Block] = [Heading("Champion / challenger", 2),
                           Text(f"Publish gate: {verdict}. {g.get('reason', '')}.")]
    scores = dict(g.get("scores") or {})
    if g.get("published") is not None:
        scores["published (in service)"] = g["published"]
    rows = [[Cell(name), Cell(fmt_metric(v), num=True)] for name, v in scores.items()]
    blocks.append(Table(["row", "macro NDCG@50 (this run's pairs)"], rows))
    margins = g.get("margins") or {}
    if margins:
        blocks.append(Table(["comparison", "Δ macro NDCG@50 [paired 95% CI]", "verdict"],
                            [[Cell(k.replace("-", " − ")), Cell(format_ci(m.get("diff"), m.get("lo"), m.get("hi")), num=True),
                              Cell("significant" if m.get("significant") else "no measurable difference")]
                             for k, m in margins.items()]))
    return blocks


def sections(rep: RunReport, figs: Mapping[str, Figure]) -> list[Block]:
    """The report as a list of format-neutral blocks, in page order."""
    return (_header(rep) + _validation(rep) + _data(rep) + _skipped(rep) + _training(rep, figs) + _metrics(rep, figs)
            + _objectives(rep) + _significance(rep) + _champion(rep) + _changes(rep) + _problems(rep))


# ---- rendering ----------------------------------------------------------------------------------


BLOCK_TESTS = {"heading": Heading, "text": Text, "note": Note, "table": Table, "cards": Cards, "image": Image}


@functools.cache
def _templates() -> jinja2.Environment:
    """templates/report.html.j2 (autoescaped) and report.md.j2; ``{% if b is table %}`` picks a block's kind."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"),
                             autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.tests.update({name: (lambda b, cls=cls: isinstance(b, cls)) for name, cls in BLOCK_TESTS.items()})
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    env.filters["md"] = _md
    return env


def _md(text: Any, cell: bool = False) -> str:
    """Markdown text with no raw HTML (``&``, ``<`` as entities); in a table cell also no ``|`` or newline."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;")
    return text.replace("|", "\\|").replace("\n", " ") if cell else text


def render_html(rep: RunReport, figs: Mapping[str, Figure] | None = None) -> str:
    """One self-contained page: inline CSS, images as base64 data URIs, no external resource."""
    figs = figs or {}
    return _templates().get_template("report.html.j2").render(rep=rep, blocks=sections(rep, figs), figs=figs)


def render_markdown(rep: RunReport, figs: Mapping[str, Figure] | None = None, image_dir: str = "images") -> str:
    """The markdown twin of the HTML page; images are linked as ``<image_dir>/<name>.png``."""
    figs = figs or {}
    return _templates().get_template("report.md.j2").render(rep=rep, blocks=sections(rep, figs), figs=figs,
                                                            image_dir=image_dir)


def write_report(rep: RunReport, out_dir: str | Path, figs: Mapping[str, Figure] | None = None) -> dict[str, Path]:
    """Write ``index.html``, ``report.md`` and ``images/*.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    figs = draw_figures(rep) if figs is None else figs
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.png"):
        if old.stem not in figs:
            old.unlink()
    written: dict[str, Path] = {}
    for name, f in figs.items():
        (images / f"{name}.png").write_bytes(f.png)
        written[name] = images / f"{name}.png"
    for name, text in (("index.html", render_html(rep, figs)), ("report.md", render_markdown(rep, figs))):
        write_text(out_dir / name, text)
        written[name] = out_dir / name
    return written
