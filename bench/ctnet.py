"""CTNet benchmark (seed 004): continual transfer against the alternatives, on a rolling daily backfill of KuaiRand.

    python bench/ctnet.py --seeds 0 1

Each backfill day d (default 05-03, 05-04, 05-05) is scored on its own test day d, with the training
window the days before it (``--train-days``, default 8). The first day every row trains from scratch on
that window; after it:

- ``ctnet`` (continual transfer): the source is refreshed daily (warm start, the newest day), then every
  target continues from its own previous model on its scenario's newest day, reading today's source;
- ``ctnet_one_time`` (one-time transfer): the same, but the adapters keep reading the first day's source and
  the targets do not follow the source's daily update (``ctnet.follow_source`` 0);
- ``pf_all`` / ``pf_emb`` (pretrain-then-finetune): targets initialised once from the source (every weight,
  or only the embeddings), no adapters, then continued daily like ctnet's targets;
- ``dssm_single`` (no transfer), ``dssm_mixed`` and ``sass`` (joint training) and ``popular``: retrained from
  scratch on each day's window, as the daily pipeline does in ``train.mode: full``.

The first day's models are also scored on the dev window of docs/benchmark.md (test 05-03..05-05), whose training
window is the first day's. Every row goes through the product's code path (experiment.prepare_window,
train.ctnet.train_ctnet, train.recipes.train_row, the protocol); paired bootstrap 95% CIs of ctnet − row
per scenario and macro, pooled over seeds, per day and pooled over the days after the first (and, in a backfill
longer than the 3 test days of docs/benchmark.md, over its last 3 days too). Training
seconds per row and day are reported beside dssm_single's.

``--source synthetic`` runs the same backfill on the params' generator (data.synthetic) instead of KuaiRand-Pure.

Writes bench/results/ctnet.{md,json} and ctnet_vs_single.png (the issue's bar: every row − dssm_single per small
tab, with CIs). ``--replot bench/results/X.json`` draws X_vs_single.png from a recorded run.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

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
from forest import finish_forest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sass_retrieval.config import make_window  # noqa: E402
from sass_retrieval.evaluate.report import slice_descriptions  # noqa: E402
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

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

REFERENCE = "ctnet"
BASELINES = ["popular", "dssm_mixed", "dssm_single", "sass"]
# continual rows: params overrides (dotted keys), and whether the adapters keep reading the first day's source
# one-time transfer reads nothing of the source after the first day: neither through the adapters nor by following it
CONTINUAL = {"ctnet": ({"ctnet.adapters": True}, False),
             "ctnet_one_time": ({"ctnet.adapters": True, "ctnet.follow_source": 0.0}, True),
             "pf_all": ({"ctnet.adapters": False, "ctnet.init": "all"}, False),
             "pf_emb": ({"ctnet.adapters": False, "ctnet.init": "embeddings"}, False)}
SMALL_TABS = ("0", "2", "4", "6")
DEV_DAYS = 3   # the test window of docs/benchmark.md: a longer backfill also pools its last this many days


def continual_rows(names: str, variants: list[str]) -> dict[str, tuple[dict[str, object], bool]]:
    """The continual rows to run: a subset of CONTINUAL (``--rows``; ctnet always) plus ``--variant
    NAME:key=value;key=value`` rows, continual transfer with those params changed (e.g. ``ct_lr:
    ctnet.adapter_lr=0.1``), so that knobs are compared on the same pairs in one run."""
    from bench_cli import parse_sets

    rows = {"ctnet": CONTINUAL["ctnet"]}
    for name in (n for n in names.split(",") if n):
        if name not in CONTINUAL:
            raise SystemExit(f"--rows: unknown continual row {name!r} (one of {', '.join(CONTINUAL)})")
        rows[name] = CONTINUAL[name]
    for spec in variants:
        name, _, sets = spec.partition(":")
        if not name or not sets or name in rows or name in BASELINES:
            raise SystemExit(f"--variant {spec!r}: expected NEW_NAME:key=value[;key=value] with a new row name")
        rows[name] = ({"ctnet.adapters": True, **dict(parse_sets(sets.split(";")))}, False)
    return rows


def source_drift(first, today, bank, scenario: str) -> float:
    """Mean distance between the first day's and today's source item vectors (unit vectors, every item, as
    served in the source's scenario; the measure of CTNet.adapter_effect): how much there is for continual
    transfer to pass on that one-time transfer does not."""
    import torch

    from sass_retrieval.models.ctnet import mean_distance

    b = bank.serving_item_batch(np.arange(len(bank.item_ids)), scenario)
    with torch.no_grad():
        return mean_distance(first.eval().item_vectors(b)[0], today.eval().item_vectors(b)[0])


def pooled(stacks: list[dict], labels: list[str]) -> dict:
    """Several days' per-pair stacks as one comparison: each (day, scenario) is a stratum."""
    return {row: {f"{lab}:{s}": v for st, lab in zip(stacks, labels, strict=True) for s, v in st[row].items()}
            for row in stacks[0]}


def run_seed(store: Path, work: Path, params: Params, days: list[int], train_days: int, declared: list[str],
             seed: int, baselines: list[str] = BASELINES,
             continual: dict[str, tuple[dict[str, object], bool]] = CONTINUAL) -> dict[str, dict]:
    """One seed's backfill: label -> row -> protocol result (with per-pair values and training seconds)."""
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.run import incremental_params
    from sass_retrieval.train.ctnet import train_ctnet

    min_rows, seq_len = params.scenarios.min_scenario_rows, params.features.seq_len
    out: dict[str, dict] = {}
    state: dict[str, tuple] = {}          # continual row -> (source, scenario -> model)
    firsts: dict[str, object] = {}        # continual row -> its first day's source (one-time transfer, drift)
    for i, day in enumerate(days):
        label = f"{str(day)[4:]} (train {train_days}d)"
        prep = prepare_window(store, work / "features", make_window(day, train_days, 1), declared, min_rows, seq_len)
        kept: dict = {}
        slices, bank = evaluation_slices(prep), window_bank(prep, params)
        res = run_rows(prep, params, baselines, seed, work / "rows", keep_models=kept,
                       slices=slices, bank=bank)
        for row, (overrides, one_time) in continual.items():
            if i == 0 and row == "ctnet_one_time":      # identical to ctnet on the first day
                state[row], res[row] = state["ctnet"], copy.deepcopy(res["ctnet"])
                kept[row], firsts[row] = kept["ctnet"], firsts["ctnet"]
                continue
            p = params.override(overrides, source=f"row {row}")
            if i > 0:
                p = incremental_params(p, ("finetune",))
            prev = state.get(row)
            t = time.perf_counter()
            source, models, rep = train_ctnet(bank, p, seed, work / "ctnet" / row, progress=False,
                                            source_init=prev[0] if prev else None,
                                            target_inits=dict(prev[1]) if prev else None,
                                            adapter_source=firsts[row] if one_time and i > 0 else None)
            seconds = time.perf_counter() - t
            state[row] = (source, models)
            if i == 0:
                firsts[row] = copy.deepcopy(source)
            kept[row] = EmbeddingRecommender(models, bank)
            res[row] = score(slices, kept[row], {
                "train_seconds": seconds, "adapter_effect": {tab: rep[tab]["adapter_effect"] for tab in rep["targets"]
                                                             if "adapter_effect" in rep[tab]},
                "source_drift": source_drift(firsts[row], source, bank, rep["source_scenario"]) if i else 0.0})
            logging.info("seed %d %s %s: macro NDCG@50 %.4f (%.0fs)", seed, label, row, res[row]["macro"]["ndcg@50"],
                         seconds)
        if i == 0:
            dev = prepare_window(store, work / "features_dev", make_window(days[-1], train_days, len(days)),
                                 declared, min_rows, seq_len)
            dev_slices = evaluation_slices(dev)
            # the dev window trains on the first day's window: the first day's models, scored on its 3 test days
            out[f"dev {len(days)}d→{str(days[-1])[4:]} (train {train_days}d)"] = {
                row: score(dev_slices, rec, res[row]["info"]) for row, rec in kept.items()}
        out[label] = res
    return out


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "ctnet")
    p.add_argument("--days", default="20220503,20220504,20220505", help="backfill test days, comma-separated")
    p.add_argument("--train-days", type=int, default=8)
    source_option(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="rows retrained from scratch every day beside the continual ones (dssm_single is required: "
                        "the cost column is relative to it); fewer make a long backfill affordable")
    p.add_argument("--rows", default=",".join(CONTINUAL),
                   help="continual rows beside ctnet (ctnet_one_time, pf_all, pf_emb); fewer make a comparison of "
                        "variants affordable")
    p.add_argument("--variant", action="append", default=[],
                   help="an extra continual row NAME:key=value[;key=value], e.g. ct_lr:ctnet.adapter_lr=0.1")
    params_options(p, "ctnet.source=all")
    p.add_argument("--replot", metavar="JSON", help="draw a recorded run's plot from its .json (and link it) and stop")
    args = p.parse_args(argv)
    if args.replot:
        replot(Path(args.replot))
        return 0
    params = bench_params(args, ("sass_retrieval.train.ctnet",))
    prov = bench_provenance(__file__, argv)   # after the thread count is set: it records torch's threads
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = source_store(args, params, work)
    days = [int(d) for d in args.days.split(",")]
    baselines = [r for r in args.baselines.split(",") if r]
    if "dssm_single" not in baselines:
        p.error("--baselines must include dssm_single (the reference of the cost column)")
    continual = continual_rows(args.rows, args.variant)
    declared = declared_scenarios(args, params)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)   # report() draws the plot before write_results
    t0 = time.perf_counter()
    per_seed: list[dict] = []
    for seed in args.seeds:
        per_seed.append(run_seed(store, work, params, days, args.train_days, declared, seed, baselines,
                                 continual))
        body, payload = report(per_seed, args)
        body = f"Seeds {args.seeds[:len(per_seed)]}; overrides {args.set or 'none'}; {time.perf_counter() - t0:.0f}s.\n\n" + body
        write_results(Path(args.out), "CTNet: continual transfer on a rolling KuaiRand backfill", prov, body, payload)
    print(body)
    return 0


