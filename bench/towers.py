"""The plain two-tower's variants (issue 31, seed 003) against the plain two-tower, on the same pairs.

    python bench/towers.py                       # the synthetic default (params.yaml as shipped)
    python bench/towers.py --source kuairand     # the KuaiRand-Pure dev split (docs/benchmark.md)

Rows: ``dssm_mixed`` (one plain two-tower trained on every scenario) and the same recipe with its tower replaced
by each variant (``model.arch`` senet, dat, parallel; rows.spec("dssm_mixed") with another ``arch``): the SENet
two-tower (models.senet), the dual augmented two-tower (models.dat) and the parallel MLP/DCN/FM towers
(models.parallel_tower). Every row trains through the product's trainer (train.recipes.train_row) and is scored
through its FAISS index (evaluate.embedding_recommender) on the protocol's pairs. The table: macro NDCG@50 and
HitRate@50 per row (mean over seeds), Δ variant − dssm_mixed with the paired bootstrap 95% CI over the
evaluation pairs of every seed pooled (evaluate.significance), the same Δ per scenario, the training seconds, and
the senet rows' learned field weights (mean SE weight per field and tower; 1 = an average field).

Writes bench/results/towers.{md,json} (after every seed: a crash or a kill keeps what was measured).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
from bench_cli import (  # noqa: E402
    bench_params,
    bench_parser,
    bench_provenance,
    bench_window,
    declared_scenarios,
    params_options,
    source_option,
    source_store,
    window_options,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sass_retrieval.evaluate.significance import compare_rows  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    aggregate,
    evaluation_slices,
    fmt_ci,
    prepare_window,
    score,
    stack_seeds,
    strip_pairs,
    window_bank,
    write_results,
)
from sass_retrieval.rows import RowSpec, spec  # noqa: E402

REFERENCE = "dssm_mixed"
VARIANTS = ("senet", "dat", "parallel")
METRICS = ("ndcg@50", "hit_rate@50")
FIELD_SAMPLE = 4096               # users and items per scenario the senet field weights are averaged over


def row_specs(variants: list[str]) -> list[RowSpec]:
    """dssm_mixed, then its recipe with each variant's tower (named ``dssm_mixed@<arch>``)."""
    base = spec(REFERENCE)
    return [base] + [replace(base, name=f"{REFERENCE}@{arch}", arch=arch,
                             description=f"{base.description}, tower {arch}") for arch in variants]


def senet_field_weights(models: dict, bank, seed: int) -> dict[str, dict[str, float]]:
    """side -> field -> the mean SE weight over the scenarios (each: a sample of its training users and its pool),
    of the model that serves each scenario (RetrievalModel.field_weights)."""
    rng = np.random.default_rng(seed)
    per: list[dict[str, dict[str, float]]] = []
    for s, model in models.items():
        a = bank.per[s]
        users = np.unique(a.mt_user)
        if len(users) == 0 or len(a.pool) == 0:
            continue
        users = np.sort(rng.choice(users, size=min(FIELD_SAMPLE, len(users)), replace=False))
        items = np.sort(rng.choice(a.pool, size=min(FIELD_SAMPLE, len(a.pool)), replace=False))
        per.append(model.field_weights(bank.serving_user_batch(users, s), bank.serving_item_batch(items, s)))
    return {side: {f: float(np.mean([p[side][f] for p in per])) for f in per[0][side]} for side in per[0]} if per else {}


def train_and_score(row: RowSpec, prep, params, bank, slices, seed: int, work: Path) -> tuple[dict, dict | None]:
    """One row at one seed: the protocol's results (with per-pair values) and, for senet, its field weights."""
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.train.recipes import train_row

    t = time.perf_counter()
    models, rep = train_row(row, bank, params, seed, work / f"seed{seed}" / row.name.replace("@", "_"))
    info = {"train_seconds": time.perf_counter() - t}
    if isinstance(rep, dict) and "best_epoch" in rep:
        info["best_epoch"] = rep["best_epoch"]
    weights = senet_field_weights(models, bank, seed) if row.arch == "senet" else None
    return score(slices, EmbeddingRecommender(models, bank), info), weights


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "towers")
    source_option(p)
    p.set_defaults(source="synthetic")   # the product's default size; KuaiRand on demand
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds; the CIs pool their pairs")
    p.add_argument("--variants", default=",".join(VARIANTS), help="model.arch values to compare with dssm_mixed")
    p.add_argument("--n-boot", type=int, default=2000)
    window_options(p)
    params_options(p, "model.dat_weight=1.0")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    base = bench_params(args)
    args.provenance = bench_provenance(__file__, argv)   # at start (the code measured), after the thread count
    window = bench_window(args, base)
    work = Path(args.work)
    prep = prepare_window(source_store(args, base, work), work / "features", window, declared_scenarios(args, base),
                          base.scenarios.min_scenario_rows, base.features.seq_len)
    slices = evaluation_slices(prep)
    bank = window_bank(prep, base)
    rows = row_specs(variants)
    per_seed: list[dict[str, dict]] = []
    weights: list[dict] = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        res: dict[str, dict] = {}
        for row in rows:
            res[row.name], w = train_and_score(row, prep, base, bank, slices, seed, work)
            if w is not None:
                weights.append(w)
            print(f"seed {seed} {row.name}: macro NDCG@50 {res[row.name]['macro']['ndcg@50']:.4f} "
                  f"({res[row.name]['info']['train_seconds']:.0f}s)", flush=True)
        per_seed.append(res)
        _write(per_seed, weights, rows, args, window, time.perf_counter() - t0)
    return 0


