"""Ablations of `sass` on KuaiRand-Pure (BENCHMARK.md dev split): which parts of the design earn their place.

    python bench/ablations.py --seeds 0
    python bench/ablations.py --seeds 0 1 2 --out bench/results/ablations_temperature \
        --variants default,temperature=0.02,temperature=0.1,pretrain_temperature=0.05,pretrain_temperature=0.2

Each variant changes one knob of params.yaml from the default and trains the full `sass` row (pretraining
+ fine-tuning) through the product's code path. Writes bench/results/ablations.{md,json}.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import torch  # noqa: E402
import yaml
from bench_cli import bench_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


from sass_retrieval.config import make_window, set_dotted  # noqa: E402
from sass_retrieval.experiment import aggregate, prepare_kuairand, provenance, run_rows, write_results  # noqa: E402

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
    "temperature=0.01": {"finetune.temperature": 0.01},
    "temperature=0.02": {"finetune.temperature": 0.02},
    "temperature=0.1": {"finetune.temperature": 0.1},
    "pretrain_temperature=0.05": {"pretrain.temperature": 0.05},
    "pretrain_temperature=0.2": {"pretrain.temperature": 0.2},
    "gate_bias=2": {"model.gate_bias": 2.0},
    "gate_bias=-2": {"model.gate_bias": -2.0},
}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "ablations")
    p.add_argument("--end-date", type=int, default=20220505)
    p.add_argument("--train-days", type=int, default=8)
    p.add_argument("--test-days", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = p.parse_args(argv)
    args.provenance = provenance(sys.argv)  # at start: the code that produced the numbers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("faiss.loader", "sass_retrieval.train.loop", "sass_retrieval.train.finetune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = yaml.safe_load(Path(args.params).read_text())
    torch.set_num_threads(int(base.get("train", {}).get("threads", 2)))
    window = make_window(args.end_date, args.train_days, args.test_days)
    prep = prepare_kuairand(Path(args.data_dir), Path(args.work), window, ["1", "0", "4", "6", "2", "other"],
                            int(base["scenarios"]["min_scenario_rows"]), int(base["features"]["seq_len"]))
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name in args.variants.split(","):
        params = copy.deepcopy(base)
        for k, v in VARIANTS[name].items():
            set_dotted(params, k, v)
        per_seed = [{name: run_rows(prep, params, ["sass"], seed, Path(args.work) / name)["sass"]} for seed in args.seeds]
        results[name] = aggregate(per_seed)[name]
        print(f"{name}: macro NDCG@50 {results[name]['macro']['ndcg@50']['mean']:.4f}", flush=True)
        _write(results, args, window, t0)  # after every variant: a crash or a kill keeps what was measured
    return 0


def _write(results: dict, args, window, t0: float) -> None:
    scen = list(next(iter(results.values()))["per_scenario"])
    default = results.get("default", {}).get("macro", {}).get("ndcg@50", {}).get("mean")
    lines = ["| variant | " + " | ".join(scen) + " | macro NDCG@50 | Δ vs default |", "|---" + "|---:" * (len(scen) + 2) + "|"]
    for name, r in results.items():
        cells = [f"{r['per_scenario'][s]['ndcg@50']['mean']:.4f}" for s in scen]
        m = r["macro"]["ndcg@50"]["mean"]
        delta = f"{m - default:+.4f}" if default is not None else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m:.4f} | {delta} |")
    body = (f"NDCG@50 of `sass` per scenario; seeds {args.seeds}; total {time.perf_counter() - t0:.0f}s. "
            "One knob changed per row, everything else as in params.yaml.\n\n" + "\n".join(lines) + "\n")
    print(body)
    write_results(Path(args.out), "Ablations of sass on KuaiRand-Pure (dev split)", args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds, "variants": VARIANTS, "results": results})


if __name__ == "__main__":
    raise SystemExit(main())