def comparisons(by_label: dict[str, list[dict]], reference: str, n_boot: int,
                windows: list[str] | None = None, slice_name: str = "all") -> dict[str, dict]:
    """label -> row -> scenario/macro -> CI of Δ = reference − row: each of ``windows`` (default: every label),
    and pooled over the days after the first (per tab with its days as strata, and macro), on the evaluation
    slice ``slice_name`` (evaluate.slices; default every pair)."""
    labels = list(by_label)
    comps = {lab: compare_rows(stack_seeds(by_label[lab], slice_name), reference, "ndcg@50", n_boot=n_boot)
             for lab in (labels if windows is None else windows)}
    later = labels[2:]                     # the days after the first (labels[0]: the dev window, [1]: the first day)
    spans = {f"pooled over the {len(later)} days after the first": later} if len(later) > 1 else {}
    if len(later) > DEV_DAYS:              # a long backfill: its last days are the test days of docs/benchmark.md, pooled too
        spans[f"pooled over the last {DEV_DAYS} days"] = later[-DEV_DAYS:]
    for name, span in spans.items():
        stacks = [stack_seeds(by_label[lab], slice_name) for lab in span]
        every = compare_rows(pooled(stacks, span), reference, "ndcg@50", n_boot=n_boot)
        tabs = list(stacks[0][reference])
        per_tab = {t: compare_rows(pooled([{r: {t: st[r][t]} for r in st} for st in stacks], span), reference,
                                   "ndcg@50", n_boot=n_boot) for t in tabs}
        comps[name] = {r: {**{t: per_tab[t][r]["macro"] for t in tabs}, "macro": every[r]["macro"]} for r in every}
    return comps


