"""Stage `evaluate`: every reference row through the one BENCHMARK.md protocol; metrics and plots for DVC."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sass_retrieval.config import get

from .common import bank_for, load_run, parser, read_mapped, safe_path, setup_logging, write_json

log = logging.getLogger("evaluate")

HEADLINE = ("ndcg@50", "hit_rate@50")


def load_row_models(row: str, models_dir: Path, scenarios: list[str]):
    from sass_retrieval.train.checkpoint import load_model

    if row == "dssm_single":
        return {s: load_model(models_dir / row / f"model_{s}.pt")[0] for s in scenarios}
    model, _ = load_model(models_dir / row / "model.pt")
    return {s: model for s in scenarios}


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
    from sass_retrieval.train.checkpoint import CheckpointError, load_model

    from .common import published_dir

    path = published_dir(run.params) / "current" / "models" / "sass" / "model.pt"
    if not path.exists():
        return None
    try:
        model, _ = load_model(path)
        if list(model.cfg.scenarios) != list(bank.scenarios):
            log.warning("published model has scenarios %s, this run %s: not re-scored", model.cfg.scenarios,
                        bank.scenarios)
            return None
        return evaluate_fn(es, recommender_cls({s: model for s in bank.scenarios}, bank), ks)
    except (CheckpointError, RuntimeError, KeyError) as exc:
        log.warning("published model could not be re-scored on this window: %s", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--models", default="models")
    p.add_argument("--indexes", default="indexes")
    p.add_argument("--features", default="data/features")
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--plots", default="plots")
    args = p.parse_args(argv)
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.evaluate.popular import PopularRecommender
    from sass_retrieval.evaluate.protocol import build_eval_set, evaluate, format_table
    from sass_retrieval.index.faiss_index import IndexConfig, load_index, set_threads

    t0 = time.perf_counter()
    run = load_run(args.params)
    set_threads(int(get(run.params, "train.threads", 2)))
    w = run.window
    train, test = read_mapped(run, w.train_start, w.train_end), read_mapped(run, w.test_start, w.test_end)
    reported = list(run.scenarios.reported)
    es = build_eval_set(train, test, reported)
    ks = [int(k) for k in get(run.params, "evaluate.ks", [20, 50, 100])]
    bank = bank_for(run, args.features, serving_only=True)
    results: dict[str, dict] = {}
    for row in get(run.params, "evaluate.rows"):
        t = time.perf_counter()
        if row == "popular":
            rec = PopularRecommender(train)
        else:
            models = load_row_models(row, safe_path(args.models), bank.scenarios)
            indexes = None
            if row == "sass":  # the published artefact itself: the per-scenario FAISS files
                indexes = {s: load_index(safe_path(args.indexes) / s / "index.faiss") for s in reported}
            rec = EmbeddingRecommender(models, bank, IndexConfig.from_params(run.params), indexes)
        results[row] = evaluate(es, rec, ks)
        log.info("%s: macro NDCG@50 %.4f (%.1fs)", row, results[row]["macro"]["ndcg@50"], time.perf_counter() - t)
    published = _published_on_this_window(run, bank, es, ks, EmbeddingRecommender, evaluate)
    if published is not None:
        results["published"] = published
    table = format_table(results, metrics=HEADLINE)
    print(table)
    headline = results.get("sass") or next(iter(results.values()))
    metrics = {"window": w.__dict__, "reported": reported, "eval_pairs": es.summary(),
               "sass": headline, "rows": results}
    write_json(safe_path(args.metrics), metrics)
    bars, lines = plots_rows(results, reported, ks)
    plots = safe_path(args.plots)
    write_json(plots / "per_scenario.json", bars)
    write_json(plots / "metric_vs_k.json", lines)
    (plots / "table.md").write_text(table + "\n")
    log.info("evaluation done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
