"""The run report: one self-contained HTML page per run, plus a markdown twin.

1. :func:`gather` (report_inputs) reads what the stages wrote into a :class:`RunReport`, including the
   training curves DVCLive logged; a missing input is named, never raised.
2. :func:`draw_figures` (report_figures) renders those curves and NDCG@50 per scenario as PNGs.
3. :func:`context` builds every table as a pandas DataFrame (report_tables; cells' text and CSS classes)
   and the few values the prose needs. ``templates/report_body.j2`` is the document, written once: every
   section's headings, sentences, notes, tables and figures, in page order (among them "Is the difference
   real?": paired-bootstrap intervals per slice, from the ``significance``/``slice_pairs`` keys of
   metrics.json). ``report.html.j2`` lays it out as one page (autoescaped, inline CSS, base64 images, no
   external resource; tables through pandas' Styler) and ``report.md.j2`` as markdown (tables through
   ``DataFrame.to_markdown``, images linked from ``images/``).

:func:`write_report` does all three and writes ``index.html``, ``report.md`` and ``images/*.png``.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from ..atomic import write_text
from .report_figures import Figure, draw_figures
from .report_format import (
    DASH,
    fmt_count,
    fmt_date,
    fmt_delta,
    fmt_metric,
    html_table,
    md_table,
    md_text,
    metric_label,
    num,
    slice_descriptions,
    slice_rank,
    tone,
)
from .report_inputs import CANDIDATE, RunReport, gather, git_commit
from .report_tables import (
    HEADLINE,
    cascade_tables,
    changes_table,
    data_table,
    delta,
    failures_table,
    gate_tables,
    headline_table,
    k_table,
    kept_start,
    objective_table,
    prior_evidence_table,
    problems_table,
    rerank_table,
    significance_table,
    skipped_table,
    slice_table,
    suites_table,
    training_table,
)

__all__ = ["Figure", "RunReport", "context", "draw_figures", "gather", "git_commit", "render_html",
           "render_markdown", "slice_descriptions", "write_report"]


def cards(rep: RunReport) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The header's two rows of (label, value, tone): the run's facts, then its key results."""
    w = rep.window
    facts = []
    if w:
        facts.append(("Training window", f"{fmt_date(w.get('train_start'))} … {fmt_date(w.get('train_end'))}", ""))
        facts.append(("Test window", f"{fmt_date(w.get('test_start'))} … {fmt_date(w.get('test_end'))}", ""))
    facts.append(("Scenarios", ", ".join(rep.scenarios) or DASH, ""))
    if rep.skipped:
        facts.append(("Skipped today", ", ".join(f"{s} → {d.get('served_by', DASH)}" for s, d in rep.skipped.items()),
                      "neg"))
    facts.append(("Generated", rep.generated.replace("T", " ").replace("+00:00", " UTC"), ""))
    facts.append(("Code commit", rep.commit or "unknown", ""))
    head = (rep.metrics or {}).get(CANDIDATE) or {}
    key = [(f"{CANDIDATE} macro {metric_label(m)}", fmt_metric((head.get("macro") or {}).get(m)), "") for m in HEADLINE]
    if rep.published is not None and head:
        d = delta(head, rep.published.get(CANDIDATE) or {}, "macro", "ndcg@50")
        key.append(("vs published (NDCG@50)", fmt_delta(d), tone(d)))
    else:
        key.append(("vs published (NDCG@50)", "no published run yet", "muted"))
    v = rep.validation
    key.append(("Data validation", DASH if v is None else ("passed" if v.get("success") else "FAILED"),
                "" if v is None else ("pos" if v.get("success") else "neg")))
    return facts, key


def _significance(rep: RunReport) -> dict[str, Any]:
    """What "Is the difference real?" says besides its tables."""
    cfg = rep.significance_config
    definition = (rep.metrics or {}).get("slice_definition") or {}
    desc = slice_descriptions(definition)
    empty = [s for s, n in (rep.slice_pairs.get("tail_truth") or {}).items() if num(n) == 0]
    no_clicks = [s for s in empty if num((definition.get("tail_median_clicks") or {}).get(s)) == 0]
    tail = f"tail_truth has no pair in {', '.join(empty)}" if empty else ""
    if no_clicks:
        tail += f" ({', '.join(no_clicks)}: no training click in the scenario, so no video is below the median)"
    slices = []
    for name in sorted(rep.significance, key=slice_rank):
        if rep.significance[name]:
            total = sum(int(v) for v in (rep.slice_pairs.get(name) or {}).values() if num(v) is not None)
            slices.append((f"Slice {name}" + (f" ({total:,} pairs)" if rep.slice_pairs.get(name) else ""),
                           significance_table(rep, name)))
    return {"reference": str(cfg.get("reference") or CANDIDATE), "metric": metric_label(str(cfg.get("metric") or "ndcg@50")),
            "level": f"{num(cfg.get('level')) or 0.95:.0%}",
            "n_boot": fmt_count(cfg.get("n_boot")) if cfg.get("n_boot") is not None else "2,000",
            "definitions": " ".join(f"{n}: {desc[n]}." for n in desc if n in rep.slice_pairs),
            "slice_table": slice_table(rep) if rep.slice_pairs else None, "tail_note": tail, "slices": slices}