def negated(ci: dict) -> dict:
    """Δ = a − b turned into b − a."""
    return {**ci, "diff": -ci["diff"], "lo": -ci["hi"], "hi": -ci["lo"]}


def against_single(by_label: dict[str, list[dict]], n_boot: int, windows: list[str],
                   slice_name: str = "all") -> dict[str, dict]:
    """Every row − dssm_single (the issue's bar is set against no transfer): comparisons with dssm_single as the
    reference, each interval turned round."""
    return {lab: {r: {k: negated(ci) for k, ci in c.items()} for r, c in comp.items()}
            for lab, comp in comparisons(by_label, "dssm_single", n_boot, windows, slice_name).items()}


def ci_tables(comps: dict[str, dict], rows: list[str], reference: str, pair_counts: bool = False) -> list[str]:
    """One markdown table per window: a row per compared row, a CI per scenario and macro (with each column's
    number of evaluation pairs when ``pair_counts``: a slice's are few)."""
    out: list[str] = []
    for name, comp in comps.items():
        first = next(iter(comp.values()))
        scen = [x for x in first if x != "macro"]
        head = [f"{x} ({first[x]['pairs']:,})" if pair_counts else x for x in scen + ["macro"]]
        out += [f"### {name}\n", "| row | " + " | ".join(head) + " |", "|---" + "|---:" * (len(scen) + 1) + "|"]
        out += [f"| {r} | " + " | ".join(fmt_ci(comp[r][x]) for x in scen + ["macro"]) + " |"
                for r in rows if r != reference]
        out.append("")
    return out


