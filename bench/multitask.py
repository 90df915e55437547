"""Multi-objective retrieval with per-request weights (seeds 001/002) on KuaiRand: one model, one index per
scenario, every weighting.

    python bench/multitask.py --seeds 0 1 2

On the dev window of docs/benchmark.md (train 8 days, test 05-03..05-05), per seed:

- ``sass[o]``: the sass row trained on one objective's positives (``finetune.objective`` o = click, long_view,
  like): the single-objective models;
- ``sass_mt``: the sass towers with one head per objective, trained on sum_k lambda_k loss_k
  (``multitask.loss_weights``), served at w = click-only, long_view-only, like-only and the default mix
  (``multitask.weights``) from ONE index per scenario (built once, from the weight-free item vectors).

Every row is scored through the protocol with each objective's ground truth (``build_eval_set(label=...)``:
clicked, long-viewed, liked videos of the test window). A scenario is reported for an objective only with at
least ``--min-pairs`` evaluation pairs. Paired bootstrap 95% CIs (pooled over seeds) of sass_mt − sass[click].
Controllability: over an 11-point grid of the click/long_view weight (like 0), and of the click/like weight
(long_view 0), the Spearman correlation between an objective's own weight and its macro NDCG@50 (click's
weight is 1 − a).

Any other window: --end-date, --train-days, --test-days; ``--source synthetic``: the params' generator
(data.synthetic) instead of KuaiRand-Pure.

Writes bench/results/multitask.{md,json} and multitask_grid.png.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
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

from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.data.schema import OBJECTIVES  # noqa: E402
from sass_retrieval.evaluate.protocol import build_eval_set, evaluate  # noqa: E402
from sass_retrieval.evaluate.significance import compare_rows  # noqa: E402
from sass_retrieval.experiment import fmt_ci, prepare_window, window_bank, write_results  # noqa: E402
from sass_retrieval.models.multitask import weighted  # noqa: E402

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

METRIC = "ndcg@50"
GRID = [round(a, 1) for a in np.linspace(0, 1, 11)]   # the other objective's weight a; click weight 1 - a
GRID_OBJECTIVES = ("long_view", "like")                # one grid each: click against it, the third at 0


def eval_sets(prep, min_pairs: int) -> dict[str, object]:
    """Objective -> its EvalSet over the scenarios with at least ``min_pairs`` pairs for it."""
    out = {}
    for name, col in OBJECTIVES.items():
        full = build_eval_set(prep.train, prep.test, list(prep.smap.reported), label=col)
        keep = [s for s in full.scenarios if len(full.pairs[s]) >= min_pairs]
        if keep:
            out[name] = full.only(keep)
    return out


def weightings(params: Params) -> dict[str, dict[str, float]]:
    named = {f"{o} only": {o: 1.0} for o in OBJECTIVES}
    weights = params.multitask.weights.model_dump()
    return {**named, "default mix": {k: float(v) for k, v in weights.items() if v}}


def run_seed(prep, bank, params: Params, sets: dict, seed: int, work: Path) -> dict:
    """One seed: row label -> objective -> protocol result (per-pair values kept), and the grid's macro NDCG."""
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.train.recipes import run_pretraining, train_row

    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for o in OBJECTIVES:
        p = params.override({"finetune.objective": o}, source=f"objective {o}")
        t = time.perf_counter()
        pretrained, _ = run_pretraining(bank, p, seed, work / f"seed{seed}" / "pretrain", progress=False)
        models, _ = train_row("sass", bank, p, seed, work / f"seed{seed}" / f"sass_{o}", pretrained=pretrained,
                              progress=False)
        seconds[f"sass[{o}]"] = time.perf_counter() - t
        rec = EmbeddingRecommender(models, bank)
        rows[f"sass[{o}]"] = {name: evaluate(es, rec, keep_pairs=True) for name, es in sets.items()}
        logging.info("seed %d sass[%s]: %s", seed, o, {n: round(r["macro"][METRIC], 4) for n, r in rows[f"sass[{o}]"].items()})
    t = time.perf_counter()
    models, _ = train_row("sass_mt", bank, params, seed, work / f"seed{seed}" / "sass_mt", progress=False)
    seconds["sass_mt"] = time.perf_counter() - t
    rec = EmbeddingRecommender(models, bank)     # its indexes are built on first use and kept: one per scenario
    for label, w in weightings(params).items():
        with weighted(models.values(), w):       # every model of the row: a large tab may have its own epoch's
            rows[f"sass_mt ({label})"] = {name: evaluate(es, rec, keep_pairs=True) for name, es in sets.items()}
        logging.info("seed %d sass_mt %s: %s", seed, label,
                     {n: round(r["macro"][METRIC], 4) for n, r in rows[f"sass_mt ({label})"].items()})
    grids: dict[str, list[dict[str, float]]] = {}
    by_scenario: dict[str, list[dict[str, dict[str, float]]]] = {}   # the same grid per scenario
    for other in GRID_OBJECTIVES:
        grids[other], by_scenario[other] = [], []
        for a in GRID:
            with weighted(models.values(), {"click": 1 - a, other: a}):
                res = {name: evaluate(es, rec) for name, es in sets.items()}
            grids[other].append({name: float(r["macro"][METRIC]) for name, r in res.items()})
            by_scenario[other].append({name: {s: float(v[METRIC]) for s, v in r["per_scenario"].items()}
                                       for name, r in res.items()})
    return {"rows": rows, "grids": grids, "grids_per_scenario": by_scenario, "seconds": seconds,
            "indexes": len(rec.indexes), "scenarios": len(bank.scenarios)}


