"""The ctnet row's training cost against dssm_single's, measured as the issue states it (first day, from scratch).

    python bench/ctnet_cost.py --repeats 3

One KuaiRand window (test day ``--day``, ``--train-days`` before it), one seed. ``dssm_single`` and ``ctnet``
are trained alternately ``--repeats`` times each in this one process, through the product's code path
(train.recipes.train_row), and timed with their own wall clock; the table gives every pair, the medians and
the ratio of the medians, and a second table splits the last repeat by scenario (each model's wall seconds,
optimiser steps and held-out scoring seconds, from its training report), to show where the difference is made.
Alternating them puts a slow spell of a shared machine on both rows, which a ratio of
two separate benchmark runs cannot (bench/ctnet.py's one-run ratio of the same code has ranged 1.04-1.25x).
Training is deterministic for a seed, so the repeats differ only in the machine's timing.

``--source synthetic``: the params' generator (data.synthetic) instead of KuaiRand-Pure.

Writes bench/results/ctnet_cost.{md,json}.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import numpy as np  # noqa: E402
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
from sass_retrieval.experiment import prepare_window, window_bank, write_results  # noqa: E402

ROWS = ("dssm_single", "ctnet")


def cost_table(seconds: dict[str, list[float]]) -> tuple[list[str], dict[str, float]]:
    """Markdown lines (every pair, the medians, the ratio of the medians) and the summary numbers."""
    base, row = seconds["dssm_single"], seconds["ctnet"]
    summary = {"dssm_single_median": float(np.median(base)), "ctnet_median": float(np.median(row))}
    summary["ratio_of_medians"] = summary["ctnet_median"] / summary["dssm_single_median"]
    pairs = [r / b for b, r in zip(base, row, strict=True)]
    out = ["| repeat | dssm_single (s) | ctnet (s) | ctnet / dssm_single |", "|---:|---:|---:|---:|"]
    out += [f"| {i + 1} | {b:.1f} | {r:.1f} | {q:.2f}× |" for i, (b, r, q) in enumerate(zip(base, row, pairs, strict=True))]
    out.append(f"| median | {summary['dssm_single_median']:.1f} | {summary['ctnet_median']:.1f} | "
               f"**{summary['ratio_of_medians']:.2f}×** (pairs {min(pairs):.2f}-{max(pairs):.2f}×) |")
    return out, summary


COST_KEYS = ("seconds", "steps", "validation_seconds")   # what a finetune report says its model cost


def by_scenario(reports: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """row -> scenario -> {seconds, steps, validation_seconds} from train_row's reports (dssm_single: one per
    scenario; ctnet: the source under its scenario, then the targets)."""
    def numbers(rep: dict) -> dict[str, float]:
        return {k: float(rep.get(k, 0.0)) for k in COST_KEYS}

    out = {"dssm_single": {s: numbers(r) for s, r in reports["dssm_single"].items()}}
    ct = reports["ctnet"]
    out["ctnet"] = {ct["source_scenario"]: numbers(ct["source"]), **{s: numbers(ct[s]) for s in ct["targets"]}}
    return out


def breakdown_table(split: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Per scenario: seconds (steps, held-out scoring seconds) of each row's model, and the ratio of seconds."""
    base, row = split["dssm_single"], split["ctnet"]
    out = ["| scenario | dssm_single: s (steps, scoring s) | ctnet: s (steps, scoring s) | ctnet / dssm_single |",
           "|---|---:|---:|---:|"]

    def cell(x: dict[str, float]) -> str:
        return f"{x['seconds']:.1f} ({x['steps']:.0f}, {x['validation_seconds']:.1f})"

    for s in base:
        out.append(f"| {s} | {cell(base[s])} | {cell(row[s])} | {row[s]['seconds'] / base[s]['seconds']:.2f}× |")
    total = {r: {k: sum(v[k] for v in split[r].values()) for k in COST_KEYS} for r in split}
    out.append(f"| all models | {cell(total['dssm_single'])} | {cell(total['ctnet'])} | "
               f"{total['ctnet']['seconds'] / total['dssm_single']['seconds']:.2f}× |")
    return out


def main(argv: list[str] | None = None) -> int:
    from sass_retrieval.train.recipes import train_row

    p = bench_parser(__doc__, "ctnet_cost")
    p.add_argument("--day", type=int, default=20220503, help="the window's test day")
    p.add_argument("--train-days", type=int, default=8)
    source_option(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    params_options(p, "ctnet.source_view=largest")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    params = bench_params(args, ("sass_retrieval.train.ctnet",))
    prov = bench_provenance(__file__, argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    prep = prepare_window(source_store(args, params, work), work / "features", make_window(args.day, args.train_days, 1),
                          declared_scenarios(args, params), params.scenarios.min_scenario_rows, params.features.seq_len)
    bank = window_bank(prep, params)
    seconds: dict[str, list[float]] = {r: [] for r in ROWS}
    reports: dict[str, dict] = {}
    for i in range(args.repeats):
        for row in ROWS:
            t = time.perf_counter()
            _, reports[row] = train_row(row, bank, params, args.seed, work / "rows" / f"{row}-{i}", progress=False)
            seconds[row].append(time.perf_counter() - t)
            print(f"repeat {i + 1}/{args.repeats} {row}: {seconds[row][-1]:.1f}s", flush=True)
    lines, summary = cost_table(seconds)
    split = by_scenario(reports)
    body = (f"Test day {args.day}, {args.train_days} training days, seed {args.seed}, {args.repeats} alternating "
            f"repeats; overrides {args.set or 'none'}.\n\n" + "\n".join(lines) + "\n\n"
            "Where the time goes (the last repeat; the source stands under its scenario; what a row spends outside "
            "its models' training is the difference to the first table):\n\n" + "\n".join(breakdown_table(split)) + "\n")
    write_results(Path(args.out), "ctnet's first-day training cost against dssm_single's", prov, body,
                  {"seconds": seconds, **summary, "by_scenario": split, "overrides": args.set})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