def effect_table(by_label: dict[str, list[dict]], labels: list[str], rows: list[str]) -> list[str]:
    """Per adapter row and day: how far the adapters move each target's served vectors (users / items), and how
    far the source has moved from the first day's (the signal continual transfer has over one-time)."""
    rows = [r for r in rows if any(x[r]["info"].get("adapter_effect") for lab in labels for x in by_label[lab])]
    if not rows:
        return []
    tabs = list(by_label[labels[0]][0][rows[0]]["info"]["adapter_effect"])

    def mean(lab: str, r: str, t: str, side: str) -> float:
        return float(np.mean([x[r]["info"]["adapter_effect"][t][side] for x in by_label[lab]]))

    out = ["", "## How far the adapters move the targets' vectors (users / items; mean over seeds)\n",
           "Mean distance between the unit vectors a target serves with and without its adapters (0: identical, 2: "
           "opposite; 0.01 ≈ 0.6°). The source's drift is the same measure between the first day's source and the "
           "day's (items, in its own scenario): what continual transfer can pass on that one-time transfer cannot.\n",
           "| row | day | " + " | ".join(f"tab {t}" for t in tabs) + " | source drift |",
           "|---|---" + "|---:" * (len(tabs) + 1) + "|"]
    for r in rows:
        for lab in labels:
            drift = float(np.mean([x[r]["info"].get("source_drift", 0.0) for x in by_label[lab]]))
            out.append(f"| {r} | {lab} | " + " | ".join(f"{mean(lab, r, t, 'user'):.4f} / "
                                                       f"{mean(lab, r, t, 'item'):.4f}" for t in tabs)
                       + f" | {drift:.4f} |")
    return out + [""]


PLOT_SUFFIX = "_vs_single.png"
VS_SINGLE = "## Δ NDCG@50 = row − dssm_single (no transfer), 95% paired bootstrap CI (pooled over seeds)\n\n"


def plot_vs_single(vs_single: dict[str, dict], rows: list[str], path: Path, title: str) -> str:
    """The issue's bar as a picture: Δ NDCG@50 = row − dssm_single with its 95% CI, one panel per window (the dev
    window, the days after the first pooled), a line per small tab and macro, a marker per row. Returns the
    Markdown line that shows it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = [w for w in vs_single if w.startswith("dev") or w.startswith("pooled")] or list(vs_single)
    others = [r for r in rows if r not in ("dssm_single", "popular")]
    cols = [c for c in next(iter(vs_single[windows[0]].values())) if c in SMALL_TABS] + ["macro"]
    fig, axes = plt.subplots(1, len(windows), figsize=(5.0 * len(windows), 0.28 * len(cols) * max(2, len(others)) + 2.0),
                             sharey=True, squeeze=False)
    step = 0.8 / max(1, len(others))
    for ax, w in zip(axes[0], windows, strict=True):
        for k, r in enumerate(others):
            cis = [vs_single[w][r][c] for c in cols]
            ys = [i - 0.4 + step * (k + 0.5) for i in range(len(cols))]
            ax.errorbar([c["diff"] for c in cis], ys, xerr=[[c["diff"] - c["lo"] for c in cis],
                                                            [c["hi"] - c["diff"] for c in cis]],
                        fmt="o", ms=4, capsize=2, label=r)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("Δ NDCG@50 = row − dssm_single (95% CI)")
        ax.grid(axis="x", alpha=0.3)
    finish_forest(fig, axes, [c if c == "macro" else f"tab {c}" for c in cols], min(len(others), 6),
                  f"{title}: right of 0 = above no transfer", path, bottom=0.08)
    return f"![Δ NDCG@50 = row − dssm_single per small tab, 95% paired bootstrap CIs]({path.name})\n"


def replot(json_path: Path) -> None:
    """Draw a recorded run's plot from its .json and link it from its .md (once), without rerunning it."""
    import json

    payload = json.loads(json_path.read_text())
    md = json_path.with_suffix(".md")
    text = md.read_text()
    link = plot_vs_single(payload["vs_dssm_single"], payload["rows"],
                          json_path.with_name(json_path.stem + PLOT_SUFFIX), text.splitlines()[0].lstrip("# ").strip())
    if link.strip() not in text and VS_SINGLE in text:   # under its section's heading, where a fresh run puts it
        md.write_text(text.replace(VS_SINGLE, VS_SINGLE + link, 1))


