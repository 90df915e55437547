"""Does the streamed training input (train.input: stream, train/stream.py) train models as good as the in-memory one?

    python bench/stream_quality.py                     # the synthetic default (params.yaml as shipped)
    python bench/stream_quality.py --source kuairand   # the KuaiRand-Pure dev split (docs/benchmark.md)

The daily rows, the candidate ``sass`` and the challenger (``publish.challenger``), are trained twice at the same
seed through the product's code path (sass_retrieval.experiment.run_rows): once with every positive in the feature
bank's memory, once streamed with a shuffle buffer from the row groups of the training shards (data.shards: every
scenario's positives in one seeded random order, written as the shards stage writes them; the bank then holds the
held-out validation days only). The two inputs see the same rows per epoch in a different order, so their models differ
by what a reshuffle changes; the question is whether the stream costs quality. Each row's macro NDCG@50 is
reported with the paired bootstrap 95% CI of stream − memory on the same evaluation pairs
(evaluate.significance), with the bank's bytes of positives and the training seconds of each input.

The paired bootstrap resamples evaluation pairs, not training runs: two trainings that differ only in the order
of their batches can differ by more than its interval. ``--control`` measures that: the stream once more over
shards written with another seed (train.seed + 1; the same run seed, so the same initial weights), and reports
Δ reshuffled stream − stream, the size of a reshuffle alone.

Writes bench/results/stream_quality.{md,json}.
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

from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.evaluate.significance import compare_rows  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    evaluation_slices,
    fmt_ci,
    prepare_window,
    run_rows,
    stack_seeds,
    strip_pairs,
    window_bank,
    write_results,
)

INPUTS = ("memory", "stream")
CONTROL = "stream_reshuffled"   # --control: the stream over shards of another seed
KUAIRAND_DEV = (20220505, 8, 3)   # end date, train days, test days: the dev split of docs/benchmark.md


def positive_bytes(bank) -> int:
    """The bank's memory held by positives (``pos_*``/``mt_*``; pos_* are views of mt_* but for a serving bank)."""
    total = 0
    for a in bank.per.values():
        arrays = [getattr(a, f"mt_{k}") for k in ("user", "item", "day", "seq", "stats", "labels")]
        total += sum(x.nbytes for x in arrays)
    return total


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "stream_quality")
    source_option(p)
    p.set_defaults(source="synthetic")   # the product's default size; KuaiRand on demand
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="run seeds (each also orders its shards, as train.seed does in the pipeline); the CIs pool them")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--end-date", type=int, default=None, help="default: the source's (synthetic: params' window)")
    p.add_argument("--train-days", type=int, default=None)
    p.add_argument("--test-days", type=int, default=None)
    p.add_argument("--control", action="store_true", help="also train the stream over shards of another seed (a "
                   "reshuffle alone) and report its Δ against the stream")
    params_options(p, "train.shuffle_buffer=16384")
    args = p.parse_args(argv)
    base = bench_params(args)
    args.provenance = bench_provenance(__file__, argv)   # at start (the code measured), after the thread count
    if args.source == "synthetic":
        from sass_retrieval.data.synthetic import SyntheticConfig

        default = (SyntheticConfig.from_params(base).dates[-1], base.window.train_days, base.window.test_days)
    else:
        default = KUAIRAND_DEV
    end, train_days, test_days = (given if given is not None else d for given, d in
                                  zip((args.end_date, args.train_days, args.test_days), default, strict=True))
    window = make_window(end, train_days, test_days)
    work = Path(args.work)
    prep = prepare_window(source_store(args, base, work), work / "features", window, declared_scenarios(args, base),
                          base.scenarios.min_scenario_rows, base.features.seq_len)
    slices = evaluation_slices(prep)
    rows = list(dict.fromkeys(["sass", base.publish.challenger]))
    modes = [*INPUTS, *([CONTROL] if args.control else [])]
    per_seed: dict[str, list[dict]] = {mode: [] for mode in modes}
    banks: dict[str, int] = {}
    t0 = time.perf_counter()
    for mode in modes:
        for seed in args.seeds:
            # the pipeline's train.seed orders the shards; the control reorders them (seed + 1) at the same run seed
            over = {"train.input": "stream" if mode == CONTROL else mode,
                    "train.seed": seed + 1 if mode == CONTROL else seed}
            params = base.override(over, source=f"{mode}, seed {seed}")
            bank = window_bank(prep, params)   # stream: the window's shards written first (of params' train.seed)
            banks[mode] = positive_bytes(bank)
            res = run_rows(prep, params, rows, seed, work / mode, slices=slices, bank=bank)
            per_seed[mode].append(res)
            print(f"{mode} seed {seed}: " + ", ".join(f"{r} {res[r]['macro']['ndcg@50']:.4f}" for r in rows), flush=True)
    results = {mode: seed_means(per_seed[mode], rows) for mode in modes}
    cis, control = {}, {}
    for r in rows:
        stacks = {mode: stack_seeds([{r: res[r]} for res in per_seed[mode]])[r] for mode in modes}
        cis[r] = compare_rows({m: stacks[m] for m in INPUTS}, "stream", "ndcg@50",
                              n_boot=args.n_boot)["memory"]   # stream − memory
        if args.control:
            control[r] = compare_rows({m: stacks[m] for m in ("stream", CONTROL)}, CONTROL, "ndcg@50",
                                      n_boot=args.n_boot)["stream"]   # reshuffled stream − stream
    body = report(results, cis, banks, rows, args, time.perf_counter() - t0, control)
    print(body)
    source = "KuaiRand-Pure" if args.source == "kuairand" else "the synthetic default"
    write_results(Path(args.out), f"Streamed vs in-memory training input on {source}", args.provenance, body,
                  {"window": window.__dict__, "seeds": args.seeds, "rows": rows,
                   "shuffle_buffer": base.train.shuffle_buffer, "batch_size": base.finetune.batch_size,
                   "positive_bytes": banks, "results": {m: [strip_pairs(x) for x in per_seed[m]] for m in modes},
                   "significance": cis, "reshuffle_control": control, "overrides": args.set})
    return 0