def context(rep: RunReport) -> dict[str, Any]:
    """Everything ``report_body.j2`` shows besides ``rep`` and the figures: the tables (None: nothing to
    show) and the values its sentences need."""
    v = rep.validation or {}
    dates = v.get("dates") or []
    facts, key = cards(rep)
    prior, margins = prior_evidence_table(rep)
    curve_rows = set(rep.curves.loc[rep.curves["series"].str.startswith("per_step/"), "row"])
    cur, pub = (rep.metrics or {}).get(CANDIDATE), (rep.published or {}).get(CANDIDATE) or {}
    pw = (rep.published or {}).get("window") or {}
    published = f"version {rep.published_version}" if rep.published_version else "the published run"
    if pw:
        published += f" (test window {fmt_date(pw.get('test_start'))} … {fmt_date(pw.get('test_end'))})"
    gate, margins_table = gate_tables(rep.gate) if rep.gate else (None, None)
    g = rep.gate or {}
    return {
        "facts": facts, "key": key,
        "validation_scope": f" over {fmt_date(dates[0])} … {fmt_date(dates[-1])} ({len(dates)} days)" if dates else "",
        "suites": suites_table(v), "failures": failures_table(v),
        "data": data_table(rep), "stats_missing": [s for s in dict.fromkeys(rep.scenarios) if s not in rep.stats],
        "skipped": skipped_table(rep),
        "training": training_table(rep), "kept": kept_start(rep), "prior": prior, "prior_margins": " / ".join(margins),
        "no_loss": [r for r in rep.rows if r not in curve_rows and r != "popular"],
        "headline": headline_table(rep) if rep.rows else None, "ks": k_table(rep) if rep.rows and rep.ks else None,
        "objectives": {name: (objective_table(e) if e.get("scenarios") else None,
                              ", ".join(f"{s} ({fmt_count(n)})" for s, n in (e.get("too_few") or {}).items()))
                       for name, e in rep.objectives.items()},
        "significance": _significance(rep),
        "cascade": cascade_tables(rep),
        "cascade_features": {row: ", ".join(c.get("features") or []) for row, c in rep.cascade.items()},
        "rerank": rerank_table(rep),
        "rerank_weights": {row: c.get("weights") for row, c in rep.rerank.items()},
        "gate": gate, "gate_margins": margins_table,
        "gate_verdict": (f"{g.get('winner')} will be published" if g.get("publish") else "the model in service stays"
                         if g.get("published") is not None else "nothing will be published"),
        "changes": changes_table(cur, pub) if cur and rep.published is not None else None,
        "published": published,
        "new_scenarios": [s for s in (cur or {}).get("per_scenario") or {} if s not in (pub.get("per_scenario") or {})],
        "problems": problems_table(rep),
    }


@functools.cache
def _templates() -> jinja2.Environment:
    """templates/: report.html.j2 (autoescaped) and report.md.j2, each defining how a heading, a paragraph, a
    note, cards, a table and a figure look, then including report_body.j2, the document itself."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"),
                             autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(b64=lambda data: base64.b64encode(data).decode("ascii"), md=md_text, html_table=html_table,
                       md_table=md_table, squash=lambda text: " ".join(str(text).split()), date=fmt_date,
                       thousands=fmt_count)
    env.globals.update(DASH=DASH, CANDIDATE=CANDIDATE)
    return env


def _render(name: str, rep: RunReport, figs: Mapping[str, Figure] | None, **extra: Any) -> str:
    return _templates().get_template(name).render(rep=rep, c=context(rep), figs=figs or {}, **extra)


def render_html(rep: RunReport, figs: Mapping[str, Figure] | None = None) -> str:
    """One self-contained page: inline CSS, images as base64 data URIs, no external resource."""
    return _render("report.html.j2", rep, figs)


def render_markdown(rep: RunReport, figs: Mapping[str, Figure] | None = None, image_dir: str = "images") -> str:
    """The markdown twin of the HTML page; images are linked as ``<image_dir>/<name>.png``."""
    text = _render("report.md.j2", rep, figs, image_dir=image_dir)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"   # one blank line between blocks


def write_report(rep: RunReport, out_dir: str | Path, figs: Mapping[str, Figure] | None = None) -> dict[str, Path]:
    """Write ``index.html``, ``report.md`` and ``images/*.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    figs = draw_figures(rep) if figs is None else figs
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.png"):
        if old.stem not in figs:
            old.unlink()
    written: dict[str, Path] = {}
    for name, f in figs.items():
        (images / f"{name}.png").write_bytes(f.png)
        written[name] = images / f"{name}.png"
    for name, text in (("index.html", render_html(rep, figs)), ("report.md", render_markdown(rep, figs))):
        write_text(out_dir / name, text)
        written[name] = out_dir / name
    return written