def report(per_seed: list[dict], args) -> tuple[str, dict]:
    labels = list(per_seed[0])
    rows = list(per_seed[0][labels[-1]])
    by_label = {lab: [ps[lab] for ps in per_seed] for lab in labels}
    comps = comparisons(by_label, REFERENCE, args.n_boot)
    vs_single = against_single(by_label, args.n_boot, labels[:1])

    def mean(lab: str, row: str, scen: str | None = None) -> float:
        return float(np.mean([(r[row]["per_scenario"][scen] if scen else r[row]["macro"])["ndcg@50"]
                              for r in by_label[lab]]))

    out = ["## Macro NDCG@50 (mean over seeds)\n", "| row | " + " | ".join(labels) + " |",
           "|---" + "|---:" * len(labels) + "|"]
    for r in rows:
        best = {lab: max(mean(lab, x) for x in rows) for lab in labels}
        out.append(f"| {r} | " + " | ".join(f"**{mean(lab, r):.4f}**" if np.isclose(mean(lab, r), best[lab])
                                             else f"{mean(lab, r):.4f}" for lab in labels) + " |")
    out += ["", f"## Δ NDCG@50 = {REFERENCE} − row, 95% paired bootstrap CI (pooled over seeds)\n",
            "Bold: the interval excludes 0; otherwise no measurable difference.\n"]
    out += ci_tables(comps, rows, REFERENCE)
    out += [VS_SINGLE + plot_vs_single(vs_single, rows, Path(args.out).with_name(Path(args.out).name + PLOT_SUFFIX),
                           "CTNet on a rolling KuaiRand backfill")]
    out += ci_tables(vs_single, rows, "dssm_single")
    # the population transfer is for: users new to a small tab and known in the others (evaluate.slices)
    cold = against_single(by_label, args.n_boot, labels[:1], "scenario_cold")
    out += ["## Scenario-cold users: Δ NDCG@50 = row − dssm_single, 95% paired bootstrap CI (pooled over seeds)\n",
            f"Slice `scenario_cold` (evaluate.slices): {slice_descriptions()['scenario_cold']}. Each heading gives "
            "its column's evaluation pairs.\n"]
    out += ci_tables(cold, rows, "dssm_single", pair_counts=True)
    out += ["## Training seconds per day (mean over seeds; the first day trains from scratch)\n",
            "| row | " + " | ".join(labels[1:]) + " | × dssm_single (first day) |", "|---" + "|---:" * len(labels) + "|"]
    for r in rows:
        secs = [float(np.mean([x[r]["info"].get("train_seconds", 0.0) for x in by_label[lab]])) for lab in labels[1:]]
        base = float(np.mean([x["dssm_single"]["info"].get("train_seconds", 0.0) for x in by_label[labels[1]]]))
        ratio = f"{secs[0] / base:.2f}×" if base and r != "popular" else "–"
        out.append(f"| {r} | " + " | ".join(f"{s:.0f}" for s in secs) + f" | {ratio} |")
    out += effect_table(by_label, labels[1:], rows)
    payload = {"labels": labels, "rows": rows, "significance": comps, "vs_dssm_single": vs_single,
               "cold_vs_dssm_single": cold, "seeds": args.seeds, "overrides": args.set,
               "per_seed": [{lab: strip_pairs(ps[lab]) for lab in labels} for ps in per_seed]}
    return "\n".join(out) + "\n", payload


if __name__ == "__main__":
    raise SystemExit(main())
