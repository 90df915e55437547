"""Quality benchmark: the protocol of docs/benchmark.md on KuaiRand-Pure, rolling-origin, with paired bootstrap CIs and slices.

    python bench/quality.py --seeds 0 1 2

Windows (``END:TEST_DAYS:TRAIN_DAYS``, default below): the dev split of docs/benchmark.md (train 04-25..05-02, test
05-03..05-05), then three successive 1-day test windows (05-03, 05-04, 05-05) trained on every earlier day
(8, 9, 10 days: the trend with more data), and 05-05 trained on the 4 days before it (a second
training-window length). Every row is trained and scored per window and seed through the
product's own code path (sass_retrieval.experiment: importer, split, trainer, protocol).

Significance: per-pair metrics, pooled over seeds, paired bootstrap 95% CIs of ``sass`` minus every other
row (evaluate.significance), per scenario and macro, on every slice (evaluate.slices: all pairs,
scenario-cold users, tail ground truth). "Rolling" pools the three 1-day windows of one training length
as strata of one comparison (its macro is the mean over windows and scenarios).

``--source synthetic``: the same benchmark on the embedded default (params.yaml's data.synthetic, the world
`make run` trains on; default window: the one `make run` evaluates, params.yaml's window after the generator's
last day; scenarios: params.yaml's). `make run` trains one seed; this gives its comparisons over seeds.

Writes bench/results/quality.{md,json} and quality_ci.png (the CIs as a forest plot; per-pair arrays go to the
work folder). ``--replot bench/results/X.json`` redraws X_ci.png from a recorded run (and links it from X.md).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import numpy as np  # noqa: E402
from bench_cli import (  # noqa: E402
    KUAIRAND_TABS,
    bench_params,
    bench_parser,
    bench_provenance,
    declared_scenarios,
    params_options,
    source_option,
)
from forest import finish_forest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.evaluate.significance import compare_rows  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    aggregate,
    fmt_ci,
    format_agg,
    format_ci_table,
    prepare_kuairand,
    prepare_synthetic,
    run_rows,
    stack_seeds,
    strip_pairs,
    write_results,
)

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

DEFAULT_WINDOWS = "20220505:3:8,20220503:1:8,20220504:1:9,20220505:1:10,20220503:1:4,20220504:1:4,20220505:1:4"
SLICES = ("all", "scenario_cold", "tail_truth")
REFERENCE = "sass"


def source_defaults(args, params: Params) -> None:
    """Fill --windows, --scenarios and --title from the source when they were not given."""
    if args.source == "synthetic":
        from sass_retrieval.data.synthetic import SyntheticConfig

        last = SyntheticConfig.from_params(params).dates[-1]
        defaults = (f"{last}:{params.window.test_days}:{params.window.train_days}", ",".join(params.scenarios.names),
                    "Quality on the synthetic default (docs/benchmark.md protocol)")
    else:
        defaults = (DEFAULT_WINDOWS, KUAIRAND_TABS, "Quality on KuaiRand-Pure (docs/benchmark.md), rolling-origin")
    args.windows = args.windows or defaults[0]
    args.scenarios = args.scenarios or defaults[1]
    args.title = args.title or defaults[2]


PLOT_SUFFIX = "_ci.png"


def plot_cis(payload: dict, path: Path, title: str) -> str:
    """A forest plot of the recorded CIs: one panel per slice, one line per window (and pooled rolling
    comparison), one marker per row, the 95% interval as its bar and 0 as the vertical line. Returns the
    Markdown line that shows it ("" when there is nothing to plot)."""
    comps = payload.get("significance") or {}
    names = [n for n in comps if comps[n]]
    if not names:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = [sl for sl in SLICES if sl in comps[names[0]]]
    others = [r for r in payload["rows"] if r != REFERENCE]
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 0.55 * len(names) * max(1, len(others) / 2) + 2.0),
                             sharey=True, squeeze=False)
    step = 0.7 / max(1, len(others))
    for ax, sl in zip(axes[0], slices, strict=True):
        for k, row in enumerate(others):
            ys, diffs, lo, hi = [], [], [], []
            for i, n in enumerate(names):
                ci = comps[n][sl].get(row, {}).get("macro")
                if ci:
                    ys.append(i - 0.35 + step * (k + 0.5))
                    diffs.append(ci["diff"])
                    lo.append(ci["diff"] - ci["lo"])
                    hi.append(ci["hi"] - ci["diff"])
            ax.errorbar(diffs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=2, label=f"{REFERENCE} − {row}")
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(f"slice {sl}")
        ax.set_xlabel("Δ macro NDCG@50 (95% CI)")
        ax.grid(axis="x", alpha=0.3)
    finish_forest(fig, axes, names, len(others), f"{title}: right of 0 = {REFERENCE} better", path)
    return f"![Δ macro NDCG@50 = {REFERENCE} − row with 95% paired bootstrap CIs]({path.name})\n\n"


def replot(json_path: Path) -> None:
    """Redraw a recorded run's CI plot from its .json and link it from its .md (once)."""
    import json

    payload = json.loads(json_path.read_text())
    md = json_path.with_suffix(".md")
    text = md.read_text()
    title = text.splitlines()[0].lstrip("# ").strip()
    link = plot_cis(payload, json_path.with_name(json_path.stem + PLOT_SUFFIX), title)
    if link and link.strip() not in text:
        head, sep, rest = text.partition("\n## ")     # before the first section: where a fresh run puts it
        md.write_text(head.rstrip("\n") + "\n\n" + link + sep.lstrip("\n") + rest)