def spearman(x: list[float], y: list[float]) -> float:
    return float(pd.Series(x).corr(pd.Series(y), method="spearman"))


def grid_spearman_per_scenario(per_seed: list[dict], other: str, own: dict[str, list[float]],
                               sets: dict) -> dict[str, dict[str, float]]:
    """objective -> scenario -> Spearman between the objective's own weight and the scenario's NDCG@50 (mean over
    seeds) along the click/``other`` grid: the macro's correlation can come from one small tab moving a lot."""
    out: dict[str, dict[str, float]] = {}
    for o in own:
        if o not in sets:
            continue
        out[o] = {s: spearman(own[o], [float(np.mean([ps["grids_per_scenario"][other][i][o][s] for ps in per_seed]))
                                       for i in range(len(GRID))])
                  for s in sets[o].scenarios}
    return out


def report(per_seed: list[dict], sets: dict, params: Params, n_boot: int) -> tuple[str, dict]:
    rows = list(per_seed[0]["rows"])
    objectives = list(sets)

    def mean(row: str, o: str, scen: str | None = None) -> float:
        vals = [(r["rows"][row][o]["per_scenario"][scen] if scen else r["rows"][row][o]["macro"])[METRIC]
                for r in per_seed]
        return float(np.mean(vals))

    out = ["Reported scenarios per objective (at least the minimum pairs): " +
           "; ".join(f"{o}: {', '.join(f'{s} ({len(sets[o].pairs[s]):,} pairs)' for s in sets[o].scenarios)}"
                     for o in objectives) + ".\n",
           f"## Macro NDCG@50 per objective's ground truth (mean over {len(per_seed)} seeds)\n",
           "| row | " + " | ".join(objectives) + " |", "|---" + "|---:" * len(objectives) + "|"]
    for r in rows:
        out.append(f"| {r} | " + " | ".join(f"{mean(r, o):.4f}" for o in objectives) + " |")
    comps = {}
    for o in objectives:
        stacks = {r: {s: {METRIC: np.stack([ps["rows"][r][o]["per_pair"][s][METRIC] for ps in per_seed])}
                      for s in sets[o].scenarios} for r in rows}
        comps[o] = compare_rows(stacks, "sass[click]", METRIC, n_boot=n_boot)
    out += ["", "## Δ NDCG@50 = sass[click] − row, 95% paired bootstrap CI (pooled over seeds)\n",
            "Negative: the row is better than the click-only model. Bold: the interval excludes 0; otherwise no "
            "measurable difference.\n"]
    for o in objectives:
        scen = sets[o].scenarios
        out += [f"### ground truth: {o}\n", "| row | " + " | ".join(scen) + " | macro |",
                "|---" + "|---:" * (len(scen) + 1) + "|"]
        out += [f"| {r} | " + " | ".join(fmt_ci(comps[o][r][x]) for x in scen + ["macro"]) + " |"
                for r in rows if r != "sass[click]"]
        out.append("")
    grids, rho, rho_scen = {}, {}, {}
    for other in GRID_OBJECTIVES:
        grid = {o: [float(np.mean([ps["grids"][other][i][o] for ps in per_seed])) for i in range(len(GRID))]
                for o in objectives}
        own = {"click": [1 - a for a in GRID], other: GRID}
        grids[other], rho[other] = grid, {o: spearman(own[o], grid[o]) for o in objectives if o in own}
        out += [f"## Controllability: macro NDCG@50 along the click/{other} weight grid (the third objective 0; "
                "mean over seeds)\n",
                f"| {other} weight a (click 1 − a) | " + " | ".join(objectives) + " |",
                "|---:" + "|---:" * len(objectives) + "|"]
        out += [f"| {a:.1f} | " + " | ".join(f"{grid[o][i]:.4f}" for o in objectives) + " |" for i, a in enumerate(GRID)]
        out += ["", "Spearman correlation between an objective's own weight and its NDCG@50 along this grid: " +
                ", ".join(f"{o} {r:+.3f}" for o, r in rho[other].items()) + "\n"]
        per_s = grid_spearman_per_scenario(per_seed, other, own, sets)
        rho_scen[other] = per_s
        out += ["Per scenario (its NDCG@50 along the grid, mean over seeds; where the macro's direction comes from):\n",
                "| objective | " + " | ".join(sets["click"].scenarios) + " |",
                "|---" + "|---:" * len(sets["click"].scenarios) + "|"]
        out += [f"| {o} | " + " | ".join(f"{per_s[o][s]:+.2f}" if s in per_s[o] else "–" for s in sets["click"].scenarios)
                + " |" for o in per_s]
        out.append("")
    secs = {r: float(np.mean([ps["seconds"][r] for ps in per_seed])) for r in per_seed[0]["seconds"]}
    out += ["## Training seconds (mean over seeds)\n", "| model | seconds | × sass[click] |", "|---|---:|---:|"]
    out += [f"| {r} | {s:.0f} | {s / secs['sass[click]']:.2f} |" for r, s in secs.items()]
    out += ["", f"Every weighting above was served by the same {per_seed[0]['indexes']} FAISS indexes, one per evaluated "
            "scenario, built once from the weight-free item vectors."]
    payload = {"objectives": objectives, "rows": {r: {o: mean(r, o) for o in objectives} for r in rows},
               "per_scenario": {r: {o: {s: mean(r, o, s) for s in sets[o].scenarios} for o in objectives} for r in rows},
               "ci_vs_sass_click": comps, "grids": {"weight": GRID, **grids}, "spearman": rho,
               "spearman_per_scenario": rho_scen,
               "seconds": secs, "pairs": {o: {s: len(sets[o].pairs[s]) for s in sets[o].scenarios} for o in objectives},
               "params": {"multitask": params.multitask.model_dump()}}
    return "\n".join(out), payload


