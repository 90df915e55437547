"""The cascade (seeds 002 and 003): does a cross-feature pre-ranker over retrieval's top-K, and distillation from it,
serve better lists than retrieval alone?

    python bench/cascade.py                           # the KuaiRand-Pure dev split, seeds 0 1 2
    python bench/cascade.py --source synthetic --seeds 0

Per seed, through the product's code path (sass_retrieval.experiment, sass_retrieval.rank.stage):

1. the daily retrieval rows (``sass`` and ``publish.challenger``) are trained and scored (retrieval order);
2. each row's pre-ranker is trained on the window's logged exposures (rank.stage.fit_row: COLD's feature
   selection under rank.latency_budget_ms unless rank.feature_sets names the sets), and the row's top
   rank.top_k is rescored and scored by the protocol ("row+rank");
3. GAUC on the exposed test rows, of the pre-ranker and of the retrieval score alone;
4. distillation (``--no-distill`` skips it): each row retrained with the KL term towards its pre-ranker's softened
   scores on the exposures (train.distill), scored in retrieval order ("row+distill"), and the chain consistency
   before and after: the share of the teacher's top 20 over the whole scenario pool that retrieval's top 200
   holds (evaluate.chain), on up to --chain-users evaluation users per scenario.

Paired bootstrap CIs pool the seeds' evaluation pairs (evaluate.significance.compare_rows). Writes
bench/results/cascade.{md,json}.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
from bench_cli import (  # noqa: E402
    bench_params,
    bench_parser,
    bench_provenance,
    declared_scenarios,
    params_options,
    source_option,
    source_store,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.data.store import read_items  # noqa: E402
from sass_retrieval.evaluate.significance import compare_rows  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    evaluation_slices,
    fmt_ci,
    prepare_window,
    run_rows,
    score,
    stack_seeds,
    strip_pairs,
    window_bank,
    write_results,
)
from sass_retrieval.rank.cascade import CascadeRecommender, PairScorer  # noqa: E402
from sass_retrieval.rank.features import RankStats  # noqa: E402
from sass_retrieval.rank.stage import exposure_gauc, fit_row, rank_rows, row_split, teacher_scores  # noqa: E402

KUAIRAND_DEV = (20220505, 8, 3)   # end date, train days, test days: the dev split of docs/benchmark.md
HEADLINE = ("ndcg@50", "hit_rate@50")
VARIANT = {"candidates": "rank", "exposures": "rank_exposures"}   # rank.train_on -> the variant's name


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "cascade")
    source_option(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--no-distill", action="store_true", help="skip the distilled students")
    p.add_argument("--train-on", nargs="+", default=["candidates", "exposures"], choices=["candidates", "exposures"],
                   help="the pre-ranker's training rows (rank.train_on), each a variant: row+rank (candidates), "
                        "row+rank_exposures (COLD's exposures); distillation uses the first")
    p.add_argument("--chain-users", type=int, default=1000,
                   help="evaluation users per scenario the chain consistency is measured on (seeded sample)")
    params_options(p, "rank.top_k=100")
    args = p.parse_args(argv)
    base = bench_params(args)
    args.provenance = bench_provenance(__file__, argv)
    if args.source == "synthetic":
        from sass_retrieval.data.synthetic import SyntheticConfig

        end, train_days, test_days = (SyntheticConfig.from_params(base).dates[-1], base.window.train_days,
                                      base.window.test_days)
    else:
        end, train_days, test_days = KUAIRAND_DEV
    window = make_window(end, train_days, test_days)
    work = Path(args.work)
    t0 = time.perf_counter()
    prep = prepare_window(source_store(args, base, work), work / "features", window, declared_scenarios(args, base),
                          base.scenarios.min_scenario_rows, base.features.seq_len)
    slices = evaluation_slices(prep)
    items = read_items(prep.store)
    t = time.perf_counter()
    exposures = rank_rows(prep.train, items, window.train_dates)   # the teacher's table is scored on these
    stats = RankStats.from_frame(prep.train, items)
    feature_seconds = time.perf_counter() - t
    rows = list(dict.fromkeys(["sass", base.publish.challenger]))
    per_seed: list[dict[str, dict]] = []
    extra: list[dict[str, Any]] = []
    for seed in args.seeds:
        params = base.override({"train.seed": seed}, source=f"seed {seed}")
        bank = window_bank(prep, params)
        recs: dict[str, Any] = {}
        res = run_rows(prep, params, rows, seed, work / "retrieval", slices=slices, bank=bank, keep_models=recs)
        info: dict[str, Any] = {"rank": {}, "gauc": {}, "chain": {}}
        for row in rows:
            scorer = PairScorer(recs[row].models, bank)
            info["rank"][row], info["gauc"][row] = {}, {}
            teacher = None
            for train_on in args.train_on:
                name = f"{row}+{VARIANT[train_on]}"
                p_v = params.override({"rank.train_on": train_on}, source=train_on)
                t = time.perf_counter()
                rows_v = row_split(p_v, exposures, prep.train, items, window.train_dates, recs[row].top_scored,
                                   scorer)
                reranker, rep = fit_row(rows_v, prep.smap.names, stats, p_v)
                rep["fit_seconds"] = time.perf_counter() - t
                rep["rows"] = {"train": len(rows_v.train), "valid": len(rows_v.valid)}
                info["rank"][row][train_on] = rep
                res[name] = score(slices, CascadeRecommender(recs[row], reranker, params.rank.top_k))
                info["gauc"][row][train_on] = exposure_gauc(reranker, scorer, prep.test)
                teacher = teacher or reranker
            if not args.no_distill:
                res[f"{row}+distill"], info["chain"][row] = distilled(prep, params, row, seed, work, slices, bank,
                                                                      recs[row], teacher, scorer, exposures, args)
            print(f"seed {seed} {row}: " + ", ".join(f"{n} {r['macro']['ndcg@50']:.4f}" for n, r in res.items()
                                                      if n.split("+")[0] == row), flush=True)
        per_seed.append(res)
        extra.append(info)
    comparisons = compare(per_seed, rows, args)
    body = report(per_seed, extra, comparisons, rows, args, feature_seconds, time.perf_counter() - t0,
                  first_rows(extra, rows, args), base.rank)
    print(body)
    source = "KuaiRand-Pure" if args.source == "kuairand" else "the synthetic default"
    write_results(Path(args.out), f"Retrieval + pre-ranker (the cascade) on {source}", args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds, "rows": rows, "rank": base.rank.model_dump(),
                   "distill": base.distill.model_dump(), "results": [strip_pairs(x) for x in per_seed],
                   "per_seed": extra, "significance": comparisons, "overrides": args.set})
    return 0


def distilled(prep, params, row: str, seed: int, work: Path, slices, bank, teacher_rec, reranker, scorer, exposures,
              args) -> tuple[dict, dict]:
    """The row retrained with distillation from its pre-ranker, scored in retrieval order, and the chain
    consistency of the undistilled and the distilled row against the same teacher."""
    from sass_retrieval.evaluate.chain import chain_consistency, teacher_top

    table = work / f"teacher_{row}_seed{seed}.parquet"
    teacher_scores(reranker, scorer, exposures).to_parquet(table)
    over = {"distill.enabled": True, "distill.teacher": str(table)}
    keep: dict[str, Any] = {}
    res = run_rows(prep, params.override(over, source="distill"), [row], seed, work / "distill", slices=slices,
                   bank=bank, keep_models=keep)[row]
    rng = np.random.default_rng(seed)
    es = slices["all"]
    chain: dict[str, dict[str, float]] = {}
    for s in es.scenarios:
        users = es.pairs[s]
        if len(users) > args.chain_users:
            users = np.sort(rng.choice(users, args.chain_users, replace=False))
        pool = np.asarray(es.pools[s], np.int64)
        exclude = {int(u): es.train_clicked.get(int(u), np.zeros(0, np.int64)) for u in users}

        def teacher(scenario, u, videos, _s=s):
            return reranker_scores(reranker, scorer, scenario, u, videos)

        top = teacher_top(teacher, s, users, pool, k=20, exclude=exclude)
        chain[s] = {name: chain_consistency(top, retrieval_top(rec, s, users, exclude))
                    for name, rec in (("before", teacher_rec), ("after", keep[row]))}
    return res, chain


def reranker_scores(reranker, scorer, scenario: str, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """The pre-ranker's (n, m) logits of every user against every video (the teacher over a whole pool)."""
    from sass_retrieval.rank.features import feature_matrix

    n, m = len(users), len(videos)
    uu, vv = np.repeat(users, m), np.tile(videos, n)
    feats = feature_matrix(reranker.stats, scenario, uu, vv, scorer(scenario, uu, vv), reranker.names)
    return reranker.model.score(feats, scenario).reshape(n, m)