def window_label(end: int, test_days: int, train_days: int) -> str:
    if test_days > 1:
        return f"dev {test_days}d→{str(end)[4:]} (train {train_days}d)"
    return f"{str(end)[4:]} (train {train_days}d)"


def rolling_groups(results: dict[str, dict]) -> dict[str, list[str]]:
    """The 1-day test windows that form one rolling comparison: those sharing a training start (expanding: each
    trains on every day before its test day), and the rest by training length (a sliding window of n days).

    Why not "the earliest start is expanding": a run of sliding windows alone (e.g. three 4-day windows) has
    an earliest start too, and its first window would be split off from the other two."""
    daily = [lab for lab, w in results.items() if w["test_days"] == 1]
    starts = Counter(results[lab]["window"]["train_start"] for lab in daily)
    groups: dict[str, list[str]] = {}
    for lab in daily:
        w = results[lab]
        groups.setdefault("expanding" if starts[w["window"]["train_start"]] > 1 else f"{w['train_days']}d", []).append(lab)
    return groups


def pooled(stacks: list[dict], labels: list[str]) -> dict:
    """Several windows' per-pair stacks as one comparison: each (window, scenario) is a stratum."""
    out: dict = {}
    for row in stacks[0]:
        out[row] = {f"{lab}:{s}": v for st, lab in zip(stacks, labels, strict=True) for s, v in st[row].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "quality")
    source_option(p)
    p.add_argument("--windows", default=None,
                   help=f"END:TEST_DAYS:TRAIN_DAYS, comma-separated (KuaiRand: {DEFAULT_WINDOWS}; synthetic: params.yaml's window)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", default="popular,dssm_mixed,dssm_single,sass_base,sass")
    p.add_argument("--n-boot", type=int, default=2000)
    params_options(p, "finetune.alpha=0")
    p.add_argument("--title", default=None)
    p.add_argument("--replot", metavar="JSON", help="only redraw the CI plot of a recorded run (its .json) and stop")
    args = p.parse_args(argv)
    if args.replot:
        replot(Path(args.replot))
        return 0
    params = bench_params(args)
    source_defaults(args, params)
    # at start (the code that produced the numbers, not what is checked out later), after the thread count
    prov = bench_provenance(__file__, argv)
    work = Path(args.work)
    rows = [r for r in args.rows.split(",") if r]
    declared = declared_scenarios(args, params)
    windows = [tuple(int(x) for x in w.split(":")) for w in args.windows.split(",")]
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for end, test_days, train_days in windows:
        label = window_label(end, test_days, train_days)
        window = make_window(end, train_days, test_days)
        prepare_args = (work, window, declared, params.scenarios.min_scenario_rows, params.features.seq_len)
        prep = (prepare_synthetic(params, *prepare_args) if args.source == "synthetic"
                else prepare_kuairand(Path(args.data_dir), *prepare_args))
        per_seed = [run_rows(prep, params, rows, seed, work) for seed in args.seeds]
        results[label] = {"window": window.__dict__, "train_days": train_days, "test_days": test_days,
                          "per_seed": per_seed}
        # per-pair values (seeds x pairs) of every slice, row, scenario and metric: later comparisons need no rerun
        np.savez_compressed(work / f"per_pair_{end}_{test_days}d_{train_days}d.npz",
                            **{f"{sl}/{row}/{s}/{m}": v for sl in SLICES
                               for row, by_s in stack_seeds(per_seed, sl).items()
                               for s, by_m in by_s.items() for m, v in by_m.items()})
        print(f"{label}: " + ", ".join(f"{r} {np.mean([ps[r]['macro']['ndcg@50'] for ps in per_seed]):.4f}"
                                       for r in rows), flush=True)
        body, payload = report(results, rows, args)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)   # the plot is drawn before write_results makes it
        link = plot_cis(payload, out.with_name(out.name + PLOT_SUFFIX), args.title)
        body = f"Seeds {args.seeds}; overrides {args.set or 'none'}; {time.perf_counter() - t0:.0f}s so far.\n\n{link}" + body
        # after every window: a crash or a kill keeps what was measured
        write_results(out, args.title, prov, body, payload)
    print(body)
    return 0


