"""Stage `evaluate`: every reference row through the one BENCHMARK.md protocol; metrics and plots for DVC.

Rows: evaluate.rows, plus the challenger (publish.challenger) and evaluate.benchmark_rows (on demand). The
candidate (sass) and the challenger are scored through their own FAISS indexes (indexes/<row>/<scenario>),
the artefacts the publish stage may serve; the model in service is re-scored on the same pairs.

Every row is scored on every slice (``all``, ``scenario_cold``, ``tail_truth``) from one ranking per
pair, and the reference row (sass) is compared with each other row by a paired bootstrap on NDCG@50
per slice, so the report can say whether a difference is larger than the noise of the test window.
Params: evaluate.cold_max / cold_min_other (slices), evaluate.n_boot / level / seed (bootstrap).

A declared scenario skipped today (too few training rows) has no metric row: metrics.json lists it under
``skipped`` with its reason, its fallback and the evaluation pairs it would have had, and the macro
averages are over ``macro_scenarios`` (the reported ones) only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sass_retrieval.config import get
from sass_retrieval.data.features import SkippedScenario, skipped_scenarios

from .common import bank_for, load_run, parser, read_mapped, safe_path, setup_logging, write_json

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("evaluate")

HEADLINE = ("ndcg@50", "hit_rate@50")


def load_row_models(row: str, models_dir: Path, scenarios: list[str]):
    """scenario -> the model the row serves it with (one shared model, or one per scenario)."""
    from sass_retrieval.models.checkpoint import load_row_model

    cache: dict = {}
    return {s: load_row_model(models_dir, row, s, cache)[0] for s in scenarios}


def plots_rows(results: dict[str, dict], reported: list[str], ks: list[int]) -> tuple[list[dict], list[dict]]:
    """Long-format rows for `dvc plots`: per-scenario bars and metric-vs-K lines."""
    bars = [{"scenario": s, "row": row, "ndcg@50": r["per_scenario"][s]["ndcg@50"],
             "hit_rate@50": r["per_scenario"][s]["hit_rate@50"]}
            for row, r in results.items() for s in reported]
    lines = [{"row": row, "k": k, "ndcg": r["macro"][f"ndcg@{k}"], "hit_rate": r["macro"][f"hit_rate@{k}"],
              "recall": r["macro"][f"recall@{k}"]} for row, r in results.items() for k in ks]
    return bars, lines


def _published_on_this_window(run, bank, es, ks, recommender_cls, evaluate_fn) -> dict | None:
    """The model in service, scored on this run's evaluation set: what the publish gate compares against.

    Each day has its own test window, so yesterday's number is not comparable with today's; scoring the
    published model on today's pairs is. None when nothing is published or its config no longer fits
    (e.g. the scenario list changed), in which case the gate falls back to the recorded number.
    """
    from sass_retrieval.models.checkpoint import CheckpointError
    from sass_retrieval.publish import current_version, served_row

    from .common import published_dir

    current = current_version(published_dir(run.params))
    if current is None or not (current / "models" / served_row(current)).is_dir():
        return None
    try:
        models = load_row_models(served_row(current), current / "models", list(bank.scenarios))
        config = next(iter(models.values())).cfg
        if list(config.scenarios) != list(bank.scenarios):
            log.warning("published model has scenarios %s, this run %s: not re-scored", config.scenarios,
                        bank.scenarios)
            return None
        return evaluate_fn(es, recommender_cls(models, bank), ks)
    except (CheckpointError, RuntimeError, KeyError) as exc:
        log.warning("published model could not be re-scored on this window: %s", exc)
        return None


def daily_and_benchmark_rows(params: dict) -> list[str]:
    """evaluate.rows, plus the challenger (publish.challenger) and the on-demand evaluate.benchmark_rows."""
    rows = [str(r) for r in get(params, "evaluate.rows")]
    extra = [get(params, "publish.challenger", None), *(get(params, "evaluate.benchmark_rows", None) or [])]
    return list(dict.fromkeys([*rows, *(str(r) for r in extra if r)]))


def reference_row(rows: list[str]) -> str | None:
    """The row the others are tested against: ``sass`` when evaluated, else the first trained row."""
    if "sass" in rows:
        return "sass"
    return next((r for r in rows if r not in ("popular", "published")), None)


def significance_metric(ks: list[int]) -> str:
    """NDCG@50 (the headline), or NDCG at the K closest to 50 when params drop 50 from evaluate.ks."""
    return f"ndcg@{min(ks, key=lambda k: (abs(k - 50), k))}"


def significance_by_slice(per_pair: dict[str, dict[str, dict]], reference: str | None, metric: str,
                          n_boot: int, level: float, seed: int) -> dict[str, dict]:
    """``{slice: {other_row: paired_bootstrap(reference, other_row)}}`` on ``metric`` (one seed per row)."""
    from sass_retrieval.evaluate.significance import compare_rows

    if reference is None:
        return {}
    return {name: compare_rows(rows, reference, metric, n_boot=n_boot, level=level, seed=seed)
            for name, rows in per_pair.items() if reference in rows}


def write_per_pair(path: Path, slices: dict, per_pair: dict[str, dict[str, dict]], metrics: tuple[str, ...]) -> None:
    """Per-pair headline metrics for offline analysis: ``<slice>/<row>/<scenario>/<metric>`` float32 arrays,
    aligned with ``<slice>/pairs/<scenario>`` (user ids). Not a DVC metric: too big for metrics.json."""
    import numpy as np

    arrays = {}
    for name, sl in slices.items():
        for s in sl.scenarios:
            arrays[f"{name}/pairs/{s}"] = np.asarray(sl.pairs[s], dtype=np.int64)
        for row, by_scenario in per_pair.get(name, {}).items():
            for s, values in by_scenario.items():
                for m in metrics:
                    if m in values:
                        arrays[f"{name}/{row}/{s}/{m}"] = np.asarray(values[m], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def skipped_summary(skipped: dict[str, SkippedScenario], train: pd.DataFrame, raw_test: pd.DataFrame) -> dict[str, dict]:
    """metrics.json's ``skipped``: each skipped scenario's marker plus ``eval_pairs``, the evaluation pairs its
    raw test rows would have given (the requests its fallback serves in this test window), so a skipped
    scenario is visible with its size rather than silently absent."""
    from sass_retrieval.evaluate.protocol import build_eval_set

    if not skipped:
        return {}
    names = list(skipped)
    test = raw_test[raw_test["scenario"].astype(str).isin(names)]
    pairs = build_eval_set(train, test, names).summary()
    return {s: {**sk.to_json(), "eval_pairs": pairs[s]["pairs"]} for s, sk in skipped.items()}


def macro_note(reported: list[str], skipped: dict[str, dict]) -> str:
    """One line saying what the macro averages cover, for table.md and metrics.json."""
    note = f"macro = mean over the reported scenarios ({', '.join(reported) or 'none'})"
    if skipped:
        note += "; skipped today, not in the macro: " + ", ".join(
            f"{s} ({d['reason']}; served by {d['served_by']}; {d['eval_pairs']} eval pairs)" for s, d in skipped.items())
    return note


MULTITASK_ROW = "sass_mt"


def objective_tables(recs: dict[str, object], train, test, reported: list[str], ks: list[int],
                     min_pairs: int) -> dict[str, dict]:
    """Every row scored with each non-click objective's ground truth (clicks are the main table), for the
    scenarios with at least ``min_pairs`` pairs for it; the multi-task row also at that objective's weight alone.

    ``{objective: {"scenarios": [...], "pairs": {s: n}, "too_few": {s: n}, "rows": {row: protocol result}}}``."""
    from sass_retrieval.data.schema import OBJECTIVES
    from sass_retrieval.evaluate.protocol import build_eval_set, evaluate
    from sass_retrieval.models.multitask import weighted

    out: dict[str, dict] = {}
    for name, col in OBJECTIVES.items():
        if name == "click":
            continue
        full = build_eval_set(train, test, reported, label=col)
        pairs = {s: len(full.pairs[s]) for s in reported}
        keep = [s for s in reported if pairs[s] >= min_pairs]
        entry = {"scenarios": keep, "pairs": {s: pairs[s] for s in keep},
                 "too_few": {s: n for s, n in pairs.items() if n < min_pairs}, "rows": {}}
        if keep:
            es = full.only(keep)
            for row, rec in recs.items():
                entry["rows"][row] = evaluate(es, rec, ks)
            # the same models and indexes at this objective's weight alone: what a request can ask for
            with weighted(recs[MULTITASK_ROW].models.values(), {name: 1.0}):
                entry["rows"][f"{MULTITASK_ROW} ({name} only)"] = evaluate(es, recs[MULTITASK_ROW], ks)
        out[name] = entry
        log.info("objective %s: %d scenario(s) with >= %d pairs %s", name, len(keep), min_pairs, keep)
    return out


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--models", default="models")
    p.add_argument("--indexes", default="indexes")
    p.add_argument("--features", default="data/features")
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--plots", default="plots")
    p.add_argument("--per-pair", default="metrics/per_pair.npz",
                   help="per-pair headline metrics of every slice and row (npz); empty to skip")
    args = p.parse_args(argv)
    from sass_retrieval.data.store import read_interactions
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.evaluate.popular import PopularRecommender
    from sass_retrieval.evaluate.protocol import build_eval_set, format_table
    from sass_retrieval.evaluate.slices import build_slices, evaluate_slices, slice_summary, tail_thresholds
    from sass_retrieval.index.faiss_index import IndexConfig, load_index, set_threads

    t0 = time.perf_counter()
    run = load_run(args.params)
    set_threads(int(get(run.params, "train.threads")))
    w = run.window
    train, test = read_mapped(run, w.train_start, w.train_end), read_mapped(run, w.test_start, w.test_end)
    reported = list(run.scenarios.reported)
    es = build_eval_set(train, test, reported)
    skipped_today = skipped_scenarios(get(run.params, "scenarios.names"), run.scenarios, run.names)
    skipped = (skipped_summary(skipped_today, train, read_interactions(run.store, w.test_start, w.test_end))
               if skipped_today else {})
    for s, d in skipped.items():
        log.warning("scenario %s skipped today (%s): no metric row; %d eval pairs served by %r", s, d["reason"],
                    d["eval_pairs"], d["served_by"])
    cold_max = int(get(run.params, "evaluate.cold_max"))
    cold_min_other = int(get(run.params, "evaluate.cold_min_other"))
    slices = build_slices(es, train, cold_max=cold_max, cold_min_other=cold_min_other)
    tail_median = {s: t["median"] for s, t in tail_thresholds(es, train).items()}
    ks = [int(k) for k in get(run.params, "evaluate.ks")]
    bank = bank_for(run, args.features, serving_only=True)
    by_slice: dict[str, dict[str, dict]] = {name: {} for name in slices}
    per_pair: dict[str, dict[str, dict]] = {name: {} for name in slices}

    def score(rec) -> dict[str, dict]:
        return evaluate_slices(slices, rec, ks, keep_pairs=True)

    def keep(row: str, res: dict[str, dict]) -> None:
        """Split the per-pair values off: they feed the bootstrap and per_pair.npz, never metrics.json."""
        for name, r in res.items():
            per_pair[name][row] = r.pop("per_pair")
            by_slice[name][row] = r

    challenger = str(get(run.params, "publish.challenger"))
    recs: dict[str, object] = {}
    for row in daily_and_benchmark_rows(run.params):
        t = time.perf_counter()
        if row == "popular":
            rec = PopularRecommender(train)
        else:
            models = load_row_models(row, safe_path(args.models), bank.scenarios)
            indexes = None
            if row in ("sass", challenger):  # what may be published: its per-scenario FAISS files
                indexes = {s: load_index(safe_path(args.indexes) / row / s / "index.faiss") for s in reported}
            rec = EmbeddingRecommender(models, bank, IndexConfig.from_params(run.params), indexes)
        keep(row, score(rec))
        recs[row] = rec
        log.info("%s: macro NDCG@50 %.4f (%.1fs)", row, by_slice["all"][row]["macro"]["ndcg@50"],
                 time.perf_counter() - t)
    objectives = (objective_tables(recs, train, test, reported, ks, int(get(run.params, "evaluate.objective_min_pairs")))
                  if MULTITASK_ROW in recs else {})
    published = _published_on_this_window(run, bank, es, ks, EmbeddingRecommender,
                                          lambda _es, rec, _ks: score(rec))
    if published is not None:
        keep("published", published)
    results = by_slice["all"]
    table = format_table(results, metrics=HEADLINE)
    print(table)
    t = time.perf_counter()
    reference = reference_row(list(results))
    metric = significance_metric(ks)
    boot = {"n_boot": int(get(run.params, "evaluate.n_boot")),
            "level": float(get(run.params, "evaluate.level")),
            "seed": int(get(run.params, "evaluate.seed"))}
    significance = significance_by_slice(per_pair, reference, metric, **boot)
    log.info("paired bootstrap of %s vs %d row(s) on %d slice(s): %.1fs", reference, max(len(results) - 1, 0),
             len(significance), time.perf_counter() - t)
    headline = results.get("sass") or next(iter(results.values()))
    note = macro_note(reported, skipped)
    metrics = {"window": w.__dict__, "reported": reported, "eval_pairs": es.summary(),
               "skipped": skipped, "macro_scenarios": reported, "macro_note": note,
               "sass": headline, "rows": results,
               "slices": {name: rows for name, rows in by_slice.items() if name != "all"},
               "slice_pairs": slice_summary(slices),
               "slice_definition": {"cold_max": cold_max, "cold_min_other": cold_min_other,
                                    "tail_median_clicks": tail_median},
               "significance": significance,
               "objectives": objectives,
               "significance_config": {"reference": reference, "metric": metric, **boot,
                                       "method": "paired percentile bootstrap over evaluation pairs, "
                                                 "stratified by scenario; diff = reference - row"}}
    write_json(safe_path(args.metrics), metrics)
    if args.per_pair:
        write_per_pair(safe_path(args.per_pair), slices, per_pair, (metric, "hit_rate@50"))
    bars, lines = plots_rows(results, reported, ks)
    plots = safe_path(args.plots)
    write_json(plots / "per_scenario.json", bars)
    write_json(plots / "metric_vs_k.json", lines)
    (plots / "table.md").write_text(table + "\n\n" + note + "\n")
    log.info("evaluation done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