def retrieval_top(rec, scenario: str, users: np.ndarray, exclude: dict[int, np.ndarray], k: int = 200) -> np.ndarray:
    """Retrieval's top k per user with the user's training clicks removed, as the protocol removes them."""
    extra = max((len(v) for v in exclude.values()), default=0)
    ids = rec.top_items(scenario, users, k + extra)
    out = np.full((len(users), k), -1, np.int64)
    for r, u in enumerate(users):
        kept = ids[r][(ids[r] >= 0) & ~np.isin(ids[r], exclude[int(u)])][:k]
        out[r, :len(kept)] = kept
    return out


def first_rows(extra: list[dict], rows: list[str], args) -> dict[str, int]:
    return extra[0]["rank"][rows[0]][args.train_on[0]]["rows"]


def compare(per_seed: list[dict], rows: list[str], args) -> dict[str, dict]:
    """Paired CIs pooled over seeds: row+rank − row and row+distill − row, per scenario and macro."""
    stacks = stack_seeds(per_seed)
    out: dict[str, dict] = {}
    for row in rows:
        for name in [n for n in stacks if n.startswith(row + "+")]:
            out[name] = {m: compare_rows({row: stacks[row], name: stacks[name]}, name, m,
                                         n_boot=args.n_boot)[row] for m in HEADLINE}
    return out


