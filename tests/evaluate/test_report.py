"""The run report: files written, self-contained HTML, bold best values, signed deltas, notes for gaps."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
from support import write_project

from sass_retrieval.evaluate.report import gather, render_html, render_markdown, write_report

SCENARIOS = ["s0", "s1"]
NOW = dt.datetime(2024, 3, 9, 6, 0, tzinfo=dt.UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row_result(base: float, pairs=(120, 40), pools=(900, 300)) -> dict:
    """A metrics row: per scenario metric m@k = base + offset, macro and micro alike."""
    per = {}
    for i, s in enumerate(SCENARIOS):
        cell = {"pairs": pairs[i], "pool": pools[i]}
        for k in (20, 50, 100):
            for j, m in enumerate(("hit_rate", "recall", "ndcg")):
                cell[f"{m}@{k}"] = round(base + 0.01 * i + 0.001 * j + k / 10000, 6)
        per[s] = cell
    names = [n for n in per["s0"] if "@" in n]
    macro = {n: sum(per[s][n] for s in SCENARIOS) / 2 for n in names}
    micro = {n: sum(per[s][n] * per[s]["pairs"] for s in SCENARIOS) / sum(pairs) for n in names}
    return {"per_scenario": per, "macro": macro, "micro": micro}


def metrics_json(rows: dict[str, float], test_end: int = 20240308) -> dict:
    results = {name: row_result(base) for name, base in rows.items()}
    return {"window": {"train_start": 20240301, "train_end": 20240305, "test_start": 20240306,
                       "test_end": test_end},
            "reported": SCENARIOS,
            "eval_pairs": {"s0": {"pairs": 120, "pool": 900}, "s1": {"pairs": 40, "pool": 300}},
            "sass": results.get("sass"), "rows": results}


def write_loss(path: Path, n: int = 60, start: float = 5.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step,epoch,loss"] + [f"{i},{i // 20},{start - 0.03 * i + 0.1 * (i % 3)}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def validation_summary(success: bool = True) -> dict:
    suites = {
        "interactions": {"success": success, "rows": 5000, "file_checks": [],
                         "counts": {"evaluated": 20, "successful": 20 if success else 19,
                                    "unsuccessful": 0 if success else 1}},
        "users": {"success": True, "rows": 50, "file_checks": [],
                  "counts": {"evaluated": 6, "successful": 6, "unsuccessful": 0}},
    }
    failures = [] if success else [{
        "table": "interactions", "where": "day 20240303 (200 rows)", "column": "is_click",
        "expectation_type": "expect_column_values_to_be_in_set",
        "observed": {"unexpected_count": 200, "element_count": 5000, "unexpected_percent": 4.0,
                     "sample": [7]},
        "rule": {"value_set": [0, 1]}, "message": "..."}]
    return {"success": success, "dates": [20240301, 20240308], "suites": suites, "failures": failures}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fake project folder with every input of the report."""
    p = tmp_path
    write_json(p / "metrics/metrics.json", metrics_json({"popular": 0.05, "dssm_mixed": 0.10, "sass": 0.20}))
    write_json(p / "reports/validation/summary.json", validation_summary())
    (p / "reports/validation/data_docs").mkdir(parents=True)
    (p / "reports/validation/data_docs/index.html").write_text("<html></html>")
    for s, rows in zip(SCENARIOS, (5000, 900), strict=True):
        write_json(p / f"data/features/{s}/stats.json",
                   {"rows": rows, "users": rows // 10, "items": rows // 20, "positives": rows // 3, "reported": True})
    write_json(p / "data/features/pairs/stats.json", {"user_pairs": 77, "item_pairs": 88})
    write_loss(p / "models/pretrain/loss.csv")
    write_json(p / "models/pretrain/report.json", {"epoch_loss": [4.0, 3.5, 3.2], "steps": 60, "seconds": 12.0})
    for row in ("sass", "dssm_mixed"):
        write_loss(p / f"models/{row}/loss-select.csv")
        write_loss(p / f"models/{row}/loss-refit.csv", n=40)
        write_json(p / f"models/{row}/report.json", {"row": row, "seconds": 30.5, "report": {
            "validation": [{"epoch": 1, "val_ndcg@50": 0.1}, {"epoch": 2, "val_ndcg@50": 0.15},
                           {"epoch": 3, "val_ndcg@50": 0.14}],
            "best_epoch": 2, "best_val_ndcg@50": 0.15,
            "select": {"epoch_loss": [3.0, 2.5, 2.4]}, "refit": {"epoch_loss": [3.0, 2.5]}}})
    return p


def build(p: Path, published: Path | None = None):
    rep = gather(p / "metrics/metrics.json", p / "reports/validation", p / "models", p / "data/features",
                 published, p / "reports/run", commit="abc1234", now=NOW)
    return rep, write_report(rep, p / "reports/run")


def publish(p: Path, metrics: dict) -> Path:
    root = p / "published"
    version = root / "versions" / "20240307-deadbeef00"
    write_json(version / "metrics.json", metrics)
    os.symlink(os.path.relpath(version, root), root / "current")
    return root


def test_files_written_and_self_contained(project: Path):
    rep, written = build(project)
    html = written["index.html"].read_text()
    md = written["report.md"].read_text()
    assert (project / "reports/run/index.html").is_file() and (project / "reports/run/report.md").is_file()
    # no external resource of any kind: no http(s) src/href, no external stylesheet or script
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    # every figure is embedded and decodes to a PNG; the markdown links the saved copies
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)
    for name in ("pretrain_loss", "finetune_loss", "validation_ndcg", "ndcg_per_scenario"):
        assert (project / f"reports/run/images/{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert f"](images/{name}.png)" in md
    # header facts and the relative link to the GE Data Docs
    assert "2024-03-01 … 2024-03-05" in html and "2024-03-08" in html and "abc1234" in html
    assert 'href="../validation/data_docs/index.html"' in html
    assert "(../validation/data_docs/index.html)" in md
    assert rep.problems == []


def test_metrics_table_has_every_row_and_bold_best(project: Path):
    rep, written = build(project)
    html = written["index.html"].read_text()
    md = written["report.md"].read_text()
    for row in ("popular", "dssm_mixed", "sass"):
        assert row in html and f"| {row}" in md
    best = row_result(0.20)
    # sass (base 0.20) is best everywhere: its s0 NDCG@50 and macro HitRate@50 are bold
    assert f"<strong>{best['per_scenario']['s0']['ndcg@50']:.4f}</strong>" in html
    assert f"**{best['macro']['hit_rate@50']:.4f}**" in md
    # the worst row is never bold
    worst = row_result(0.05)
    assert f"<strong>{worst['per_scenario']['s0']['ndcg@50']:.4f}</strong>" not in html
    # the compact table covers NDCG/HitRate/Recall at 20/50/100
    assert f"**{best['macro']['recall@100']:.4f}**" in md
    assert "Recall (macro)" in html and "@100" in html


def test_delta_against_published_run(project: Path):
    published = metrics_json({"sass": 0.18}, test_end=20240307)
    root = publish(project, published)
    rep, written = build(project, published=root)
    html = written["index.html"].read_text()
    md = written["report.md"].read_text()
    assert rep.published_version == "20240307-deadbeef00"
    # this run's sass is 0.20-based, the published one 0.18-based: every delta is +0.0200
    assert '<td class="num pos"><strong>+0.0200</strong></td>' in html
    assert "+0.0200" in md and "no published run yet" not in html
    # now a worse run: the delta is negative and marked so
    write_json(project / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.15}))
    _, written = build(project, published=root)
    html = written["index.html"].read_text()
    assert '<td class="num neg"><strong>-0.0300</strong></td>' in html
    assert "+0.0" not in written["report.md"].read_text().split("Change against")[1]


