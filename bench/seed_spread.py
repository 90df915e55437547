"""Seed spread of the quick start: the synthetic default run at several ``train.seed`` values.

    python bench/seed_spread.py                # seeds 0 1 2, a few minutes each on 2 cores
    python bench/seed_spread.py --write-expected tests/expected/quickstart.yaml

Each seed is the quick start as a user runs it and as the expected-values check runs it (bench/quickstart.py:
`dvc repro` in a fresh copy of the project, params.yaml as shipped but for ``train.seed``). Per row: mean, min,
max and spread (max − min) over the seeds of macro NDCG@50 and HitRate@50, the two numbers the check compares.
``--write-expected`` turns them into the expected-values file: the mean, with the spread as tolerance.

Writes bench/results/seed_spread.{md,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml
from bench_cli import bench_parser, bench_provenance, params_options, parse_sets
from quickstart import LABELS, METRICS, expected_values, headline, run_default, spread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sass_retrieval.experiment import write_results  # noqa: E402

TITLE = "Seed spread of the quick start (synthetic default, dvc repro)"


def table(stats: dict, seeds: list[int], per_seed: list[dict]) -> str:
    """Per row and metric: every seed's value, mean, min, max and spread."""
    lines = ["| row | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min | max | spread |",
             "|---|---" + "|---:" * (len(seeds) + 4) + "|"]
    for row, by_metric in stats.items():
        for m in METRICS:
            s = by_metric[m]
            cells = [f"{h[row][m]:.4f}" for h in per_seed]
            lines.append(f"| {row} | macro {LABELS[m]} | " + " | ".join(cells)
                         + f" | {s['mean']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {s['spread']:.4f} |")
    return "\n".join(lines)


def write_expected(path: Path, stats: dict, prov: dict) -> None:
    """The expected-values file: row -> metric -> expected (mean over seeds) and tolerance (the spread)."""
    head = (f"# The quick start's expected values: `make run` -> metrics/metrics.json, rows.<row>.macro.<metric>.\n"
            f"# Written by `{prov['command']}` (commit {prov['commit']}): expected = the mean over seeds,\n"
            f"# tolerance = the spread (max - min) over them (bench/results/seed_spread.md).\n"
            f"# Checked by scripts/check_expected.py and tests/expected/test_check_expected.py.\n")
    body = {"source": "metrics/metrics.json", "seeds": prov["seeds"], "rows": expected_values(stats)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + yaml.safe_dump(body, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "seed_spread", kuairand=False)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    params_options(p, "finetune.epochs=2")
    p.add_argument("--write-expected", type=Path, default=None, metavar="YAML",
                   help="also write the expected-values file (tests/expected/quickstart.yaml)")
    args = p.parse_args(argv)
    from sass_retrieval.config import load_params

    sets = dict(parse_sets(args.set))
    load_params(args.params).override(sets, source="--set")   # a bad key fails here, not after a run
    prov = bench_provenance(__file__, argv)
    work = Path(args.work)
    per_seed, seconds = [], []
    for seed in args.seeds:
        t = time.perf_counter()
        project = work / f"seed{seed}"
        metrics = run_default(project, Path(args.params), {**sets, "train.seed": seed}, log=work / f"seed{seed}.log")
        seconds.append(time.perf_counter() - t)
        per_seed.append(headline(metrics))
        print(f"seed {seed}: " + ", ".join(f"{r} {v['ndcg@50']:.4f}" for r, v in per_seed[-1].items())
              + f" ({seconds[-1]:.0f}s)", flush=True)
    stats = spread(per_seed)
    body = (f"Seeds {args.seeds} (`train.seed`); overrides {args.set or 'none'}; every seed a fresh copy of the "
            f"project and `dvc repro` (bench/quickstart.py), {sum(seconds) / len(seconds):.0f} s per run on average. "
            "Macro over the reported scenarios, as metrics/metrics.json gives it.\n\n"
            + table(stats, args.seeds, per_seed) + "\n")
    print(body)
    write_results(Path(args.out), TITLE, prov, body,
                  {"seeds": args.seeds, "overrides": args.set, "metrics": list(METRICS), "rows": stats,
                   "per_seed": per_seed, "seconds": seconds})
    if args.write_expected:
        write_expected(args.write_expected, stats, {**prov, "seeds": args.seeds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
