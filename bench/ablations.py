"""Ablations of `sass` on KuaiRand-Pure (the dev split of docs/benchmark.md by default, or any window:
--end-date, --train-days, --test-days; ``--source synthetic``: the params' generator): which parts of the
design earn their place.

    python bench/ablations.py --seeds 0
    python bench/ablations.py --seeds 0 1 2 --out bench/results/ablations_temperature \
        --variants default,temperature=0.02,temperature=0.1,pretrain_temperature=0.05,pretrain_temperature=0.2

Each variant changes knobs of params.yaml from the default (``Params.override``) and trains the full `sass`
row (pretraining + fine-tuning) through the product's code path. Each variant is compared with the default on the same
evaluation pairs: Δ = variant − default with a paired bootstrap 95% CI pooled over seeds (per scenario and
macro, all pairs and the scenario-cold slice). Writes bench/results/ablations.{md,json}.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

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
sys.path.insert(0, str(ROOT / "bench"))


from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.evaluate.significance import paired_bootstrap  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    aggregate,
    fmt_ci,
    prepare_window,
    run_rows,
    stack_seeds,
    strip_pairs,
    write_results,
)

VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "gate=sigmoid": {"model.gate": "sigmoid"},
    "gate=none": {"model.gate": "none"},
    "bias_net=off": {"model.bias_net": False},
    "layers=1": {"model.layers": 1},
    "layers=2": {"model.layers": 2},
    "layers=4": {"model.layers": 4},
    "aux_weight=0": {"finetune.aux_weight": 0.0},
    "pretrain=off": {"pretrain.enabled": False},
    "alpha=0": {"finetune.alpha": 0.0},
    "alpha=0.5": {"finetune.alpha": 0.5},
    "alpha=1,logq=off": {"finetune.alpha": 1.0, "finetune.logq": False},
    "logq=off": {"finetune.logq": False},
    "temperature=0.01": {"finetune.temperature": 0.01},
    "temperature=0.02": {"finetune.temperature": 0.02},
    "temperature=0.1": {"finetune.temperature": 0.1},
    "pretrain_temperature=0.05": {"pretrain.temperature": 0.05},
    "pretrain_temperature=0.2": {"pretrain.temperature": 0.2},
    "gate_bias=2": {"model.gate_bias": 2.0},
    "gate_bias=-2": {"model.gate_bias": -2.0},
    "scenario_layer=full": {"model.scenario_layer": "full"},
    "scenario_layer=star": {"model.scenario_layer": "star"},
    "scenario_layer=lowrank": {"model.scenario_layer": "lowrank"},
    "residual=on": {"model.residual": True},
    "residual=off": {"model.residual": False},
    "star+residual": {"model.scenario_layer": "star", "model.residual": True},
    "lowrank+residual": {"model.scenario_layer": "lowrank", "model.residual": True},
    "min_epochs=1": {"finetune.min_epochs": 1},
    "min_epochs=4": {"finetune.min_epochs": 4},
    "lr=0.001": {"finetune.lr": 0.001},
    "id_dropout=1": {"pretrain.id_dropout": 1.0},
    "pretrain_epochs=1": {"pretrain.epochs": 1},
    "aux_weight=1": {"finetune.aux_weight": 1.0},
    "patience=3": {"finetune.patience": 3},
    "min_epochs=6": {"finetune.min_epochs": 6},
    "holdout_days=2": {"finetune.holdout_days": 2},
    "scenario_l2=0.001": {"finetune.scenario_l2": 0.001},
    "scenario_l2=0.01": {"finetune.scenario_l2": 0.01},
    "scenario_l2=0.1": {"finetune.scenario_l2": 0.1},
    "in_batch_negatives=on": {"finetune.in_batch_negatives": True},
    "emb_lr=0.002": {"finetune.emb_lr": 0.002},
    "emb_lr=0.005": {"finetune.emb_lr": 0.005},
    "scenario_norm=on": {"model.scenario_norm": True},
    "emb_lr=0.002+in_batch": {"finetune.emb_lr": 0.002, "finetune.in_batch_negatives": True},
    "emb_lr=0.002+scenario_norm": {"finetune.emb_lr": 0.002, "model.scenario_norm": True},
    "prior=off": {"finetune.prior_grid": []},
    "own_epoch_min_clicks=300": {"finetune.own_epoch_min_clicks": 300},
    "arch=star": {"model.arch": "star"},
    "arch=pepnet": {"model.arch": "pepnet"},
    "arch=dssm": {"model.arch": "dssm"},
}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "ablations")
    p.add_argument("--end-date", type=int, default=20220505)
    p.add_argument("--train-days", type=int, default=8)
    p.add_argument("--test-days", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    source_option(p)
    params_options(p, "finetune.epochs=4")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    base = bench_params(args)
    args.provenance = bench_provenance(__file__, argv)  # at start (the code measured), after the thread count
    window = make_window(args.end_date, args.train_days, args.test_days)
    work = Path(args.work)
    prep = prepare_window(source_store(args, base, work), work / "features", window, declared_scenarios(args, base),
                          base.scenarios.min_scenario_rows, base.features.seq_len)
    results: dict[str, dict] = {}
    stacks: dict[str, dict] = {}
    args.cis = {}
    t0 = time.perf_counter()
    for name in args.variants.split(","):
        params = base.override(VARIANTS[name], source=f"variant {name}")
        per_seed = [{name: run_rows(prep, params, ["sass"], seed, work / name)["sass"]} for seed in args.seeds]
        stacks[name] = {sl: stack_seeds(per_seed, sl)[name] for sl in ("all", "scenario_cold")}
        results[name] = aggregate([strip_pairs(r) for r in per_seed])[name]
        if "default" in stacks and name != "default":
            args.cis[name] = {sl: paired_bootstrap({s: v["ndcg@50"] for s, v in stacks[name][sl].items()},
                                                   {s: v["ndcg@50"] for s, v in stacks["default"][sl].items()})
                              for sl in ("all", "scenario_cold")}
        print(f"{name}: macro NDCG@50 {results[name]['macro']['ndcg@50']['mean']:.4f}", flush=True)
        _write(results, args, window, t0)  # after every variant: a crash or a kill keeps what was measured
    return 0


def _write(results: dict, args, window, t0: float) -> None:
    scen = list(next(iter(results.values()))["per_scenario"])
    default = results.get("default", {}).get("macro", {}).get("ndcg@50", {}).get("mean")
    lines = ["| variant | " + " | ".join(scen) + " | macro NDCG@50 | Δ vs default [95% CI] | Δ scenario-cold [95% CI] |",
             "|---" + "|---:" * (len(scen) + 3) + "|"]
    for name, r in results.items():
        cells = [f"{r['per_scenario'][s]['ndcg@50']['mean']:.4f}" for s in scen]
        m = r["macro"]["ndcg@50"]["mean"]
        ci = args.cis.get(name)
        delta = fmt_ci(ci["all"]["macro"]) if ci else (f"{m - default:+.4f}" if default is not None else "")
        cold = fmt_ci(ci["scenario_cold"]["macro"]) if ci else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m:.4f} | {delta} | {cold} |")
    body = (f"NDCG@50 of `sass` per scenario (mean over seeds); seeds {args.seeds}; total {time.perf_counter() - t0:.0f}s. "
            "One knob changed per row, everything else as in params.yaml. Δ = variant − default on the same "
            "pairs, paired bootstrap pooled over seeds; bold = the interval excludes 0, otherwise no measurable "
            "difference.\n\n" + "\n".join(lines) + "\n")
    print(body)
    dev = (args.end_date, args.train_days, args.test_days) == (20220505, 8, 3)
    where = "dev split" if dev else f"test {args.test_days}d to {args.end_date}, train {args.train_days}d"
    source = "KuaiRand-Pure" if args.source == "kuairand" else "the synthetic generator"
    write_results(Path(args.out), f"Ablations of sass on {source} ({where})", args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds, "variants": VARIANTS, "results": results,
                   "significance": args.cis})


if __name__ == "__main__":
    raise SystemExit(main())