def test_missing_inputs_render_notes(tmp_path: Path):
    """Nothing but metrics: no pretraining, no training, no validation, no published run."""
    write_json(tmp_path / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.2}))
    rep, written = build(tmp_path, published=tmp_path / "published")
    html = written["index.html"].read_text()
    md = written["report.md"].read_text()
    for text in ("No published run yet", "No pretraining loss", "No fine-tuning loss",
                 "No validation summary", "No validation curve"):
        assert text in html and text in md
    assert "Missing inputs" in html
    assert "ndcg_per_scenario" in written  # the metrics chart still renders


def test_nothing_at_all_does_not_crash(tmp_path: Path):
    rep, written = build(tmp_path)
    html = written["index.html"].read_text()
    assert "No metrics found" in html and "No published run yet" in html
    assert not list((tmp_path / "reports/run/images").glob("*.png"))


def test_failed_validation_is_shown_with_observed_values(project: Path):
    write_json(project / "reports/validation/summary.json", validation_summary(success=False))
    rep, written = build(project)
    html = written["index.html"].read_text()
    assert "Validation FAILED" in html
    assert "expect_column_values_to_be_in_set" in html and "200 of 5,000 rows unexpected (4.00%)" in html
    assert "day 20240303 (200 rows)" in html


def test_pretraining_skipped_and_empty_loss(project: Path):
    (project / "models/pretrain/loss.csv").write_text("step,epoch,loss\n")
    write_json(project / "models/pretrain/report.json", {"skipped": True, "seconds": 0.1})
    _, written = build(project)
    html = written["index.html"].read_text()
    assert "Pretraining was skipped" in html
    assert "pretrain_loss" not in written


