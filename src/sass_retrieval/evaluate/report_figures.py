"""The run report's figures as PNG bytes: the training curves DVCLive logged, and NDCG@50 per scenario.

The curves are the same DVCLive series ``dvc plots show`` draws (dvc.yaml ``plots:``); the report renders
them itself as static images, because dvc's HTML loads Vega from a CDN and the report must open offline,
in a browser or as markdown. matplotlib's Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from .report_format import num
from .report_inputs import CANDIDATE, RunReport

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#8c8c8c", "#ccb974", "#64b5cd",
           "#da8bc3"]  # no red: red is the candidate's
MARKERS = ["x", "^", "s", "v", "d", "P", "*", "<", ">"]
PER_STEP = "per_step/"   # train.loop.LiveLog's per-step series
PHASES = {"loss-select": "select (early-stopping run)", "loss-refit": "refit (finetune.refit)",
          "loss-full": "full (all training days)"}
FINAL = ("loss-refit", "loss-full", "loss-select")   # the phase whose model is kept, first
VALIDATION = "val_ndcg@50"


@dataclass(frozen=True)
class Figure:
    name: str       # file stem in images/
    title: str      # caption
    png: bytes


def _colors(names: Iterable[str]) -> dict[str, str]:
    others = [n for n in dict.fromkeys(names) if n != CANDIDATE]
    return {**{n: PALETTE[i % len(PALETTE)] for i, n in enumerate(others)}, CANDIDATE: "#c0392b"}


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _style(ax, title: str, xlabel: str, ylabel: str, legend: dict | None = None) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(frameon=False, **(legend or {"fontsize": 7, "loc": "upper right"}))


def _loss_line(ax, curve: pd.DataFrame, color: str, label: str, raw: bool = True) -> None:
    """A per-step loss: faint as logged, solid as a centred moving average (steps are noisy)."""
    x, y = curve["step"].to_numpy(), curve["value"]
    if raw and len(curve) > 10:
        ax.plot(x, y.to_numpy(), color=color, alpha=0.2, linewidth=0.7)
    smooth = y.rolling(max(1, len(y) // 15), min_periods=1, center=True).mean()
    ax.plot(x, smooth.to_numpy(), color=color, linewidth=1.6, label=label)


def _phase_rank(series: str) -> tuple[int, str]:
    phase = series.removeprefix(PER_STEP)
    return (list(PHASES).index(phase) if phase in PHASES else len(PHASES), phase)


def draw_figures(rep: RunReport) -> dict[str, Figure]:
    """PNG figures by name; a figure whose data is missing is simply absent."""
    figs: dict[str, Figure] = {}
    curves = rep.curves
    per_step = curves[curves["series"].str.startswith(PER_STEP)]
    finetune = per_step[per_step["row"] != "pretrain"]
    colors = _colors(list(rep.rows) + list(dict.fromkeys(finetune["row"])))
    pre = per_step[per_step["model"] == "pretrain"]
    if len(pre):
        fig = _figure(11, 3.2)
        ax = fig.add_subplot()
        _loss_line(ax, pre, PALETTE[0], "loss (smoothed)")
        _style(ax, "Contrastive pretraining loss", "step", "loss", {"fontsize": 8})
        figs["pretrain_loss"] = Figure("pretrain_loss", "Contrastive pretraining loss per step "
                                       "(faint: raw, solid: moving average)", _png(fig))
    if len(finetune):
        rows = list(dict.fromkeys(finetune["row"]))
        ncols = 2 if len(rows) > 1 else 1
        fig = _figure(11, 2.9 * math.ceil(len(rows) / ncols))
        for i, row in enumerate(rows):
            ax = fig.add_subplot(math.ceil(len(rows) / ncols), ncols, i + 1)
            mine = finetune[finetune["row"] == row]
            models = list(dict.fromkeys(mine["model"]))
            if len(models) == 1:   # one model: every phase, the early-stopping run in grey
                for series, curve in sorted(mine.groupby("series", sort=False), key=lambda sc: _phase_rank(sc[0])):
                    phase = series.removeprefix(PER_STEP)
                    color = "#9aa5b1" if phase == "loss-select" else colors.get(row, PALETTE[0])
                    _loss_line(ax, curve, color, PHASES.get(phase, phase))
            else:   # one model per scenario (or source and targets): the final phase of each, smoothed only
                for j, model in enumerate(models):
                    theirs = mine[mine["model"] == model]
                    present = list(dict.fromkeys(theirs["series"]))
                    final = next((PER_STEP + p for p in FINAL if PER_STEP + p in present), present[0])
                    _loss_line(ax, theirs[theirs["series"] == final], PALETTE[j % len(PALETTE)],
                               f"{model.split('/', 1)[-1]} ({final.removeprefix(PER_STEP + 'loss-')})", raw=False)
            _style(ax, row, "step", "loss")
        figs["finetune_loss"] = Figure("finetune_loss", "Fine-tuning loss per step and row "
                                       "(faint: raw, solid: moving average)", _png(fig))
    val = curves[curves["series"] == VALIDATION]
    if len(val):
        fig = _figure(11, 3.4)
        ax = fig.add_subplot()
        per_model = "/" in "".join(val["model"])
        for k, (model, curve) in enumerate(val.groupby("model", sort=False)):
            row = model.split("/", 1)[0]
            if "/" in model:   # one model per scenario: the row's colour, one marker per model
                ax.plot(curve["step"], curve["value"], color=colors.get(row, "#55a868"), linewidth=1, linestyle="--",
                        marker=MARKERS[k % len(MARKERS)], markersize=4, alpha=0.8, label=model)
            else:
                ax.plot(curve["step"], curve["value"], color=colors.get(row, "#4c72b0"), linewidth=1.8, marker="o",
                        markersize=4, label=model)
            best = curve.loc[curve["value"].idxmax()]
            ax.scatter([best["step"]], [best["value"]], s=60, facecolors="none", edgecolors="black", linewidths=1,
                       zorder=5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        _style(ax, "Validation NDCG@50 (held-out training days) per epoch", "epoch", "NDCG@50",
               {"fontsize": 7, "loc": "center left", "bbox_to_anchor": (1.01, 0.5)})
        caption = ("Validation NDCG@50 on the held-out newest training days (finetune.holdout_days) per fine-tuning "
                   "epoch (circle: best epoch)")
        if per_model:
            caption += "; dashed: one model per scenario, scored on its own scenario only"
        figs["validation_ndcg"] = Figure("validation_ndcg", caption, _png(fig))
    if rep.rows and rep.scenarios:
        groups = rep.scenarios + ["macro"]
        bars = pd.DataFrame({row: [num(((r.get("per_scenario") or {}).get(s) or {}).get("ndcg@50")) for s in rep.scenarios]
                             + [num((r.get("macro") or {}).get("ndcg@50"))] for row, r in rep.rows.items()},
                            index=groups).astype(float).fillna(0.0)
        fig = _figure(11, 3.6)
        ax = fig.add_subplot()
        bars.plot.bar(ax=ax, width=0.8, rot=0, color=[colors.get(r, PALETTE[i % len(PALETTE)])
                                                      for i, r in enumerate(bars.columns)])
        _style(ax, "NDCG@50 per scenario and row", "", "NDCG@50",
               {"fontsize": 8, "ncols": min(len(bars.columns), 5), "loc": "upper left", "bbox_to_anchor": (0, -0.08)})
        ax.grid(False, axis="x")
        figs["ndcg_per_scenario"] = Figure("ndcg_per_scenario", "NDCG@50 per scenario for every row "
                                           "(last group: macro average)", _png(fig))
    return figs