def report(results: dict[str, dict], rows: list[str], args) -> tuple[str, dict]:
    labels = list(results)
    comps: dict[str, dict] = {}
    for lab in labels:
        per_seed = results[lab]["per_seed"]
        comps[lab] = {sl: compare_rows(stack_seeds(per_seed, sl), REFERENCE, "ndcg@50", n_boot=args.n_boot)
                      for sl in SLICES} if REFERENCE in rows else {}
    for key, labs in rolling_groups(results).items():
        if len(labs) > 1 and REFERENCE in rows:
            comps[f"rolling {key} ({len(labs)} days)"] = {
                sl: compare_rows(pooled([stack_seeds(results[lab]["per_seed"], sl) for lab in labs], labs),
                                 REFERENCE, "ndcg@50", n_boot=args.n_boot) for sl in SLICES}

    def macro(lab: str, row: str, slice_name: str = "all") -> float:
        vals = [(ps[row] if slice_name == "all" else ps[row]["slices"][slice_name])["macro"]["ndcg@50"]
                for ps in results[lab]["per_seed"]]
        return float(np.mean(vals))

    out = ["## Macro NDCG@50 per window (mean over seeds)\n",
           "| row | " + " | ".join(labels) + " |", "|---" + "|---:" * len(labels) + "|"]
    best = {lab: max(macro(lab, r) for r in rows) for lab in labels}
    for r in rows:
        cells = [f"{macro(lab, r):.4f}" for lab in labels]
        cells = [f"**{c}**" if np.isclose(macro(lab, r), best[lab]) else c for c, lab in zip(cells, labels, strict=True)]
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    if comps and REFERENCE in rows:
        out += ["", f"## Δ macro NDCG@50 = {REFERENCE} − row, 95% paired bootstrap CI (pooled over seeds)\n",
                "Bold: the interval excludes 0. Otherwise: no measurable difference.\n"]
        for sl in SLICES:
            names = list(comps)
            out += [f"### slice `{sl}`\n", "| row | " + " | ".join(names) + " |", "|---" + "|---:" * len(names) + "|"]
            for r in rows:
                if r == REFERENCE:
                    continue
                out.append(f"| {r} | " + " | ".join(fmt_ci(comps[n][sl][r]["macro"]) for n in names) + " |")
            out.append("")
        for lab in labels:
            per_seed = results[lab]["per_seed"]
            scen = list(per_seed[0][rows[0]]["per_scenario"])
            agg = aggregate([strip_pairs(ps) for ps in per_seed])
            out += [f"## {lab}: per scenario\n", "NDCG@50 (mean ± std over seeds):\n", format_agg(agg, "ndcg@50"), "",
                    "HitRate@50:\n", format_agg(agg, "hit_rate@50"), ""]
            for sl in SLICES:
                pairs = {s: per_seed[0][REFERENCE]["slices"][sl]["per_scenario"][s]["pairs"] if sl != "all"
                         else per_seed[0][REFERENCE]["per_scenario"][s]["pairs"] for s in scen}
                out += [f"Δ NDCG@50, slice `{sl}` ({sum(pairs.values()):,} pairs):\n",
                        format_ci_table(comps[lab][sl], scen, REFERENCE), ""]
    payload = {"windows": {lab: {k: v for k, v in results[lab].items() if k != "per_seed"} |
                           {"per_seed": [strip_pairs(ps) for ps in results[lab]["per_seed"]]} for lab in labels},
               "significance": comps, "rows": rows, "seeds": args.seeds, "overrides": args.set}
    return "\n".join(out) + "\n", payload


if __name__ == "__main__":
    raise SystemExit(main())