def test_dssm_single_per_scenario_curves(project: Path):
    d = project / "models/dssm_single"
    report = {}
    for s in SCENARIOS:
        write_loss(d / s / "loss-select.csv")
        write_loss(d / s / "loss-refit.csv", n=30)
        report[s] = {"validation": [{"epoch": 1, "val_ndcg@50": 0.05}, {"epoch": 2, "val_ndcg@50": 0.07}],
                     "best_epoch": 2, "best_val_ndcg@50": 0.07, "refit": {"epoch_loss": [2.0, 1.5]}}
    write_json(d / "report.json", {"row": "dssm_single", "report": report, "seconds": 20})
    rep, written = build(project)
    assert set(rep.finetune_loss["dssm_single"]) == {"dssm_single/s0", "dssm_single/s1"}
    assert {"dssm_single/s0", "dssm_single/s1"} <= set(rep.validation_curves)
    assert "dssm_single/s1" in written["index.html"].read_text()


def test_render_without_figures_is_pure(project: Path):
    rep = gather(project / "metrics/metrics.json", project / "reports/validation", project / "models",
                 project / "data/features", None, project / "reports/run", now=NOW)
    html, md = render_html(rep), render_markdown(rep)
    assert "<img" not in html and "![" not in md
    assert "SASS retrieval — run report" in html and md.startswith("# SASS retrieval — run report")


