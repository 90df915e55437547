"""The daily evaluation: every row of the day through the one protocol (docs/benchmark.md), on every slice.

Rows: evaluate.rows, plus the challenger (publish.challenger) and evaluate.benchmark_rows (on demand). The
candidate and the challenger are scored through their own FAISS indexes (indexes/<row>/<scenario>), the
artefacts the publish stage may serve; the model in service is re-scored on the same pairs (row
``published``).

Every row is scored on every slice (``all``, ``scenario_cold``, ``tail_truth``) from one ranking per pair,
and the reference row is compared with each other row by a paired bootstrap per slice, so the report can
say whether a difference is larger than the noise of the test window.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..data.features import skipped_scenarios
from ..data.schema import OBJECTIVES
from ..data.store import read_interactions
from ..models.bank import FeatureBank
from ..params_schema import Params
from ..publish import PUBLISHED
from ..rows import CANDIDATE, REGISTRY, spec
from ..run import Run, published_dir, read_mapped
from .cascade import cascade_section, rerankers, served
from .embedding_recommender import EmbeddingRecommender
from .objectives import objective_tables
from .popular import PopularRecommender
from .protocol import EvalSet, Recommender, build_eval_set, format_table
from .published import score_published
from .rerank import list_rerankers, rerank_section
from .significance import significance_by_slice, significance_metric
from .skipped import macro_note, skipped_summary
from .slices import build_slices, evaluate_slices, slice_summary, tail_thresholds

log = logging.getLogger("evaluate")

HEADLINE = ("ndcg@50", "hit_rate@50")
BOOTSTRAP_METHOD = ("paired percentile bootstrap over evaluation pairs, stratified by scenario; "
                    "diff = reference - row")


def daily_and_benchmark_rows(params: Params) -> list[str]:
    """evaluate.rows, plus the challenger (publish.challenger) and the on-demand evaluate.benchmark_rows."""
    extra = [params.publish.challenger, *params.evaluate.benchmark_rows]
    return list(dict.fromkeys([*map(str, params.evaluate.rows), *(str(r) for r in extra if r)]))


def reference_row(rows: list[str]) -> str | None:
    """The row the others are tested against: the candidate when evaluated, else the first trained row."""
    if CANDIDATE in rows:
        return CANDIDATE
    return next((r for r in rows if r in REGISTRY and REGISTRY[r].trained), None)


def row_recommender(row: str, train: pd.DataFrame, bank: FeatureBank, models_dir: Path, indexes_dir: Path | None,
                    params: Params, reported: list[str]) -> Recommender:
    """A row as a Recommender: popular counts the training clicks; a trained row embeds with its checkpoints,
    through its own FAISS files under ``indexes_dir/<row>`` when given (a row that may be published),
    else through an index built here."""
    if not spec(row).trained:
        return PopularRecommender(train)
    return EmbeddingRecommender.for_row(row, bank, models_dir, indexes_dir, params.index, reported)


@dataclass
class Scoreboard:
    """Every row's protocol results per slice. The per-pair values are split off: they feed the bootstrap
    and per_pair.npz, never metrics.json."""

    slices: dict[str, EvalSet]
    ks: list[int]
    by_slice: dict[str, dict[str, dict]] = field(init=False)
    per_pair: dict[str, dict[str, dict]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_slice = {name: {} for name in self.slices}
        self.per_pair = {name: {} for name in self.slices}

    def score(self, rec: Recommender) -> dict[str, dict]:
        return evaluate_slices(self.slices, rec, self.ks, keep_pairs=True)

    def add(self, row: str, results: dict[str, dict]) -> None:
        for name, r in results.items():
            self.per_pair[name][row] = r.pop("per_pair")
            self.by_slice[name][row] = r


@dataclass
class DailyEvaluation:
    metrics: dict                       # metrics.json
    table: str                          # the headline metrics of every row (table.md)
    slices: dict[str, EvalSet]
    per_pair: dict[str, dict[str, dict]]
    ks: list[int]


def evaluate_run(run: Run, bank: FeatureBank, models_dir: Path, indexes_dir: Path,
                 rank_dir: Path | None = None, rerank_dir: Path | None = None) -> DailyEvaluation:
    """Score the day's rows (and the model in service) on the run's test window; metrics.json's content.

    ``rank_dir`` (models/rank): a publishable row with a pre-ranker there is scored as served, its retrieval
    order beside it (evaluate.cascade). ``rerank_dir`` (models/rerank): a publishable row with a re-ranker gets
    its lists measured against the upstream order (evaluate.rerank)."""
    params, w = run.params, run.window
    ev = params.evaluate
    # the columns scoring reads: a window of 10^8 rows holds every other column too
    cols = ["user_id", "video_id", "date", *OBJECTIVES.values()]
    train, test = read_mapped(run, w.train_start, w.train_end, cols), read_mapped(run, w.test_start, w.test_end, cols)
    reported = list(run.scenarios.reported)
    es = build_eval_set(train, test, reported)
    skipped_today = skipped_scenarios(params.scenarios.names, run.scenarios, run.names)
    skipped = (skipped_summary(skipped_today, train, read_interactions(run.store, w.test_start, w.test_end))
               if skipped_today else {})
    for s, d in skipped.items():
        log.warning("scenario %s skipped today (%s): no metric row; %d eval pairs served by %r", s, d["reason"],
                    d["eval_pairs"], d["served_by"])
    slices = build_slices(es, train, cold_max=ev.cold_max, cold_min_other=ev.cold_min_other)
    ks = [int(k) for k in ev.ks]
    board = Scoreboard(slices, ks)
    publishable = {CANDIDATE, params.publish.challenger}   # scored through the FAISS files they would serve
    recs: dict[str, Recommender] = {}
    ranked = rerankers(rank_dir, sorted(publishable))
    metric = significance_metric(ks)
    cascade: dict[str, dict] = {}
    bases: dict[str, Recommender] = {}   # each row's retrieval recommender, before a pre-ranker
    for row in daily_and_benchmark_rows(params):
        t = time.perf_counter()
        recs[row] = row_recommender(row, train, bank, models_dir, indexes_dir if row in publishable else None,
                                    params, reported)
        bases[row] = recs[row]
        if row in ranked:   # the cascade and retrieval order on the same pairs; the row is what will be served
            base, cascaded = recs[row], served(recs[row], ranked[row], params)
            order, rescored = board.score(base), board.score(cascaded)
            cascade[row] = cascade_section(base, ranked[row], order["all"]["per_pair"], rescored["all"]["per_pair"],
                                           order["all"], test, params, metric)
            keep = rescored if cascade[row]["served"] else order
            recs[row] = cascaded if cascade[row]["served"] else base
            board.add(row, keep)
            log.info("%s: retrieval order macro NDCG@50 %.4f, with the pre-ranker %.4f: %s served", row,
                     order["all"]["macro"]["ndcg@50"], rescored["all"]["macro"]["ndcg@50"],
                     "the cascade is" if cascade[row]["served"] else "retrieval order is")
        else:
            board.add(row, board.score(recs[row]))
        log.info("%s: macro NDCG@50 %.4f (%.1fs)", row, board.by_slice["all"][row]["macro"]["ndcg@50"],
                 time.perf_counter() - t)
    reranked: dict[str, dict] = {}
    for row, reranker in list_rerankers(rerank_dir, sorted(publishable)).items():
        t = time.perf_counter()
        reranked[row] = rerank_section(es, recs[row], bases[row], reranker, params)
        log.info("%s: re-ranked lists preferred by the evaluator for %.1f%% of requests (%.1fs)", row,
                 100 * reranked[row]["better_share"]["macro"]["share"], time.perf_counter() - t)
    multi_objective = [r for r in recs if spec(r).multi_objective]
    objectives = (objective_tables(recs, multi_objective, train, test, reported, ks, ev.objective_min_pairs)
                  if multi_objective else {})
    published = score_published(published_dir(params), bank, board.score)
    if published is not None:
        board.add(PUBLISHED, published)
    results = board.by_slice["all"]
    t = time.perf_counter()
    reference = reference_row(list(results))
    boot = {"n_boot": int(ev.n_boot), "level": float(ev.level), "seed": int(ev.seed)}
    significance = significance_by_slice(board.per_pair, reference, metric, **boot)
    log.info("paired bootstrap of %s vs %d row(s) on %d slice(s): %.1fs", reference, max(len(results) - 1, 0),
             len(significance), time.perf_counter() - t)
    metrics = {"window": dataclasses.asdict(w), "reported": reported, "eval_pairs": es.summary(),
               "skipped": skipped, "macro_scenarios": reported, "macro_note": macro_note(reported, skipped),
               "sass": results.get(CANDIDATE) or next(iter(results.values())), "rows": results,
               "slices": {name: rows for name, rows in board.by_slice.items() if name != "all"},
               "slice_pairs": slice_summary(slices),
               "slice_definition": {"cold_max": ev.cold_max, "cold_min_other": ev.cold_min_other,
                                    "tail_median_clicks": {s: t["median"] for s, t in tail_thresholds(es, train).items()}},
               "significance": significance, "objectives": objectives, "cascade": cascade,
               "rerank": reranked,
               "significance_config": {"reference": reference, "metric": metric, **boot, "method": BOOTSTRAP_METHOD}}
    return DailyEvaluation(metrics=metrics, table=format_table(results, metrics=HEADLINE), slices=slices,
                           per_pair=board.per_pair, ks=ks)
