"""One experiment = the pipeline's own stages on a given data folder and window, in one process.

The benchmark scripts (bench/quality.py, bench/ablations.py, bench/speed.py) call this instead of
re-implementing any stage, so a benchmark number is a number of the product's code path: the same
importer, split, trainer, FAISS index and docs/benchmark.md protocol that `dvc repro` runs.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Window
from .data.engine import connect, interaction_files
from .data.features import OTHER, ScenarioMap, scenario_map, split_meta
from .data.kuairand import import_kuairand
from .data.shards import trained_scenarios, write_shards
from .data.split_sql import write_pairs_split_sql, write_scenario_split_sql
from .data.store import read_interactions, read_items, read_users
from .gitinfo import head_commit
from .params_schema import Data as ParamsData
from .params_schema import Params
from .rows import spec

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    store: Path
    features: Path
    window: Window
    smap: ScenarioMap
    train: pd.DataFrame
    test: pd.DataFrame
    seconds: dict[str, float]


def empty_store(work: Path) -> Path:
    """``work/store``, emptied: a benchmark writes its data afresh every run, so a store left by an earlier
    importer or generator is never scored as if today's code had written it."""
    store = work / "store"
    if store.exists():
        shutil.rmtree(store)
    return store


def fresh_kuairand_store(data_dir: Path, work: Path) -> Path:
    """``work/store`` imported from the release now, whatever the folder held."""
    store = empty_store(work)
    import_kuairand(data_dir, store, progress=False)
    return store


def prepare_kuairand(data_dir: Path, work: Path, window: Window, declared: list[str], min_rows: int,
                     seq_len: int) -> Prepared:
    """Import, map scenarios and split features, as the ingest and split stages do."""
    return _prepare_fresh(lambda: fresh_kuairand_store(data_dir, work), work, window, declared, min_rows, seq_len)


def prepare_synthetic(params: Params, work: Path, window: Window, declared: list[str], min_rows: int,
                      seq_len: int) -> Prepared:
    """The embedded default's data (params' data.synthetic, the ingest stage's generator) for the window's days,
    mapped and split as on KuaiRand: the same benchmark code scores the world `make run` trains on."""
    from .data.synthetic import SyntheticConfig, generate

    def generated() -> Path:
        store = empty_store(work)
        generate(store, SyntheticConfig.from_params(params), progress=False,
                 dates=list(window.train_dates) + list(window.test_dates))
        return store

    return _prepare_fresh(generated, work, window, declared, min_rows, seq_len)


def _prepare_fresh(make_store: Callable[[], Path], work: Path, window: Window, declared: list[str], min_rows: int,
                   seq_len: int) -> Prepared:
    """A store written afresh by ``make_store`` (timed as ``ingest``), then the window mapped and split."""
    t = time.perf_counter()
    store = make_store()
    prep = prepare_window(store, work / "features", window, declared, min_rows, seq_len)
    prep.seconds["ingest"] = time.perf_counter() - t - sum(prep.seconds.values())
    return prep