def seed_means(per_seed: list[dict], rows: list[str]) -> dict[str, dict]:
    """Each row's macro NDCG@50 and training seconds, averaged over the seeds: what the report's table shows."""
    return {r: {"macro": {"ndcg@50": sum(x[r]["macro"]["ndcg@50"] for x in per_seed) / len(per_seed)},
                "info": {"train_seconds": sum(x[r]["info"].get("train_seconds", 0) for x in per_seed) / len(per_seed)}}
            for r in rows}


def report(results: dict, cis: dict, banks: dict, rows: list[str], args, seconds: float,
           control: dict | None = None) -> str:
    lines = ["| row | memory | stream | Δ stream − memory [95% CI] | train s (memory) | train s (stream) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        m, s = (results[mode][r] for mode in INPUTS)
        lines.append(f"| {r} | {m['macro']['ndcg@50']:.4f} | {s['macro']['ndcg@50']:.4f} | "
                     f"{fmt_ci(cis[r]['macro'])} | {m['info'].get('train_seconds', 0):.0f} | "
                     f"{s['info'].get('train_seconds', 0):.0f} |")
    scen = [k for k in cis[rows[0]] if k != "macro"]
    per = ["", "Per scenario, Δ NDCG@50 stream − memory [95% CI]:", "",
           "| row | " + " | ".join(scen) + " |", "|---" + "|---:" * len(scen) + "|"]
    per += [f"| {r} | " + " | ".join(fmt_ci(cis[r][s]) for s in scen) + " |" for r in rows]
    if control:
        per += ["", "Reshuffle control (`--control`): the stream over shards of train.seed + 1, the same run seed "
                "(initial weights); Δ reshuffled stream − stream, macro NDCG@50 [95% CI]: "
                + "; ".join(f"{r} {results[CONTROL][r]['macro']['ndcg@50']:.4f}, Δ {fmt_ci(control[r]['macro'])}"
                            for r in rows) + ". A reshuffle alone moves a row by this much."]
    return (f"Macro NDCG@50 of the daily rows trained with each training input, mean over seeds {args.seeds} (the CIs "
            f"pool their pairs); overrides "
            f"{args.set or 'none'}; {seconds:.0f}s in all. Δ = stream − memory on the same evaluation pairs, paired "
            "bootstrap; bold = the interval excludes 0, otherwise no measurable difference. The bank's positives: "
            + ", ".join(f"{mode} {banks[mode] / 2**20:.1f} MiB" for mode in INPUTS)
            + " (stream: the held-out validation days only).\n\n" + "\n".join(lines + per) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