def significance(per_seed: list[dict], rows: list[RowSpec], n_boot: int) -> dict[str, dict[str, dict]]:
    """variant -> metric -> scenario/macro -> the paired bootstrap of variant − dssm_mixed, seeds pooled."""
    stacks = stack_seeds(per_seed)
    return {r.name: {m: compare_rows({r.name: stacks[r.name], REFERENCE: stacks[REFERENCE]}, r.name, m,
                                     n_boot=n_boot)[REFERENCE] for m in METRICS}
            for r in rows if r.name != REFERENCE}


def mean_field_weights(weights: list[dict]) -> dict[str, dict[str, float]]:
    """The senet field weights averaged over the seeds."""
    if not weights:
        return {}
    return {side: {f: float(np.mean([w[side][f] for w in weights])) for f in weights[0][side]} for side in weights[0]}


def _write(per_seed: list[dict], weights: list[dict], rows: list[RowSpec], args, window, seconds: float) -> None:
    cis = significance(per_seed, rows, args.n_boot)
    agg = aggregate([strip_pairs(r) for r in per_seed])
    fields = mean_field_weights(weights)
    train_s = {r.name: float(np.mean([x[r.name]["info"]["train_seconds"] for x in per_seed])) for r in rows}
    body = report(agg, cis, fields, train_s, rows, [int(s) for s in args.seeds[:len(per_seed)]], args.set, seconds)
    print(body)
    source = "KuaiRand-Pure" if args.source == "kuairand" else "the synthetic default"
    write_results(Path(args.out), f"Two-tower variants (senet, dat, parallel) against dssm_mixed on {source}",
                  args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds[:len(per_seed)], "rows": [r.name for r in rows],
                   "arch": {r.name: r.arch for r in rows}, "results": [strip_pairs(r) for r in per_seed],
                   "aggregate": agg, "significance": cis, "senet_field_weights": fields, "train_seconds": train_s, "overrides": args.set})


def report(agg: dict, cis: dict, fields: dict, train_s: dict[str, float], rows: list[RowSpec], seeds: list[int],
           overrides: list[str], seconds: float) -> str:
    lines = ["| row | arch | macro NDCG@50 | macro HitRate@50 | Δ NDCG@50 vs dssm_mixed [95% CI] | "
             "Δ HitRate@50 vs dssm_mixed [95% CI] | train s |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        a = agg[r.name]
        ci = cis.get(r.name)
        lines.append(f"| {r.name} | {r.arch} | {a['macro']['ndcg@50']['mean']:.4f} | "
                     f"{a['macro']['hit_rate@50']['mean']:.4f} | "
                     f"{fmt_ci(ci['ndcg@50']['macro']) if ci else 'reference'} | "
                     f"{fmt_ci(ci['hit_rate@50']['macro']) if ci else 'reference'} | "
                     f"{train_s[r.name]:.1f} |")
    scen = list(agg[rows[0].name]["per_scenario"])
    per = ["", "Per scenario, Δ NDCG@50 variant − dssm_mixed [95% CI] (dssm_mixed's NDCG@50 in the header):", "",
           "| row | " + " | ".join(f"{s} ({agg[REFERENCE]['per_scenario'][s]['ndcg@50']['mean']:.4f})" for s in scen)
           + " |", "|---" + "|---:" * len(scen) + "|"]
    per += [f"| {r.name} | " + " | ".join(fmt_ci(cis[r.name]["ndcg@50"][s]) for s in scen) + " |"
            for r in rows if r.name in cis]
    if fields:
        per += ["", "senet's learned field weights (the mean SE weight of each field over a sample of each scenario's "
                "training users and its item pool, averaged over scenarios and seeds; a row's weights sum to its "
                "number of fields, so 1 is an average field):", ""]
        for side, w in fields.items():
            ranked = sorted(w.items(), key=lambda kv: -kv[1])
            per += [f"- {side} tower: " + ", ".join(f"{f} {v:.2f}" for f, v in ranked)]
    return (f"Macro NDCG@50 and HitRate@50 per row, mean over seeds {seeds} (the CIs pool their pairs); overrides "
            f"{overrides or 'none'}; {seconds:.0f}s in all. Δ = variant − dssm_mixed on the same evaluation pairs, "
            "paired bootstrap; bold = the interval excludes 0, otherwise no measurable difference.\n\n"
            + "\n".join(lines + per) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