def test_stage_entry_point(project: Path, monkeypatch):
    from pipelines import report as stage

    write_project(project)   # complete params (publish.dir: published): the stage validates them
    publish(project, metrics_json({"sass": 0.25}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("SASS_GIT_COMMIT", "feedface")
    assert stage.main(["--params", "params.yaml"]) == 0
    html = (project / "reports/run/index.html").read_text()
    assert "feedface" in html and '<td class="num neg"><strong>-0.0500</strong></td>' in html
    assert (project / "reports/run/report.md").is_file()


# ---- "Is the difference real?" -----------------------------------------------------------------


def boot(diff: float, half: float, pairs: int) -> dict:
    lo, hi = diff - half, diff + half
    return {"diff": diff, "lo": lo, "hi": hi, "pairs": pairs, "significant": lo > 0 or hi < 0}


def with_significance(metrics: dict) -> dict:
    """metrics.json as the evaluate stage writes it now: slices, pair counts, bootstrap results."""
    nan = float("nan")
    sig_all = {
        "popular": {"s0": boot(0.15, 0.02, 120), "s1": boot(0.14, 0.05, 40), "macro": boot(0.145, 0.03, 160)},
        "dssm_mixed": {"s0": boot(0.004, 0.01, 120), "s1": boot(-0.03, 0.01, 40), "macro": boot(-0.013, 0.02, 160)},
    }
    sig_tail = {
        "popular": {"s0": boot(0.05, 0.01, 30), "s1": {"diff": nan, "lo": nan, "hi": nan, "pairs": 0,
                                                       "significant": False},
                    "macro": boot(0.05, 0.01, 30)},
        "dssm_mixed": {"s0": boot(-0.02, 0.01, 30), "s1": {"diff": nan, "lo": nan, "hi": nan, "pairs": 0,
                                                          "significant": False},
                       "macro": boot(-0.02, 0.01, 30)},
    }
    return {**metrics,
            "slices": {"scenario_cold": metrics["rows"], "tail_truth": metrics["rows"]},
            "slice_pairs": {"all": {"s0": 120, "s1": 40}, "scenario_cold": {"s0": 12, "s1": 9},
                            "tail_truth": {"s0": 30, "s1": 0}},
            "slice_definition": {"cold_max": 5, "cold_min_other": 5, "tail_median_clicks": {"s0": 2.0, "s1": 0.0}},
            "significance": {"all": sig_all, "tail_truth": sig_tail, "scenario_cold": {}},
            "significance_config": {"reference": "sass", "metric": "ndcg@50", "n_boot": 2000, "level": 0.95,
                                    "seed": 0}}


def report_of(metrics: dict | None):
    from sass_retrieval.evaluate.report import RunReport

    return RunReport(generated="2024-03-09T06:00:00+00:00", metrics=metrics)


def section(blocks, title: str):
    from sass_retrieval.evaluate.report import Heading

    start = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == title and b.level == 2)
    end = next((i for i, b in enumerate(blocks) if i > start and isinstance(b, Heading) and b.level <= 2), len(blocks))
    return blocks[start:end]


def test_significance_section_blocks():
    from sass_retrieval.evaluate.report import Heading, Note, Table, Text, sections

    metrics = with_significance(metrics_json({"popular": 0.05, "dssm_mixed": 0.10, "sass": 0.20}))
    blocks = sections(report_of(metrics), {})
    titles = [b.text for b in blocks if isinstance(b, Heading) and b.level == 2]
    assert titles.index("Is the difference real?") == titles.index("Metrics") + 1
    sec = section(blocks, "Is the difference real?")
    texts = " ".join(b.text for b in sec if isinstance(b, Text | Note))
    assert "paired bootstrap" in texts and "sass − row" in texts and "95%" in texts
    assert "scenario_cold: users with fewer than 5 training interactions" in texts
    assert "tail_truth has no pair in s1" in texts and "no training click" in texts

    tables = [b for b in sec if isinstance(b, Table)]
    slice_tab = tables[0]
    assert slice_tab.header[:4] == ["slice", "s0", "s1", "total"]
    assert [[c.text for c in r[:4]] for r in slice_tab.rows] == [
        ["all", "120", "40", "160"], ["scenario_cold", "12", "9", "21"], ["tail_truth", "30", "0", "30"]]

    # one table per slice with results, in slice order; the empty scenario_cold result is skipped
    sub = [b.text for b in sec if isinstance(b, Heading) and b.level == 3]
    assert sub == ["Slice all (160 pairs)", "Slice tail_truth (30 pairs)"]
    all_tab, tail_tab = tables[1], tables[2]
    assert all_tab.header == ["row", "s0 (120 pairs)", "s1 (40 pairs)", "macro", "verdict (macro)"]
    rows = {r[0].text: r for r in all_tab.rows}
    assert list(rows) == ["popular", "dssm_mixed"]
    pop, mixed = rows["popular"], rows["dssm_mixed"]
    assert pop[1].text == "+0.1500 [+0.1300, +0.1700]" and pop[1].bold and pop[1].tone == "pos"
    assert pop[4].text == "sass better" and pop[4].tone == "pos"
    # dssm_mixed: s0 not significant, s1 significantly better than sass, macro not significant
    assert mixed[1].text == "+0.0040 [-0.0060, +0.0140]" and not mixed[1].bold and mixed[1].tone == "muted"
    assert mixed[2].text == "-0.0300 [-0.0400, -0.0200]" and mixed[2].bold and mixed[2].tone == "neg"
    assert mixed[4].text == "no measurable difference" and mixed[4].tone == "muted"
    tail = {r[0].text: r for r in tail_tab.rows}
    assert tail["popular"][2].text == "– (no pairs)"
    assert tail["dssm_mixed"][4].text == "dssm_mixed better"


def test_significance_section_for_older_metrics_and_without_metrics():
    from sass_retrieval.evaluate.report import Heading, Note, Table, sections

    older = metrics_json({"popular": 0.05, "sass": 0.20})  # no slices / significance keys
    sec = section(sections(report_of(older), {}), "Is the difference real?")
    assert any(isinstance(b, Note) and "No significance results" in b.text for b in sec)
    assert not any(isinstance(b, Table) for b in sec)
    none = sections(report_of(None), {})
    assert not any(isinstance(b, Heading) and b.text == "Is the difference real?" for b in none)


def test_significance_renders_in_both_formats(project: Path):
    write_json(project / "metrics/metrics.json",
               with_significance(metrics_json({"popular": 0.05, "dssm_mixed": 0.10, "sass": 0.20})))
    _, written = build(project)
    html = written["index.html"].read_text()
    md = written["report.md"].read_text()
    assert "Is the difference real?" in html and "## Is the difference real?" in md
    assert "+0.1500 [+0.1300, +0.1700]" in html and "**+0.1500 [+0.1300, +0.1700] ▲**" in md
    assert "no measurable difference" in md


def test_fmt_ci_and_verdict():
    from sass_retrieval.evaluate.report import fmt_ci, verdict

    assert fmt_ci(0.0123, 0.005, 0.019) == "+0.0123 [+0.0050, +0.0190]"
    assert fmt_ci(-0.00001, -0.00002, 0.0) == "+0.0000 [+0.0000, +0.0000]"  # never "-0.0000"
    assert fmt_ci(float("nan"), 0, 0) == "–" and fmt_ci(None, None, None) == "–"
    assert verdict(boot(0.1, 0.01, 5), "sass", "x") == ("sass better", "pos")
    assert verdict(boot(-0.1, 0.01, 5), "sass", "x") == ("x better", "neg")
    assert verdict(boot(0.0, 0.01, 5), "sass", "x") == ("no measurable difference", "muted")
    assert verdict(None, "sass", "x") == ("no pairs", "muted")