def mean_over(per_seed: list[dict], row: str, key: str = "ndcg@50") -> float:
    return float(np.mean([r[row]["macro"][key] for r in per_seed]))


def report(per_seed, extra, comparisons, rows, args, feature_seconds, seconds, n_rows, rank) -> str:
    names = list(per_seed[0])
    scen = [s for s in comparisons[next(iter(comparisons))]["ndcg@50"] if s != "macro"]
    lines = [f"Seeds {args.seeds}; overrides {args.set or 'none'}; {seconds:.0f}s in all. `row+rank`: the pre-ranker "
             f"({rank.loss} loss) trained on retrieval's top {rank.top_k} of each training request, every clicked "
             f"and {rank.negatives} sampled other candidates (rank.train_on: candidates; {n_rows['train']:,} rows of "
             f"{rows[0]} at seed {args.seeds[0]}, {n_rows['valid']:,} held out: the newest training day); "
             "`row+rank_exposures`: the same trained on the logged exposures, COLD's rows; `row+distill`: the row "
             "retrained with distillation from its pre-ranker, in retrieval order. The exposures' features took "
             f"{feature_seconds:.0f}s. Δ = variant − retrieval order on the same evaluation pairs (seeds pooled), "
             "paired bootstrap 95% CI; bold = the interval excludes 0, otherwise no measurable difference.", "",
             "| row | macro NDCG@50 | macro HitRate@50 |", "|---|---:|---:|"]
    lines += [f"| {n} | {mean_over(per_seed, n):.4f} | {mean_over(per_seed, n, 'hit_rate@50'):.4f} |" for n in names]
    lines += ["", "Δ NDCG@50 per scenario and macro:", "",
              "| variant | " + " | ".join(scen) + " | macro |", "|---" + "|---:" * (len(scen) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(fmt_ci(c["ndcg@50"][s]) for s in [*scen, "macro"]) + " |"
              for n, c in comparisons.items()]
    lines += ["", "Δ HitRate@50 macro: " + "; ".join(f"{n} {fmt_ci(c['hit_rate@50']['macro'])}"
                                                     for n, c in comparisons.items())]
    lines += ["", "GAUC on the exposed test rows (per-user AUC weighted by impressions), mean over seeds:", "",
              "| row | scorer | " + " | ".join(scen) + " |", "|---|---" + "|---:" * len(scen) + "|"]
    for row in rows:
        for train_on, g0 in extra[0]["gauc"][row].items():
            for scorer in (["retrieval"] if train_on == args.train_on[0] else []) + ["rank"]:
                vals = [np.nanmean([e["gauc"][row][train_on][s][scorer] for e in extra]) if s in g0 else np.nan
                        for s in scen]
                label = "retrieval score" if scorer == "retrieval" else f"pre-ranker ({train_on})"
                lines.append(f"| {row} | {label} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    if extra[0]["chain"]:
        lines += ["", "Chain consistency: share of the teacher's top 20 over the whole pool inside retrieval's top 200 "
                  f"(up to {args.chain_users} evaluation users per scenario), mean over seeds:", "",
                  "| row | " + " | ".join(f"{s} before | {s} after" for s in scen) + " | mean before | mean after |",
                  "|---" + "|---:" * (2 * len(scen) + 2) + "|"]
        for row in rows:
            cells, before, after = [], [], []
            for s in scen:
                b = np.mean([e["chain"][row][s]["before"] for e in extra])
                a = np.mean([e["chain"][row][s]["after"] for e in extra])
                before.append(b)
                after.append(a)
                cells += [f"{b:.3f}", f"{a:.3f}"]
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {np.mean(before):.3f} | {np.mean(after):.3f} |")
    first = extra[0]["rank"][rows[0]][args.train_on[0]]
    sel = first.get("selection") or []
    if sel:
        lines += ["", f"Feature sets of the {rows[0]} pre-ranker ({args.train_on[0]}), seed {args.seeds[0]} (COLD: "
                  "nested sets by importance, "
                  "held-out day GAUC, per-request latency of features + model for rank.top_k candidates, 1 thread):",
                  "", "| features | held-out GAUC | latency ms | within budget | chosen |", "|---|---:|---:|---|---|"]
        lines += [f"| {len(t['names'])}: {', '.join(t['names'])} | {t.get('valid_gauc', float('nan')):.4f} | "
                  f"{t.get('latency_ms', float('nan')):.2f} | {t.get('within_budget', '')} | "
                  f"{'yes' if t.get('chosen') else ''} |" for t in sel]
    weights = first["fit"].get("field_weights")
    if weights:
        lines += ["", "SE field weights (mean over held-out rows): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1]))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

