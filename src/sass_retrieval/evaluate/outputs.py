"""The evaluate stage's files: metrics.json (DVC metrics), per_pair.npz, and the `dvc plots` data and table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_path, write_json, write_text
from .protocol import EvalSet

if TYPE_CHECKING:
    from .daily import DailyEvaluation

PER_PAIR_METRICS = ("hit_rate@50",)   # kept per pair beside the significance metric, for offline analysis


def plots_rows(results: dict[str, dict], reported: list[str], ks: list[int]) -> tuple[list[dict], list[dict]]:
    """Long-format rows for `dvc plots`: per-scenario bars and metric-vs-K lines."""
    bars = [{"scenario": s, "row": row, "ndcg@50": r["per_scenario"][s]["ndcg@50"],
             "hit_rate@50": r["per_scenario"][s]["hit_rate@50"]}
            for row, r in results.items() for s in reported]
    lines = [{"row": row, "k": k, "ndcg": r["macro"][f"ndcg@{k}"], "hit_rate": r["macro"][f"hit_rate@{k}"],
              "recall": r["macro"][f"recall@{k}"]} for row, r in results.items() for k in ks]
    return bars, lines


def write_per_pair(path: Path, slices: dict[str, EvalSet], per_pair: dict[str, dict[str, dict]],
                   metrics: tuple[str, ...]) -> None:
    """Per-pair metrics for offline analysis and the publish gate: ``<slice>/<row>/<scenario>/<metric>``
    float32 arrays, aligned with ``<slice>/pairs/<scenario>`` (user ids). Not a DVC metric: too big for
    metrics.json."""
    arrays = {}
    for name, sl in slices.items():
        for s in sl.scenarios:
            arrays[f"{name}/pairs/{s}"] = np.asarray(sl.pairs[s], dtype=np.int64)
        for row, by_scenario in per_pair.get(name, {}).items():
            for s, values in by_scenario.items():
                for m in metrics:
                    if m in values:
                        arrays[f"{name}/{row}/{s}/{m}"] = np.asarray(values[m], dtype=np.float32)
    with atomic_path(path, suffix=".tmp.npz") as tmp:   # numpy appends .npz to a name without it
        np.savez_compressed(tmp, **arrays)


def write_outputs(day: DailyEvaluation, metrics: Path, per_pair: Path | None, plots: Path) -> None:
    """metrics.json, per_pair.npz (when a path is given), and plots/ (per_scenario.json, metric_vs_k.json,
    table.md)."""
    write_json(metrics, day.metrics)
    if per_pair is not None:
        write_per_pair(per_pair, day.slices, day.per_pair, (day.metrics["significance_config"]["metric"],
                                                            *PER_PAIR_METRICS))
    bars, lines = plots_rows(day.metrics["rows"], day.metrics["reported"], day.ks)
    write_json(plots / "per_scenario.json", bars)
    write_json(plots / "metric_vs_k.json", lines)
    write_text(plots / "table.md", day.table + "\n\n" + day.metrics["macro_note"] + "\n")
