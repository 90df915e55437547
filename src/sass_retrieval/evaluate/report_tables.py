"""The run report's tables, each a pure function of the :class:`RunReport` returning a :class:`Styled`
(the cells' text and CSS classes; report_format renders it as HTML or markdown). None: nothing to show."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from .report_format import (
    DASH,
    METRIC_LABEL,
    NOTE_LEVEL,
    Cell,
    Styled,
    fmt_count,
    fmt_delta,
    fmt_metric,
    fmt_seconds,
    metric_label,
    num,
    short_label,
    slice_descriptions,
    slice_rank,
    styled,
    tone,
    verdict,
)
from .report_inputs import CANDIDATE, RunReport, row_rank, row_reports
from .significance import format_ci

HEADLINE = ("ndcg@50", "hit_rate@50")


def _grouped(groups: list[tuple[str, list[str]]], notes: list[str] | None = None) -> pd.MultiIndex:
    """Column labels under group labels (an upper header row); ``notes``, one per group, a second one."""
    if notes is None:
        return pd.MultiIndex.from_tuples([(g, c) for g, cols in groups for c in cols], names=["group", "column"])
    return pd.MultiIndex.from_tuples([(g, n, c) for (g, cols), n in zip(groups, notes, strict=True) for c in cols],
                                     names=["group", NOTE_LEVEL, "column"])


def value_table(names: list[str], columns: list[list[float | None]], labels: list[Any] | pd.MultiIndex,
                digits: int = 4) -> Styled:
    """One line per row, one metric per column; the best value of a column at the shown precision in bold
    (ties all bold, a lone value never), the candidate's line shaded. ``labels``: the first column's, then one
    per metric column."""
    marks = []
    for col in columns:
        shown = [round(v, digits) if v is not None else None for v in col]
        vals = [v for v in shown if v is not None]
        best = max(vals) if len(vals) > 1 else None
        marks.append([best is not None and v == best for v in shown])
    lines = []
    for i, n in enumerate(names):
        shade = " shade" if n == CANDIDATE else ""
        lines.append([(n + (" (candidate)" if n == CANDIDATE else ""), shade.strip()),
                      *((fmt_metric(col[i], digits), "num" + (" b" if mark[i] else "") + shade)
                        for col, mark in zip(columns, marks, strict=True))])
    return styled(labels, lines)


def _metric(res: Mapping, scope: str, metric: str, scenario: str | None = None) -> float | None:
    node = res.get(scope) or {}
    return num(((node.get(scenario) or {}) if scenario is not None else node).get(metric))


def headline_table(rep: RunReport, metrics: Iterable[str] = HEADLINE) -> Styled:
    """NDCG@50 and HitRate@50 per scenario, macro and micro (pairs and pool under each scenario's label)."""
    metrics, names = list(metrics), list(rep.rows)
    first = next(iter(rep.rows.values()), {})
    groups, notes, columns = [("", ["row"])], [""], []
    for s in rep.scenarios:
        ps = (first.get("per_scenario") or {}).get(s) or {}
        groups.append((s, [short_label(m) for m in metrics]))
        notes.append(f"{fmt_count(ps.get('pairs'))} pairs · pool {fmt_count(ps.get('pool'))}")
        columns += [[_metric(rep.rows[n], "per_scenario", m, s) for n in names] for m in metrics]
    for scope, note in (("macro", "mean over scenarios"), ("micro", "mean over pairs")):
        groups.append((scope, [short_label(m) for m in metrics]))
        notes.append(note)
        columns += [[_metric(rep.rows[n], scope, m) for n in names] for m in metrics]
    return value_table(names, columns, _grouped(groups, notes))


def k_table(rep: RunReport) -> Styled:
    """Macro NDCG, HitRate and Recall at every K, one line per row."""
    names = list(rep.rows)
    groups = [("", ["row"])] + [(f"{METRIC_LABEL[b]} (macro)", [f"@{k}" for k in rep.ks]) for b in METRIC_LABEL]
    columns = [[_metric(rep.rows[n], "macro", f"{b}@{k}") for n in names] for b in METRIC_LABEL for k in rep.ks]
    return value_table(names, columns, _grouped(groups))


def objective_table(entry: Mapping[str, Any], metric: str = "ndcg@50") -> Styled:
    """One objective's ground truth: ``metric`` per reported scenario and macro, one line per row."""
    scen = [str(x) for x in entry.get("scenarios", [])]
    rows = entry.get("rows") or {}
    names = sorted(rows, key=row_rank)
    columns = [[_metric(rows[n], "per_scenario", metric, x) for n in names] for x in scen]
    columns.append([_metric(rows[n], "macro", metric) for n in names])
    labels = ["row", *(f"{x} ({fmt_count((entry.get('pairs') or {}).get(x))} pairs)" for x in scen), "macro"]
    return value_table(names, columns, labels)


# ---- data and validation -------------------------------------------------------------------------


def _observed_text(obs: Any, limit: int = 160) -> str:
    if isinstance(obs, dict) and "unexpected_count" in obs:
        text = (f"{fmt_count(obs.get('unexpected_count'))} of {fmt_count(obs.get('element_count'))} rows "
                f"unexpected ({num(obs.get('unexpected_percent')) or 0:.2f}%)")
        sample = next((obs[k] for k in obs if str(k).startswith("unknown_")), obs.get("sample"))
        return text + (", e.g. " + ", ".join(map(str, list(sample)[:5])) if sample else "")
    if isinstance(obs, dict) and set(obs) == {"missing"}:
        return "missing " + ", ".join(map(str, obs["missing"][:10]))
    text = obs if isinstance(obs, str) else json.dumps(obs, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rule_text(rule: Any, limit: int = 120) -> str:
    text = (", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rule.items() if k != "notes")
            if isinstance(rule, dict) else str(rule))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def suites_table(v: Mapping[str, Any]) -> Styled | None:
    """Per expectation suite: passed or not, and its expectation counts."""
    lines = []
    for name, suite in (v.get("suites") or {}).items():
        counts, files, ok = suite.get("counts") or {}, len(suite.get("file_checks") or []), bool(suite.get("success"))
        failed = (counts.get("unsuccessful") or 0) + files
        lines.append([name, ("passed", "pos") if ok else ("FAILED", "b neg"),
                      (fmt_count(counts.get("evaluated")), "num"), (fmt_count(counts.get("successful")), "num"),
                      (fmt_count(failed), "num neg" if failed else "num"), (fmt_count(suite.get("rows")), "num")])
    return styled(["suite", "status", "expectations", "passed", "failed", "rows checked"], lines) if lines else None


def failures_table(v: Mapping[str, Any]) -> Styled | None:
    """Every failed check: where, which expectation, what was observed, the rule."""
    lines = [[str(f.get(k, DASH)) for k in ("table", "where", "column", "expectation_type")]
             + [(_observed_text(f.get("observed")), "neg"), _rule_text(f.get("rule"))] for f in v.get("failures") or []]
    return styled(["suite", "where", "column", "expectation", "observed", "rule"], lines) if lines else None


def data_table(rep: RunReport) -> Styled | None:
    """Per scenario: the split's training-window sizes, and the evaluation pairs and pool."""
    eval_pairs = dict((rep.metrics or {}).get("eval_pairs") or {})
    for s in rep.scenarios:  # fall back on the sizes every row carries
        ps = next((p for r in rep.rows.values() if (p := (r.get("per_scenario") or {}).get(s))), None)
        if s not in eval_pairs and ps:
            eval_pairs[s] = {"pairs": ps.get("pairs"), "pool": ps.get("pool")}
    lines = []
    for s in dict.fromkeys(rep.scenarios + list(rep.stats)):
        st, ev = rep.stats.get(s) or {}, eval_pairs.get(s) or {}
        reported = st.get("reported", s in rep.scenarios)
        status = "yes" if reported else "skipped" if s in rep.skipped or st.get("skipped") else "no"
        lines.append([s, (status, "" if reported else "muted"),
                      *((fmt_count(st.get(k)), "num") for k in ("rows", "users", "items", "positives")),
                      (fmt_count(ev.get("pairs")), "num"), (fmt_count(ev.get("pool")), "num")])
    columns = ["scenario", "reported", "rows", "users", "items", "positives", "eval pairs", "pool"]
    return styled(columns, lines) if lines else None


def skipped_table(rep: RunReport) -> Styled | None:
    """Declared scenarios skipped today: why, and which index serves their requests."""
    lines = [[(s, "b"), str(d.get("reason", DASH)), (fmt_count(d.get("rows")), "num"),
              (fmt_count(d.get("min_scenario_rows")), "num"), str(d.get("served_by", DASH)),
              (fmt_count(d.get("eval_pairs")), "num")] for s, d in rep.skipped.items()]
    columns = ["scenario", "why", "training rows", "min_scenario_rows", "served by", "eval pairs (test window)"]
    return styled(columns, lines) if lines else None


# ---- training --------------------------------------------------------------------------------------


def _prior_weights(weights: Any) -> str:
    """Each scenario's serving popularity prior weight as fine-tuning chose it, e.g. "s0 0 · s2 0.04"."""
    if not isinstance(weights, dict) or not weights:
        return DASH
    return " · ".join(f"{s} {float(w):g}" for s, w in weights.items())


def training_table(rep: RunReport) -> Styled | None:
    """One line per trained model: epochs of the final fit, the early-stopping pick, prior, loss, time."""
    lines: list[list[Cell]] = []
    pre = rep.pretrain_report
    if pre:
        losses = pre.get("epoch_loss") or []
        lines.append(["pretrain", ("skipped" if pre.get("skipped") else fmt_count(len(losses)), "num"),
                      (DASH, "num"), (DASH, "num"), DASH, (fmt_metric(losses[-1]) if losses else DASH, "num"),
                      (fmt_seconds(pre.get("seconds")), "num")])
    for row, r in rep.train_reports.items():
        for label, inner in row_reports(row, r).items():
            final = next((inner[p] for p in ("refit", "full") if isinstance(inner.get(p), dict)), None)
            losses = (final or {}).get("epoch_loss") or []
            lines.append([label, (fmt_count(len(losses)) if final else DASH, "num"),
                          (fmt_count(inner.get("best_epoch")), "num"),
                          (fmt_metric(inner.get("best_val_ndcg@50")), "num"), _prior_weights(inner.get("prior_weights")),
                          (fmt_metric(losses[-1]) if losses else DASH, "num"),
                          (fmt_seconds(r.get("seconds")) if "/" not in label else "", "num")])
    columns = ["model", "epochs (final fit)", "best epoch", "best val NDCG@50", "popularity prior w (held-out day)",
               "last epoch loss", "time"]
    return styled(columns, lines) if lines else None


def kept_start(rep: RunReport) -> list[str]:
    """Models whose early stopping kept them as they started (best epoch 0: ctnet.keep_start)."""
    return [label for row, r in rep.train_reports.items() for label, inner in row_reports(row, r).items()
            if inner.get("best_epoch") == 0]


def prior_evidence_table(rep: RunReport) -> tuple[Styled | None, list[str]]:
    """Why each scenario got its popularity prior weight: the held-out day's gain of the chosen weight over
    none, and of the weight that day liked best (train.finetune.prior_summary); and the margins (in standard
    errors) a gain had to clear. None when no model chose one."""
    def gain(v: Any, se: Any) -> Cell:
        g = num(v)
        return (DASH if g is None else f"{g:+.4f}" + (f" ± {float(se):.4f}" if num(se) else ""), "num")

    lines, margins = [], set()
    for row, r in rep.train_reports.items():
        for label, inner in row_reports(row, r).items():
            for s, ev in (inner.get("prior_evidence") or {}).items():
                if isinstance(ev, dict):
                    margins.add(f"{float(ev.get('margin_z', math.nan)):g}")
                    lines.append([label, str(s), (f"{float(ev.get('w', 0)):g}", "num"), gain(ev.get("gain"), ev.get("se")),
                                  (f"{float(ev.get('best_w', 0)):g}", "num"),
                                  gain(ev.get("best_gain"), ev.get("best_se"))])
    columns = _grouped([("", ["model", "scenario"]), ("chosen", ["w", "its gain"]),
                        ("best on the day", ["w", "its gain"])])
    return (styled(columns, lines) if lines else None), sorted(margins)


# ---- significance, the publish gate, the published run ---------------------------------------------


def slice_table(rep: RunReport) -> Styled:
    """Evaluation pairs per slice and scenario, with the slice's definition."""
    desc = slice_descriptions((rep.metrics or {}).get("slice_definition"))
    names = sorted(rep.slice_pairs, key=slice_rank)
    scen = list(dict.fromkeys(list(rep.scenarios) + [s for n in names for s in rep.slice_pairs[n] or {}]))
    lines = []
    for name in names:
        counts = rep.slice_pairs[name] or {}
        total = sum(int(v) for v in counts.values() if num(v) is not None)
        lines.append([name, *((fmt_count(counts.get(s)), "num muted" if num(counts.get(s)) == 0 else "num")
                              for s in scen), (fmt_count(total), "num"), desc.get(name, "")])
    return styled(["slice", *scen, "total", "definition"], lines)


def significance_table(rep: RunReport, slice_name: str) -> Styled:
    """One slice: per row, Δ (reference − row) with its CI per scenario and macro, and the macro verdict."""
    reference = str(rep.significance_config.get("reference") or CANDIDATE)
    by_row = rep.significance.get(slice_name) or {}
    counts = rep.slice_pairs.get(slice_name) or {}
    scen = list(rep.scenarios) or list(dict.fromkeys(s for r in by_row.values() for s in r if s != "macro"))
    lines = []
    for row in sorted(by_row, key=row_rank):
        res = by_row[row] or {}
        line: list[Cell] = [row]
        for scope in [*scen, "macro"]:
            r = res.get(scope) or {}
            ci = format_ci(r.get("diff"), r.get("lo"), r.get("hi"))
            line.append((ci if ci != DASH else f"{DASH} (no pairs)",
                         f"num {verdict(r, reference, row)[1]}" + (" b" if r.get("significant") else "")))
        text, mood = verdict(res.get("macro"), reference, row)
        line.append((text, mood + (" b" if mood in ("pos", "neg") else "")))
        lines.append(line)
    header = ["row", *(f"{s} ({fmt_count(counts.get(s))} pairs)" if s in counts else s for s in scen), "macro",
              "verdict (macro)"]
    return styled(header, lines)


def _delta_cell(r: Mapping[str, Any]) -> Cell:
    ci = format_ci(r.get("diff"), r.get("lo"), r.get("hi"))
    mood = "pos" if r.get("significant") and (num(r.get("diff")) or 0) > 0 else "neg" if r.get("significant") else "muted"
    return ci, f"num {mood}" + (" b" if r.get("significant") else "")


def cascade_tables(rep: RunReport) -> tuple[Styled, Styled] | None:
    """Per row with a pre-ranker: (1) retrieval order's and the rescored list's macro NDCG@50, Δ macro (rescored −
    retrieval) with its CI, which order is served, and each order's GAUC on the exposed test rows (mean over
    scenarios); (2) Δ per scenario. None when no row has a pre-ranker."""
    cascade = rep.cascade
    if not cascade:
        return None
    scen = list(rep.scenarios)
    summary, per = [], []
    for row, c in cascade.items():
        retrieval = _metric(c.get("retrieval") or {}, "macro", "ndcg@50")
        delta = c.get("delta") or {}
        gain = num((delta.get("macro") or {}).get("diff"))
        line: list[Cell] = [row, (fmt_metric(retrieval), "num"),
                            (fmt_metric(None if retrieval is None or gain is None else retrieval + gain), "num"),
                            _delta_cell(delta.get("macro") or {}),
                            ("retrieval + rank" if c.get("served") else "retrieval order", "b" if c.get("served") else "")]
        g = c.get("gauc") or {}
        for key in ("retrieval", "rank"):
            vals = [num((g.get(x) or {}).get(key)) for x in g]
            vals = [v for v in vals if v is not None and not math.isnan(v)]
            line.append((fmt_metric(sum(vals) / len(vals)) if vals else DASH, "num"))
        summary.append(line)
        per.append([row, *(_delta_cell(delta.get(s) or {}) for s in scen)])
    return (styled(["row", "retrieval NDCG@50", "rescored NDCG@50", "Δ macro", "served", "GAUC retrieval",
                    "GAUC rank"], summary),
            styled(["row", *(f"Δ {s}" for s in scen)], per))


RERANK_GOALS = ("click", "long_view", "like", "diversity", "cold_start")   # rerank.goals.GOALS, pandas-free here


def rerank_table(rep: RunReport) -> Styled | None:
    """Per row with a re-ranker: each goal's utility of the upstream order's list -> the re-ranked list at the
    default weights, the share of requests the evaluator prefers re-ranked (CI), and NDCG on the test clicks with
    Δ (CI). None when no row has one."""
    rr = rep.rerank
    if not rr:
        return None
    lines = []
    for row, c in rr.items():
        u = c.get("utilities") or {}
        up, re = u.get("upstream") or {}, u.get("reranked") or {}
        share = (c.get("better_share") or {}).get("macro") or {}
        nd = c.get("ndcg") or {}
        line: list[Cell] = [row]
        line += [(f"{fmt_metric(num(up.get(g)))} → {fmt_metric(num(re.get(g)))}", "num") for g in RERANK_GOALS]
        s = num(share.get("share"))
        line.append((DASH if s is None else f"{s:.1%} [{0.5 + share['lo']:.1%}, {0.5 + share['hi']:.1%}]",
                     "num b" if share.get("significant") else "num"))
        line.append((f"{fmt_metric(num(nd.get('upstream')))} → {fmt_metric(num(nd.get('reranked')))}", "num"))
        line.append(_delta_cell((nd.get("delta") or {}).get("macro") or {}))
        lines.append(line)
    metric = next(iter(rr.values())).get("ndcg", {}).get("metric", "ndcg")
    return styled(["row", *RERANK_GOALS, "evaluator prefers re-ranked", metric.replace("ndcg", "NDCG"),
                   f"Δ {metric.replace('ndcg', 'NDCG')}"], lines)


def gate_tables(gate: Mapping[str, Any]) -> tuple[Styled, Styled | None]:
    """The publish gate's scores per row (and the model in service), and its paired margins."""
    scores = dict(gate.get("scores") or {})
    if gate.get("published") is not None:
        scores["published (in service)"] = gate["published"]
    table = styled(["row", "macro NDCG@50 (this run's pairs)"],
                   [[name, (fmt_metric(v), "num")] for name, v in scores.items()])
    margins = [[k.replace("-", " − "), (format_ci(m.get("diff"), m.get("lo"), m.get("hi")), "num"),
                "significant" if m.get("significant") else "no measurable difference"]
               for k, m in (gate.get("margins") or {}).items()]
    return table, (styled(["comparison", "Δ macro NDCG@50 [paired 95% CI]", "verdict"], margins) if margins else None)


def delta(cur: Mapping, pub: Mapping, scope: str, metric: str, scenario: str | None = None) -> float | None:
    a, b = _metric(cur, scope, metric, scenario), _metric(pub, scope, metric, scenario)
    return None if a is None or b is None else a - b


def changes_table(cur: Mapping, pub: Mapping) -> Styled:
    """The candidate row of this run against the published one: macro, micro and per scenario."""
    scen = list(dict.fromkeys(list(cur.get("per_scenario") or {}) + list(pub.get("per_scenario") or {})))
    lines = []
    for scope, s in [("macro", None), ("micro", None)] + [("per_scenario", s) for s in scen]:
        line: list[Cell] = [(s, "") if s is not None else (scope, "b")]
        for m in HEADLINE:
            d = delta(cur, pub, scope, m, s)
            line += [(fmt_metric(_metric(pub, scope, m, s)), "num"), (fmt_metric(_metric(cur, scope, m, s)), "num"),
                     (fmt_delta(d), f"num {tone(d)}" + (" b" if d is not None and round(d, 4) != 0 else ""))]
        lines.append(line)
    groups = [("", ["scope"])] + [(metric_label(m), ["published", "this run", "Δ"]) for m in HEADLINE]
    return styled(_grouped(groups), lines)


def problems_table(rep: RunReport) -> Styled | None:
    return styled(["input"], [[p] for p in rep.problems]) if rep.problems else None