def prepare_window(store: Path, features: Path, window: Window, declared: list[str], min_rows: int,
                   seq_len: int) -> Prepared:
    """Map scenarios and split features of one window of an imported store (several windows, one import)."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    smap, train, test = load_window(store, window, declared, min_rows)
    seconds["read"] = time.perf_counter() - t
    t = time.perf_counter()
    write_split(store, features, window, smap, train, seq_len)
    seconds["split"] = time.perf_counter() - t
    return Prepared(store, features, window, smap, train, test, seconds)


def load_window(store: Path, window: Window, declared: list[str], min_rows: int):
    train = read_interactions(store, window.train_start, window.train_end)
    test = read_interactions(store, window.test_start, window.test_end)
    smap = scenario_map(train["scenario"].value_counts(), [s for s in declared if s != OTHER], min_rows)
    train["scenario"] = smap.apply(train["scenario"])
    test["scenario"] = smap.apply(test["scenario"])
    return smap, train, test


def write_split(store: Path, out: Path, window: Window, smap: ScenarioMap, train: pd.DataFrame, seq_len: int,
                memory_limit_mib: int | None = None) -> None:
    """What the split stage writes (the same DuckDB functions, from the store's files of the window's training
    days; ``train`` is not read), for every mapped scenario and the pairs. ``memory_limit_mib``: DuckDB's
    bound (None: params' default data.memory_limit_mib)."""
    del train
    if memory_limit_mib is None:
        memory_limit_mib = int(ParamsData.model_fields["memory_limit_mib"].default)
    if out.exists():
        shutil.rmtree(out)
    meta = split_meta(smap.names, list(smap.reported), smap.mapping, window.train_dates, window.test_dates, seq_len)
    files = interaction_files(store, window.train_dates)
    spill = out.with_name(f".{out.name}-duckdb")
    con = connect(memory_limit_mib, temp_dir=spill)
    try:
        for s in smap.names:
            write_scenario_split_sql(con, files, store, out / s, s, smap.mapping, meta)
        write_pairs_split_sql(con, files, out / "pairs", smap.names, smap.mapping, meta)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def evaluation_slices(prep: Prepared) -> dict[str, Any]:
    """The window's evaluation pairs (docs/benchmark.md) and their slices (evaluate.slices)."""
    from .evaluate.protocol import build_eval_set
    from .evaluate.slices import build_slices

    return build_slices(build_eval_set(prep.train, prep.test, list(prep.smap.reported)), prep.train)


def shards_dir(prep: Prepared) -> Path:
    """Where the window's training shards go: beside its features, as data/shards beside data/features."""
    return prep.features.with_name("shards")


def write_window_shards(prep: Prepared, seed: int, memory_limit_mib: int | None = None) -> Path:
    """What the shards stage writes (data.shards.write_shards, the same function) for the window's split: every
    trained scenario's positives in the order of ``seed`` (params' train.seed in the stage); its folder."""
    if memory_limit_mib is None:
        memory_limit_mib = int(ParamsData.model_fields["memory_limit_mib"].default)
    out = shards_dir(prep)
    if out.exists():
        shutil.rmtree(out)
    spill = out.with_name(f".{out.name}-duckdb")
    con = connect(memory_limit_mib, temp_dir=spill)
    try:
        write_shards(con, prep.features, trained_scenarios(prep.features, prep.smap.names), seed, out)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return out


def window_bank(prep: Prepared, params: Params):
    """The window's feature bank, as the training stages load it (models.bank.bank_for's rule): with
    ``train.input: stream`` the training positives stay in the files, and the window's shards are written first
    (:func:`write_window_shards`) for fine-tuning to stream them."""
    from .models.bank import load_bank, model_config, stream_memory_days

    memory_days, shards = None, None
    if params.train.input == "stream":
        memory_days = stream_memory_days(params, len(prep.window.train_dates))
        shards = write_window_shards(prep, params.train.seed, params.data.memory_limit_mib)
    return load_bank(prep.features, read_users(prep.store), read_items(prep.store),
                     model_config(params, prep.smap.names), memory_days=memory_days, shards_dir=shards)


def score(slices: dict[str, Any], rec: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """One recommender through the protocol on every slice, from one ranking per pair (per-pair values kept)."""
    from .evaluate.slices import evaluate_slices

    by_slice = evaluate_slices(slices, rec, keep_pairs=True)
    return {**by_slice.pop("all"), "slices": by_slice, "info": info or {}}


def run_rows(prep: Prepared, params: Params, rows: list[str], seed: int, work: Path,
             progress: bool = False, keep_models: dict[str, Any] | None = None,
             slices: dict[str, Any] | None = None, bank: Any = None) -> dict[str, dict[str, Any]]:
    """Train and evaluate the given reference rows for one seed; returns row -> protocol results + timings.

    Each row's result is the protocol's (``per_scenario``, ``macro``, ``micro``) on every evaluation pair,
    with ``per_pair`` values for the paired bootstrap, plus ``slices``: the same for each evaluation slice
    (evaluate.slices), scored from the same rankings. ``keep_models`` (a dict) receives each row's recommender,
    for scoring the same models on another window. ``slices`` and ``bank``: the window's, when the caller has
    them already (evaluation_slices, window_bank), so they are not built twice.
    """
    from .evaluate.embedding_recommender import EmbeddingRecommender
    from .evaluate.popular import PopularRecommender
    from .train.recipes import run_pretraining, train_row

    slices = slices if slices is not None else evaluation_slices(prep)
    bank = bank if bank is not None else window_bank(prep, params)
    out: dict[str, dict[str, Any]] = {}
    pretrained = None
    for row in rows:
        t = time.perf_counter()
        info: dict[str, Any] = {}
        if not spec(row).trained:
            rec = PopularRecommender(prep.train)
        else:
            if spec(row).pretrained and pretrained is None:
                pretrained, rep = run_pretraining(bank, params, seed, work / f"seed{seed}" / "pretrain",
                                                  progress=progress)
                info["pretrain_seconds"] = time.perf_counter() - t
                info["pretrain_steps"] = rep["steps"]
            models, rep = train_row(row, bank, params, seed, work / f"seed{seed}" / row, pretrained=pretrained,
                                    progress=progress)
            info["train_seconds"] = time.perf_counter() - t
            if isinstance(rep, dict) and "best_epoch" in rep:
                info["best_epoch"] = rep["best_epoch"]
            rec = EmbeddingRecommender(models, bank)
        if keep_models is not None:
            keep_models[row] = rec
        res = out[row] = score(slices, rec, info)
        log.info("seed %d %s: macro NDCG@50 %.4f (%.0fs)", seed, row, res["macro"]["ndcg@50"], time.perf_counter() - t)
    return out


def aggregate(per_seed: list[dict[str, dict[str, Any]]], metrics=("ndcg@50", "hit_rate@50")) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per row, scenario and macro/micro."""
    rows = per_seed[0].keys()
    agg: dict[str, Any] = {}
    for row in rows:
        entry: dict[str, Any] = {"per_scenario": {}, "macro": {}, "micro": {}}
        scenarios = per_seed[0][row]["per_scenario"].keys()
        for s in scenarios:
            e = {"pairs": per_seed[0][row]["per_scenario"][s]["pairs"], "pool": per_seed[0][row]["per_scenario"][s]["pool"]}
            for m in metrics:
                vals = [r[row]["per_scenario"][s][m] for r in per_seed]
                e[m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "values": vals}
            entry["per_scenario"][s] = e
        for scope in ("macro", "micro"):
            for m in per_seed[0][row][scope]:
                vals = [r[row][scope][m] for r in per_seed]
                entry[scope][m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "values": vals}
        agg[row] = entry
    return agg


def format_agg(agg: dict[str, Any], metric: str = "ndcg@50") -> str:
    rows = list(agg)
    scen = list(agg[rows[0]]["per_scenario"])
    head = ["row"] + [f"{s} (pairs {agg[rows[0]]['per_scenario'][s]['pairs']:,}, pool {agg[rows[0]]['per_scenario'][s]['pool']:,})"
                      for s in scen] + ["macro", "micro"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    best = {c: max(agg[r]["per_scenario"][c][metric]["mean"] for r in rows) for c in scen}
    best["macro"] = max(agg[r]["macro"][metric]["mean"] for r in rows)
    best["micro"] = max(agg[r]["micro"][metric]["mean"] for r in rows)
    for r in rows:
        cells = []
        for c in scen + ["macro", "micro"]:
            v = agg[r]["per_scenario"][c][metric] if c in scen else agg[r][c][metric]
            txt = f"{v['mean']:.4f} ± {v['std']:.4f}"
            cells.append(f"**{txt}**" if np.isclose(v["mean"], best[c]) else txt)
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provenance(argv: list[str]) -> dict[str, Any]:
    import os
    import sys

    import torch

    commit = head_commit(short=True, mark_dirty=True, paths=("src", "pipelines", "bench")) or "unknown"
    return {"command": " ".join([Path(sys.executable).name, *argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "commit": commit, "python": platform.python_version(),
            "torch": torch.__version__}


def write_results(out: Path, title: str, prov: dict[str, Any], body_md: str, payload: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {title}\n\n- command: `{prov['command']}`\n- date: {prov['date']}\n- machine: {prov['machine']}, "
              f"{prov['cores']} cores, torch threads {prov['torch_threads']}\n- commit: {prov['commit']}\n\n")
    out.with_suffix(".md").write_text(header + body_md + "\n")
    # compact: the .md is the file people read; the .json (every seed, scenario and CI) is for programs, and a
    # long backfill's (many days and seeds) indented .json grows large, and so do its full-precision floats
    out.with_suffix(".json").write_text(json.dumps(significant({"provenance": prov, **payload}), default=str))


def significant(obj: Any, digits: int = 6) -> Any:
    """``obj`` with every float rounded to ``digits`` significant digits: a metric averaged over a few thousand
    pairs means nothing past the sixth (the IR-library oracle test checks ours to 1e-6), and the digits beyond
    it only swell a long benchmark's .json."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: significant(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [significant(v, digits) for v in obj]
    return obj


def stack_seeds(per_seed: list[dict[str, dict[str, Any]]], slice_name: str = "all",
                metrics: tuple[str, ...] = ("ndcg@50", "hit_rate@50")) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{row: {scenario: {metric: (n_seeds, n_pairs)}}}`` from run_rows results of several seeds: the input
    of significance.compare_rows, which resamples the same pairs for every seed (pooled over seeds)."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for row in per_seed[0]:
        res = [r[row] if slice_name == "all" else r[row]["slices"][slice_name] for r in per_seed]
        out[row] = {s: {m: np.stack([r["per_pair"][s][m] for r in res]) for m in metrics}
                    for s in res[0]["per_pair"]}
    return out


def strip_pairs(result: Any) -> Any:
    """A run_rows result without its per-pair arrays (for JSON)."""
    if isinstance(result, dict):
        return {k: strip_pairs(v) for k, v in result.items() if k != "per_pair"}
    return result


def fmt_ci(c: dict[str, Any]) -> str:
    """``+0.0123 [+0.0050, +0.0190]``, bold when the interval excludes 0; '–' when there are no pairs."""
    from .evaluate.significance import DASH, format_ci  # the one way to write an interval

    if not c.get("pairs"):
        return DASH
    txt = format_ci(c.get("diff"), c.get("lo"), c.get("hi"))
    return f"**{txt}**" if c.get("significant") and txt != DASH else txt


def format_ci_table(comparison: dict[str, dict[str, dict]], scenarios: list[str], reference: str = "sass") -> str:
    """One line per other row: Δ = reference − row per scenario and macro with its 95% CI (compare_rows output)."""
    first = next(iter(comparison.values()))
    head = ["Δ = " + reference + " − row"] + [f"{s} (pairs {first[s]['pairs']:,})" for s in scenarios] + ["macro"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row, c in comparison.items():
        lines.append(f"| {row} | " + " | ".join(fmt_ci(c[s]) for s in scenarios + ["macro"]) + " |")
    return "\n".join(lines)
