"""Controllable multi-objective re-ranking (seed 001): does the generator build better lists than retrieval order and
than a rule pipeline, and do the per-request weights control what the list holds?

    python bench/rerank.py                            # the KuaiRand-Pure dev split, seeds 0 1 2
    python bench/rerank.py --source synthetic --seeds 0

Per seed, through the product's code (sass_retrieval.rerank.stage, the same functions the rerank stage runs): the
candidate row ``sass`` is trained and its top rerank.candidates per evaluation pair (the protocol's rank_pairs: the
user's training clicks removed) become the requests; the evaluator and the hypernetwork generator are trained on the
training window, and one generator per fixed w (--per-w points) as the hypernetwork's upper reference. Compared on
the test days' evaluation pairs:

- retrieval order: the first rerank.length candidates;
- the generator at the default weights (params rerank.weights) and at click-only weights;
- the rule pipeline (rerank.rule_pipeline): click order, at most ``per_tag`` items per tag, the last ``cold_slots``
  slots to the best cold-start items, over a grid of both;
- controllability: each of click, like, diversity, cold_start swept over 11 points in [0, 1], the others at their
  defaults, and the realised utility of that goal (mean over every request);
- the click-vs-diversity front: click weight 1, diversity swept, like and cold-start 0, against the rule pipeline's.

CIs: paired bootstrap over evaluation pairs, seeds pooled (evaluate.significance). Writes bench/results/rerank.{md,json}
and bench/results/rerank_pareto.png.
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
import torch  # noqa: E402

from sass_retrieval.data.store import read_items  # noqa: E402
from sass_retrieval.evaluate.protocol import build_eval_set  # noqa: E402
from sass_retrieval.evaluate.significance import paired_bootstrap  # noqa: E402
from sass_retrieval.experiment import fmt_ci, prepare_window, run_rows, window_bank, write_results  # noqa: E402
from sass_retrieval.rank.cascade import PairScorer  # noqa: E402
from sass_retrieval.rank.features import RankStats  # noqa: E402
from sass_retrieval.rerank.goals import GOALS, WEIGHTED, reward, utilities  # noqa: E402
from sass_retrieval.rerank.measure import (  # noqa: E402
    better_than,
    dominance,
    front,
    ndcg_per_pair,
    pooled_utilities,
    served,
    spearman,
    test_slates,
    upstream_lists,
)
from sass_retrieval.rerank.rule_pipeline import rule_lists  # noqa: E402
from sass_retrieval.rerank.stage import fit_evaluator_and_slates, fit_list_generator  # noqa: E402

GRID = [round(x, 1) for x in np.linspace(0, 1, 11)]
CONTROLLED = ("click", "diversity", "cold_start")    # the controllability targets; like is reported
PER_W = {"default": None, "click+diversity": {"click": 1.0, "like": 0.0, "diversity": 1.0, "cold_start": 0.0},
         "cold-heavy": {"click": 0.5, "like": 0.0, "diversity": 0.0, "cold_start": 1.0}}
RULE_GRID = [(per_tag, cold) for per_tag in (10, 3, 2, 1) for cold in (0, 1, 2)]


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "rerank")
    source_option(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-boot", type=int, default=2000)
    window_options(p)
    params_options(p, "rerank.epochs=10")
    args = p.parse_args(argv)
    base = bench_params(args)
    args.provenance = bench_provenance(__file__, argv)
    window = bench_window(args, base)
    work = Path(args.work)
    t0 = time.perf_counter()
    prep = prepare_window(source_store(args, base, work), work / "features", window, declared_scenarios(args, base),
                          base.scenarios.min_scenario_rows, base.features.seq_len)
    es = build_eval_set(prep.train, prep.test, list(prep.smap.reported))
    items = read_items(prep.store)
    stats = RankStats.from_frame(prep.train, items)
    per_seed = []
    for seed in args.seeds:
        params = base.override({"train.seed": seed}, source=f"seed {seed}")
        per_seed.append(one_seed(params, prep, es, items, stats, window, work, seed))
        print(f"seed {seed}: better share {per_seed[-1]['better_share']:.3f}, click NDCG@10 "
              f"{per_seed[-1]['ndcg_mean']}", flush=True)
    summary = summarise(per_seed, es, base, args)
    body = report(summary, per_seed, base, args, time.perf_counter() - t0)
    print(body)
    plot(summary, Path(args.out).parent / f"{Path(args.out).name}_pareto.png")
    source = "KuaiRand-Pure" if args.source == "kuairand" else "the synthetic default"
    write_results(Path(args.out), f"Controllable multi-objective re-ranking on {source}", args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds, "rerank": base.rerank.model_dump(),
                   "summary": summary, "per_seed": [strip(x) for x in per_seed], "overrides": args.set})
    return 0


def one_seed(params, prep, es, items, stats, window, work: Path, seed: int) -> dict[str, Any]:
    r = params.rerank
    bank = window_bank(prep, params)
    recs: dict[str, Any] = {}
    run_rows(prep, params, ["sass"], seed, work / "retrieval", bank=bank, keep_models=recs)
    rec = recs["sass"]
    t = time.perf_counter()
    fit = fit_evaluator_and_slates(params, prep.train, items, window.train_dates, rec.top_scored, prep.smap.names,
                                   stats)
    eval_seconds = time.perf_counter() - t
    t = time.perf_counter()
    hyper, rep = fit_list_generator(params, fit)
    gen_seconds = time.perf_counter() - t
    tests = test_slates(es, rec, PairScorer(rec.models, bank), fit.evaluator, r.candidates)
    scen = list(es.scenarios)
    defaults = hyper.weights()

    def lists_of(fn) -> dict[str, torch.Tensor]:
        return {s: fn(tests[s].slate) for s in scen}

    def rewards(lists: dict[str, torch.Tensor], w: torch.Tensor) -> dict[str, np.ndarray]:
        return {s: reward(utilities(tests[s].slate, lists[s]), w, hyper.scales).numpy() for s in scen}

    def ndcg(lists: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return ndcg_per_pair(es, {s: served(tests[s].slate, lists[s]) for s in scen}, r.length)

    length = r.length
    retrieval = lists_of(lambda sl: upstream_lists(sl, length))
    weights = {"default": defaults, "click": hyper.weights({"click": 1.0, "like": 0.0, "diversity": 0.0,
                                                            "cold_start": 0.0})}
    generated = {name: lists_of(lambda sl, w=w: hyper.lists(sl, w)) for name, w in weights.items()}
    out: dict[str, Any] = {"seed": seed, "seconds": {"evaluator": eval_seconds, "generator": gen_seconds},
                           "report": rep, "utilities": {"retrieval": pooled_utilities(tests, retrieval)},
                           "requests": {s: len(tests[s].users) for s in scen}}
    out["utilities"].update({f"generated@{n}": pooled_utilities(tests, v) for n, v in generated.items()})
    out["better"] = better_than(tests, generated["default"], retrieval, defaults, hyper.scales)
    out["better_share"] = float(np.concatenate(list(out["better"].values())).mean())
    out["ndcg"] = {"retrieval": ndcg(retrieval), **{f"generated@{n}": ndcg(v) for n, v in generated.items()}}
    out["ndcg_mean"] = {n: round(float(np.mean([v[s].mean() for s in scen])), 4) for n, v in out["ndcg"].items()}
    # controllability: each goal's weight over the grid, the others at the defaults
    out["control"] = {}
    for i, g in enumerate(WEIGHTED):
        curve = []
        for x in GRID:
            w = defaults.clone()
            w[i] = x
            curve.append(pooled_utilities(tests, lists_of(lambda sl, w=w: hyper.lists(sl, w)))[g])
        out["control"][g] = {"utility": curve, "spearman": spearman(GRID, curve)}
    # click-vs-diversity: the generator's sweep and the rule pipeline's grid
    gen_pts = []
    for x in GRID:
        w = hyper.weights({"click": 1.0, "like": 0.0, "diversity": x, "cold_start": 0.0})
        u = pooled_utilities(tests, lists_of(lambda sl, w=w: hyper.lists(sl, w)))
        gen_pts.append({"diversity_weight": x, "diversity": u["diversity"], "click": u["click"],
                        "cold_start": u["cold_start"]})
    rule_pts = []
    for per_tag, cold in RULE_GRID:
        lists = lists_of(lambda sl, a=per_tag, b=cold: rule_lists(sl, length, a, b, hyper.generator.rules))
        u = pooled_utilities(tests, lists)
        rule_pts.append({"per_tag": per_tag, "cold_slots": cold, "diversity": u["diversity"], "click": u["click"],
                         "cold_start": u["cold_start"], "ndcg": float(np.mean([v.mean() for v in
                                                                                ndcg(lists).values()]))})
    out["pareto"] = {"generator": gen_pts, "rules": rule_pts}
    # the hypernetwork against one generator per fixed w, on the evaluator's reward at that w
    out["per_w"] = {}
    for name, given in PER_W.items():
        w = defaults if given is None else hyper.weights(given)
        t = time.perf_counter()
        ref, _ = fit_list_generator(params, fit, fixed_w=w)
        out["per_w"][name] = {"weights": w.tolist(), "seconds": time.perf_counter() - t,
                              "hyper": rewards(lists_of(lambda sl, w=w: hyper.lists(sl, w)), w),
                              "fixed": rewards(lists_of(lambda sl, w=w, m=ref: m.lists(sl, w)), w)}
    return out


def stacked(per_seed: list[dict], get) -> dict[str, np.ndarray]:
    return {s: np.stack([get(x)[s] for x in per_seed]) for s in get(per_seed[0])}


def summarise(per_seed: list[dict], es, base, args) -> dict[str, Any]:
    n_boot = args.n_boot
    better = stacked(per_seed, lambda x: x["better"])
    half = {s: np.full_like(v, 0.5) for s, v in better.items()}
    out: dict[str, Any] = {"better_minus_half": paired_bootstrap(better, half, n_boot)}
    out["ndcg_delta"] = {n: paired_bootstrap(stacked(per_seed, lambda x, n=n: x["ndcg"][n]),
                                             stacked(per_seed, lambda x: x["ndcg"]["retrieval"]), n_boot)
                         for n in per_seed[0]["ndcg"] if n != "retrieval"}
    out["per_w_delta"] = {n: paired_bootstrap(stacked(per_seed, lambda x, n=n: x["per_w"][n]["hyper"]),
                                              stacked(per_seed, lambda x, n=n: x["per_w"][n]["fixed"]), n_boot)
                          for n in per_seed[0]["per_w"]}
    out["control"] = {g: {"spearman": [x["control"][g]["spearman"] for x in per_seed],
                          "utility": np.mean([x["control"][g]["utility"] for x in per_seed], axis=0).tolist()}
                      for g in WEIGHTED}
    mean_pts = lambda key: [{k: float(np.mean([x["pareto"][key][i][k] for x in per_seed])) for k in  # noqa: E731
                            per_seed[0]["pareto"][key][i]} for i in range(len(per_seed[0]["pareto"][key]))]
    gen, rules = mean_pts("generator"), mean_pts("rules")
    out["pareto"] = {"generator": gen, "rules": rules,
                     "dominance": dominance([(p["diversity"], p["click"]) for p in gen],
                                            [(p["diversity"], p["click"]) for p in rules]),
                     "front": front([(p["diversity"], p["click"]) for p in gen])}
    out["utilities"] = {n: {g: float(np.mean([x["utilities"][n][g] for x in per_seed])) for g in GOALS}
                        for n in per_seed[0]["utilities"]}
    return out


def report(summary: dict, per_seed: list[dict], base, args, seconds: float) -> str:
    r = base.rerank
    scen = [s for s in summary["better_minus_half"] if s != "macro"]
    b = summary["better_minus_half"]
    lines = [f"Seeds {args.seeds}; overrides {args.set or 'none'}; {seconds:.0f}s in all. Requests: the protocol's "
             f"evaluation pairs of the test days, each the top {r.candidates} of `sass` in retrieval order (the "
             f"user's training clicks removed); lists of {r.length}; hard rule: at most {r.max_run} adjacent items "
             f"of one tag; default weights {r.weights.model_dump()}. CIs: paired bootstrap 95%, seeds pooled; bold = "
             "the interval excludes 0, otherwise no measurable difference.", "",
             "**Utilities** (the frozen evaluator; mean over requests and seeds):", "",
             "| list | " + " | ".join(GOALS) + " |", "|---" + "|---:" * len(GOALS) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{u[g]:.4f}" for g in GOALS) + " |" for n, u in summary["utilities"].items()]
    lines += ["", "**Better share** at the default weights: the requests whose generated list the evaluator scores "
              "above the retrieval-order list (target >= 55%, CI above 50%); Δ = share − 50%:", "",
              "| " + " | ".join(scen) + " | macro |", "|" + "---:|" * (len(scen) + 1),
              "| " + " | ".join(f"{0.5 + b[s]['diff']:.1%} ({fmt_ci(b[s])})" for s in [*scen, "macro"]) + " |"]
    lines += ["", "**Click NDCG@10 on the test days' clicks**, Δ against the retrieval-order top "
              f"{r.length} (target at click-heavy weights: not below):", "",
              "| list | " + " | ".join(scen) + " | macro |", "|---" + "|---:" * (len(scen) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(fmt_ci(c[s]) for s in [*scen, "macro"]) + " |"
              for n, c in summary["ndcg_delta"].items()]
    means = {n: float(np.mean([x["ndcg_mean"][n] for x in per_seed])) for n in per_seed[0]["ndcg_mean"]}
    lines += ["", "Macro NDCG@10: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items())]
    lines += ["", "**Controllability**: Spearman(weight, realised utility) over 11 weights in [0, 1], the others at "
              "the defaults (target >= 0.8 for click, diversity, cold_start), per seed; and the mean curve:", "",
              "| goal | rho per seed | utility at w = 0, 0.5, 1 |", "|---|---|---|"]
    for g, c in summary["control"].items():
        u = c["utility"]
        lines.append(f"| {g}{'' if g in CONTROLLED else ' (reported)'} | "
                     + ", ".join(f"{x:.2f}" for x in c["spearman"]) + f" | {u[0]:.4f}, {u[5]:.4f}, {u[10]:.4f} |")
    lines += ["", "**Click vs diversity** (evaluator's click utility), the generator's sweep against the rule "
              "pipeline (per_tag / cold_slots); a rule point is dominated when the generator's front reaches at least "
              "its click at its diversity:", "",
              "| rule per_tag / cold_slots | diversity | click | cold-start | NDCG@10 | generator click there | "
              "dominated |", "|---|---:|---:|---:|---:|---:|---|"]
    for pt, d in zip(summary["pareto"]["rules"], summary["pareto"]["dominance"], strict=True):
        g = "beyond the front" if d["generator_click"] is None else f"{d['generator_click']:.4f}"
        lines.append(f"| {int(pt['per_tag'])} / {int(pt['cold_slots'])} | {pt['diversity']:.3f} | {pt['click']:.4f} | "
                     f"{pt['cold_start']:.3f} | {pt['ndcg']:.4f} | {g} | {'yes' if d['dominated'] else '**no**'} |")
    lines += ["", "Generator sweep (diversity weight: diversity, click): " + "; ".join(
        f"{p['diversity_weight']:.1f}: {p['diversity']:.3f}, {p['click']:.4f}" for p in summary["pareto"]["generator"])]
    lines += ["", "**Hypernetwork vs one generator per fixed w** (evaluator reward at that w; Δ = hypernetwork − "
              "per-w; target: within the noise):", "", "| w | weights | Δ macro | training seconds (per-w) |",
              "|---|---|---:|---:|"]
    for n, c in summary["per_w_delta"].items():
        lines.append(f"| {n} | {per_seed[0]['per_w'][n]['weights']} | {fmt_ci(c['macro'])} | "
                     f"{np.mean([x['per_w'][n]['seconds'] for x in per_seed]):.0f} |")
    secs = {k: np.mean([x["seconds"][k] for x in per_seed]) for k in per_seed[0]["seconds"]}
    lines += ["", f"Training per seed: evaluator {secs['evaluator']:.0f}s, generator {secs['generator']:.0f}s."]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    gen = summary["pareto"]["generator"]
    ax.plot([p["diversity"] for p in gen], [p["click"] for p in gen], "o-", label="generator (diversity weight swept)")
    rules = summary["pareto"]["rules"]
    ax.scatter([p["diversity"] for p in rules], [p["click"] for p in rules], marker="s", color="tab:red",
               label="rule pipeline (per_tag x cold_slots)")
    for p in rules:
        ax.annotate(f"{int(p['per_tag'])}/{int(p['cold_slots'])}", (p["diversity"], p["click"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    u = summary["utilities"]["retrieval"]
    ax.scatter([u["diversity"]], [u["click"]], marker="x", color="black", label="retrieval order")
    ax.set_xlabel("tag diversity (distinct tags / slots)")
    ax.set_ylabel("click utility (evaluator, discounted)")
    ax.set_title("Click vs diversity, mean over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def strip(x: dict) -> dict:
    """The per-seed record without per-request arrays (the .json keeps the summaries)."""
    out = {k: v for k, v in x.items() if k not in ("better", "ndcg")}
    out["per_w"] = {n: {k: v for k, v in d.items() if k in ("weights", "seconds")} for n, d in x["per_w"].items()}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