def plot_grid(payload: dict, path: Path) -> None:
    """One panel per grid: every objective's macro NDCG@50 as the other objective's weight moves from 0 to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GRID_OBJECTIVES), figsize=(10, 3.6))
    for ax, other in zip(axes, GRID_OBJECTIVES, strict=True):
        for o in payload["objectives"]:
            ax.plot(payload["grids"]["weight"], payload["grids"][other][o], marker="o", label=f"{o} ground truth")
        ax.set_xlabel(f"{other} weight a (click weight 1 − a)")
        ax.set_ylabel("macro NDCG@50")
        ax.set_title(f"click / {other}")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("sass_mt on KuaiRand (dev window): one model, one index per scenario, per-request weights")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "multitask")
    p.add_argument("--end-date", type=int, default=20220505, help="the window's last test day")
    p.add_argument("--train-days", type=int, default=8)
    p.add_argument("--test-days", type=int, default=3)
    source_option(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--min-pairs", type=int, default=100, help="report a scenario for an objective from this many pairs")
    p.add_argument("--n-boot", type=int, default=2000)
    params_options(p, "multitask.head_dim=16")
    args = p.parse_args(argv)
    params = bench_params(args)
    prov = bench_provenance(__file__, argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # written afresh every run (bench_cli.source_store), as the other benchmarks do: a store left in the work folder
    # by an earlier importer was once reused silently (the suspected cause of the archived multitask_emb_lr run,
    # which the commit it names does not reproduce)
    prep = prepare_window(source_store(args, params, work), work / "features",
                          make_window(args.end_date, args.train_days, args.test_days), declared_scenarios(args, params),
                          params.scenarios.min_scenario_rows, params.features.seq_len)
    sets = eval_sets(prep, args.min_pairs)
    bank = window_bank(prep, params)
    t0 = time.perf_counter()
    per_seed: list[dict] = []
    out = Path(args.out)
    where = "KuaiRand dev window" if args.source == "kuairand" else "synthetic generator"
    for seed in args.seeds:
        per_seed.append(run_seed(prep, bank, params, sets, seed, work / "rows"))
        body, payload = report(per_seed, sets, params, args.n_boot)
        body = (f"Seeds {args.seeds[:len(per_seed)]}; overrides {args.set or 'none'}; "
                f"{time.perf_counter() - t0:.0f}s.\n\n" + body)
        write_results(out, f"Multi-objective retrieval with per-request weights ({where})", prov, body, payload)
        plot_grid(payload, out.with_name(out.name + "_grid.png"))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
