"""The run report: the view model (blocks) per section, and one smoke test per rendered format."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
from support import write_project

from sass_retrieval.evaluate.report import (
    Cards,
    Heading,
    Image,
    Note,
    RunReport,
    Table,
    Text,
    draw_figures,
    gather,
    render_html,
    render_markdown,
    sections,
    verdict,
    write_report,
)

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


# ---- the view model: what each section says, as blocks ------------------------------------------


def blocks_of(p: Path, published: Path | None = None, figures: bool = False):
    rep = gather(p / "metrics/metrics.json", p / "reports/validation", p / "models", p / "data/features",
                 published, p / "reports/run", commit="abc1234", now=NOW)
    return rep, sections(rep, draw_figures(rep) if figures else {})


def notes(blocks) -> list[Note]:
    return [b for b in blocks if isinstance(b, Note)]


def note_texts(blocks) -> str:
    return " ".join(b.text for b in notes(blocks))


def cards(blocks) -> dict[str, tuple[str, str | None]]:
    return {label: (value, tone) for b in blocks if isinstance(b, Cards) for label, value, tone in b.items}


def tables(blocks) -> list[Table]:
    return [b for b in blocks if isinstance(b, Table)]


def by_first_cell(table: Table) -> dict[str, list]:
    return {r[0].text: r for r in table.rows}


def test_header_cards_and_data_docs_link(project: Path):
    rep, blocks = blocks_of(project)
    assert rep.problems == []
    assert blocks[0] == Heading("SASS retrieval — run report", 1)
    facts = cards(blocks)
    assert facts["Training window"] == ("2024-03-01 … 2024-03-05", None)
    assert facts["Test window"] == ("2024-03-06 … 2024-03-08", None)
    assert facts["Scenarios"][0] == "s0, s1" and facts["Code commit"][0] == "abc1234"
    assert facts["Generated"][0] == "2024-03-09 06:00:00 UTC"
    assert facts["sass macro NDCG@50"][0] == f"{row_result(0.20)['macro']['ndcg@50']:.4f}"
    assert facts["Data validation"] == ("passed", "pos")
    assert facts["vs published (NDCG@50)"] == ("no published run yet", "muted")
    ok = notes(section(blocks, "Data validation"))[0]
    assert ok.kind == "ok" and ok.link == ("Great Expectations Data Docs", "../validation/data_docs/index.html")
    data = by_first_cell(tables(section(blocks, "Data"))[0])
    assert [c.text for c in data["s0"]] == ["s0", "yes", "5,000", "500", "250", "1,666", "120", "900"]


def test_metrics_table_has_every_row_and_bold_best(project: Path):
    _, blocks = blocks_of(project)
    head, ks = tables(section(blocks, "Metrics"))
    assert [r[0].text for r in head.rows] == ["popular", "dssm_mixed", "sass (candidate)"]
    assert head.highlight == {2}
    assert [g for g, _ in head.groups] == ["", "s0", "s1", "macro", "micro"]
    assert head.group_notes[1] == "120 pairs · pool 900"
    cols = head.flat_header()
    assert cols[:3] == ["row", "s0 NDCG@50", "s0 HR@50"] and cols[-1] == "micro HR@50"
    assert head.numeric_columns() == [False] + [True] * (len(cols) - 1)
    best, worst = row_result(0.20), row_result(0.05)
    # sass (base 0.20) is best everywhere and bold; the worst row is never bold
    s0_ndcg = head.rows[2][cols.index("s0 NDCG@50")]
    assert s0_ndcg.text == f"{best['per_scenario']['s0']['ndcg@50']:.4f}" and s0_ndcg.bold and s0_ndcg.num
    assert head.rows[2][cols.index("macro HR@50")].text == f"{best['macro']['hit_rate@50']:.4f}"
    assert all(c.bold for c in head.rows[2][1:]) and not any(c.bold for c in head.rows[0][1:])
    assert head.rows[0][cols.index("s0 NDCG@50")].text == f"{worst['per_scenario']['s0']['ndcg@50']:.4f}"
    # the compact table covers NDCG/HitRate/Recall at 20/50/100, macro
    assert [g for g, _ in ks.groups] == ["", "NDCG (macro)", "HitRate (macro)", "Recall (macro)"]
    kcols = ks.flat_header()
    assert kcols[-1] == "Recall (macro) @100"
    assert ks.rows[2][-1].text == f"{best['macro']['recall@100']:.4f}" and ks.rows[2][-1].bold


def test_delta_against_published_run(project: Path):
    root = publish(project, metrics_json({"sass": 0.18}, test_end=20240307))
    rep, blocks = blocks_of(project, published=root)
    assert rep.published_version == "20240307-deadbeef00"
    assert cards(blocks)["vs published (NDCG@50)"] == ("+0.0200", "pos")
    sec = section(blocks, "Change against the last published run")
    assert "version 20240307-deadbeef00 (test window 2024-03-06 … 2024-03-07)" in sec[1].text
    change = tables(sec)[0]
    assert [r[0].text for r in change.rows] == ["macro", "micro", "s0", "s1"]
    # this run's sass is 0.20-based, the published one 0.18-based: every delta is +0.0200
    deltas = [r[i] for r in change.rows for i in (3, 6)]
    assert all(c.text == "+0.0200" and c.tone == "pos" and c.bold for c in deltas)
    # now a worse run: the delta is negative and marked so
    write_json(project / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.15}))
    _, blocks = blocks_of(project, published=root)
    change = tables(section(blocks, "Change against the last published run"))[0]
    assert all(r[i].text == "-0.0300" and r[i].tone == "neg" for r in change.rows for i in (3, 6))


def test_missing_inputs_render_notes(tmp_path: Path):
    """Nothing but metrics: no pretraining, no training, no validation, no published run."""
    write_json(tmp_path / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.2}))
    rep, blocks = blocks_of(tmp_path, published=tmp_path / "published", figures=True)
    text = note_texts(blocks)
    for expected in ("No published run yet", "No pretraining loss", "No fine-tuning loss",
                     "No validation summary", "No validation curve"):
        assert expected in text
    assert Heading("Missing inputs") in blocks and len(tables(section(blocks, "Missing inputs"))[0].rows) == 3
    assert [b.name for b in blocks if isinstance(b, Image)] == ["ndcg_per_scenario"]  # the metrics chart stays


def test_nothing_at_all_does_not_crash(tmp_path: Path):
    rep, written = build(tmp_path)
    _, blocks = blocks_of(tmp_path)
    assert "No metrics found" in note_texts(blocks) and "No published run yet" in note_texts(blocks)
    assert not any(isinstance(b, Image) for b in blocks)
    assert written["index.html"].is_file() and written["report.md"].is_file()
    assert not list((tmp_path / "reports/run/images").glob("*.png"))


def test_failed_validation_is_shown_with_observed_values(project: Path):
    write_json(project / "reports/validation/summary.json", validation_summary(success=False))
    _, blocks = blocks_of(project)
    assert cards(blocks)["Data validation"] == ("FAILED", "neg")
    sec = section(blocks, "Data validation")
    assert notes(sec)[0].kind == "fail" and notes(sec)[0].text.startswith("Validation FAILED")
    suites, failures = tables(sec)
    assert [c.text for c in by_first_cell(suites)["interactions"][:2]] == ["interactions", "FAILED"]
    row = failures.rows[0]
    assert [c.text for c in row[:4]] == ["interactions", "day 20240303 (200 rows)", "is_click",
                                         "expect_column_values_to_be_in_set"]
    assert row[4].text == "200 of 5,000 rows unexpected (4.00%), e.g. 7" and row[4].tone == "neg"


def test_pretraining_skipped_and_empty_loss(project: Path):
    (project / "models/pretrain/loss.csv").write_text("step,epoch,loss\n")
    write_json(project / "models/pretrain/report.json", {"skipped": True, "seconds": 0.1})
    rep, blocks = blocks_of(project, figures=True)
    assert "Pretraining was skipped" in note_texts(blocks)
    assert "pretrain_loss" not in draw_figures(rep)
    assert by_first_cell(tables(section(blocks, "Training"))[0])["pretrain"][1].text == "skipped"


def test_dssm_single_per_scenario_curves(project: Path):
    d = project / "models/dssm_single"
    report = {}
    for s in SCENARIOS:
        write_loss(d / s / "loss-select.csv")
        write_loss(d / s / "loss-refit.csv", n=30)
        report[s] = {"validation": [{"epoch": 1, "val_ndcg@50": 0.05}, {"epoch": 2, "val_ndcg@50": 0.07}],
                     "best_epoch": 2, "best_val_ndcg@50": 0.07, "refit": {"epoch_loss": [2.0, 1.5]},
                     "prior_weights": {s: 0.04}}
    write_json(d / "report.json", {"row": "dssm_single", "report": report, "seconds": 20})
    rep, blocks = blocks_of(project)
    assert set(rep.finetune_loss["dssm_single"]) == {"dssm_single/s0", "dssm_single/s1"}
    assert {"dssm_single/s0", "dssm_single/s1"} <= set(rep.validation_curves)
    training = by_first_cell(tables(section(blocks, "Training"))[0])
    assert [c.text for c in training["dssm_single/s1"][:6]] == ["dssm_single/s1", "2", "2", "0.0700", "s1 0.04",
                                                                "1.5000"]


def test_ctnet_source_and_targets_each_get_a_training_row_and_a_kept_start_is_explained(project: Path):
    d = project / "models/ctnet"
    write_loss(d / "source" / "loss-refit.csv")
    write_loss(d / "s1" / "loss-refit.csv")
    fit = {"refit": {"epoch_loss": [2.0, 1.5]}}
    report = {"source_scenario": "s0", "targets": ["s1"], "adapters": True,
              "source": {"best_epoch": 3, "best_val_ndcg@50": 0.08, **fit},
              "s1": {"best_epoch": 0, "best_val_ndcg@50": 0.05, **fit}}
    write_json(d / "report.json", {"row": "ctnet", "report": report, "seconds": 12})
    rep, blocks = blocks_of(project)
    training = by_first_cell(tables(section(blocks, "Training"))[0])
    assert [c.text for c in training["ctnet/source"][:3]] == ["ctnet/source", "2", "3"]
    assert [c.text for c in training["ctnet/s1"][:3]] == ["ctnet/s1", "2", "0"]
    assert set(rep.finetune_loss["ctnet"]) == {"ctnet/source", "ctnet/s1"}
    assert "Best epoch 0 (ctnet/s1): early stopping kept the model as it started" in note_texts(section(blocks, "Training"))


def test_without_figures_there_is_no_image_block(project: Path):
    rep, blocks = blocks_of(project)
    assert not any(isinstance(b, Image) for b in blocks)
    assert "Pretraining loss" in [b.text for b in blocks if isinstance(b, Heading)]
    assert "<img" not in render_html(rep) and "![" not in render_markdown(rep)


def test_stage_entry_point(project: Path, monkeypatch):
    from pipelines import report as stage

    write_project(project)   # complete params (publish.dir: published): the stage validates them
    publish(project, metrics_json({"sass": 0.25}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("SASS_GIT_COMMIT", "feedface")
    assert stage.main(["--params", "params.yaml"]) == 0
    assert "feedface" in (project / "reports/run/index.html").read_text()
    md = (project / "reports/run/report.md").read_text()
    assert "- **Code commit:** feedface" in md and "-0.0500" in md
    assert len(list((project / "reports/run/images").glob("*.png"))) == 4


# ---- rendering: one smoke test per format -------------------------------------------------------


SECTION_HEADINGS = ["SASS retrieval — run report", "Data validation", "Data", "Training", "Metrics",
                    "Is the difference real?", "Change against the last published run"]


@pytest.fixture
def rendered(project: Path):
    """Every section, with user strings that are HTML: a scenario named <b> and a commit with a script tag."""
    metrics = with_significance(metrics_json({"popular": 0.05, "dssm_mixed": 0.10, "sass": 0.20}))
    write_json(project / "metrics/metrics.json", json.loads(json.dumps(metrics).replace('"s1"', '"<b>"')))
    root = publish(project, metrics_json({"sass": 0.18}, test_end=20240307))
    rep = gather(project / "metrics/metrics.json", project / "reports/validation", project / "models",
                 project / "data/features", root, project / "reports/run", commit="<script>x</script>", now=NOW)
    assert "<b>" in rep.scenarios
    written = write_report(rep, project / "reports/run")
    return rep, written


def test_html_renders_self_contained_and_escaped(rendered):
    rep, written = rendered
    html = written["index.html"].read_text()
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert "<script" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    for title in SECTION_HEADINGS:
        assert f">{title}</h" in html
    # no external resource of any kind: no http(s) src/href, no external stylesheet or script
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html
    # every figure is embedded and decodes to a PNG
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4 and all(base64.b64decode(b).startswith(PNG_MAGIC) for b in images)


def test_markdown_renders_escaped_with_image_links(rendered):
    rep, written = rendered
    md = written["report.md"].read_text()
    assert md.startswith("# SASS retrieval — run report\n")
    assert "<b>" not in md and "&lt;b>" in md and "<script" not in md
    for title in SECTION_HEADINGS[1:]:
        assert f"\n## {title}\n" in md
    for name in ("pretrain_loss", "finetune_loss", "validation_ndcg", "ndcg_per_scenario"):
        assert written[name].read_bytes().startswith(PNG_MAGIC)
        assert f"](images/{name}.png)" in md


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
    return RunReport(generated="2024-03-09T06:00:00+00:00", metrics=metrics)


def section(blocks, title: str):
    start = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == title and b.level == 2)
    end = next((i for i, b in enumerate(blocks) if i > start and isinstance(b, Heading) and b.level <= 2), len(blocks))
    return blocks[start:end]


def test_significance_section_blocks():
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
    older = metrics_json({"popular": 0.05, "sass": 0.20})  # no slices / significance keys
    sec = section(sections(report_of(older), {}), "Is the difference real?")
    assert any(isinstance(b, Note) and "No significance results" in b.text for b in sec)
    assert not any(isinstance(b, Table) for b in sec)
    none = sections(report_of(None), {})
    assert not any(isinstance(b, Heading) and b.text == "Is the difference real?" for b in none)


def test_verdict():   # the interval's text: tests/evaluate/test_significance.py (format_ci)
    assert verdict(boot(0.1, 0.01, 5), "sass", "x") == ("sass better", "pos")
    assert verdict(boot(-0.1, 0.01, 5), "sass", "x") == ("x better", "neg")
    assert verdict(boot(0.0, 0.01, 5), "sass", "x") == ("no measurable difference", "muted")
    assert verdict(None, "sass", "x") == ("no pairs", "muted")


def test_champion_challenger_section_shows_the_gate_decision_and_margins() -> None:
    from sass_retrieval.evaluate.report import RunReport, sections

    rep = RunReport(generated="2026-12-01T00:00:00+00:00")
    assert not [b for b in sections(rep, {}) if getattr(b, "text", "") == "Champion / challenger"]
    rep.gate = {"publish": True, "winner": "dssm_mixed", "reason": "dssm_mixed leads the published 0.1000 by ...",
                "published": 0.1, "scores": {"sass": 0.11, "dssm_mixed": 0.12},
                "margins": {"dssm_mixed-published": {"diff": 0.02, "lo": 0.01, "hi": 0.03, "significant": True},
                            "sass-dssm_mixed": {"diff": -0.01, "lo": -0.03, "hi": 0.01, "significant": False}}}
    blocks = sections(rep, {})
    i = next(i for i, b in enumerate(blocks) if getattr(b, "text", "") == "Champion / challenger")
    assert "dssm_mixed will be published" in blocks[i + 1].text
    scores, margins = blocks[i + 2], blocks[i + 3]
    assert [r[0].text for r in scores.rows] == ["sass", "dssm_mixed", "published (in service)"]
    assert margins.rows[0][1].text == "+0.0200 [+0.0100, +0.0300]" and margins.rows[0][2].text == "significant"
    assert margins.rows[1][2].text == "no measurable difference"


def test_skipped_scenarios_are_listed_with_why_and_what_serves_them() -> None:
    m = metrics_json({"popular": 0.2, "sass": 0.3})
    m["skipped"] = {"s2": {"scenario": "s2", "reason": "12 training rows in the window, fewer than "
                           "scenarios.min_scenario_rows (100)", "rows": 12, "min_scenario_rows": 100,
                           "served_by": "other", "eval_pairs": 7}}
    rep = RunReport(generated=NOW.isoformat(), metrics=m, stats={"s2": {"rows": 12, "reported": False,
                                                                        "skipped": True}})
    assert rep.skipped["s2"]["served_by"] == "other" and rep.scenarios == SCENARIOS
    blocks = sections(rep, {})
    header = [c for b in blocks if isinstance(b, Cards) for c in b.items]
    assert ("Skipped today", "s2 → other", "neg") in header
    i = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Scenarios skipped today")
    table = next(b for b in blocks[i:] if isinstance(b, Table))
    assert [[c.text for c in r] for r in table.rows] == [
        ["s2", m["skipped"]["s2"]["reason"], "12", "100", "other", "7"]]
    data = next(b for b in blocks if isinstance(b, Table) and b.header[:2] == ["scenario", "reported"])
    assert {r[0].text: r[1].text for r in data.rows} == {"s0": "yes", "s1": "yes", "s2": "skipped"}
    metrics_text = next(b.text for b in blocks if isinstance(b, Text) and "macro (mean over" in b.text)
    assert "reported scenarios: s0, s1; skipped today and not in the macro: s2" in metrics_text
    # a run without skipped scenarios has no such section
    plain = sections(RunReport(generated=NOW.isoformat(), metrics=metrics_json({"sass": 0.3})), {})
    assert not [b for b in plain if isinstance(b, Heading) and b.text == "Scenarios skipped today"]


def test_objective_tables_show_every_row_and_name_the_scenarios_left_out() -> None:
    m = metrics_json({"popular": 0.2, "sass": 0.3, "sass_mt": 0.31})
    rows = {r: row_result(b) for r, b in (("popular", 0.1), ("sass", 0.2), ("sass_mt", 0.25),
                                          ("sass_mt (long_view only)", 0.27))}
    for r in rows.values():
        r["per_scenario"].pop("s1")
    m["objectives"] = {"like": {"scenarios": [], "pairs": {}, "too_few": {"s0": 3, "s1": 1}, "rows": {}},
                       "long_view": {"scenarios": ["s0"], "pairs": {"s0": 140}, "too_few": {"s1": 12},
                                     "rows": rows}}   # sorted by name, as metrics.json stores them
    blocks = sections(RunReport(generated=NOW.isoformat(), metrics=m), {})
    heads = [b.text for b in blocks if isinstance(b, Heading) and b.text.startswith("Ground truth")]
    assert heads == ["Ground truth: long_view", "Ground truth: like"]      # the schema's order
    i = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Ground truth: long_view")
    note, table = blocks[i + 1], blocks[i + 2]
    assert "s1 (12)" in note.text
    assert table.header == ["row", "s0 (140 pairs)", "macro"]
    names = [r[0].text for r in table.rows]
    assert set(names) == {"popular", "sass (candidate)", "sass_mt", "sass_mt (long_view only)"}
    best = [r for r in table.rows if r[-1].bold]
    assert [r[0].text for r in best] == ["sass_mt (long_view only)"]
    # without the multi-task row there is no such section
    plain = sections(RunReport(generated=NOW.isoformat(), metrics=metrics_json({"sass": 0.3})), {})
    assert not [b for b in plain if isinstance(b, Heading) and b.text.startswith("Other objectives")]


def test_prior_evidence_table_says_why_each_weight(project: Path):
    """Each scenario's chosen prior weight beside the held-out gain behind it, and the best weight the day saw."""
    report = {"validation": [{"epoch": 1, "val_ndcg@50": 0.05}], "best_epoch": 1, "best_val_ndcg@50": 0.05,
              "refit": {"epoch_loss": [1.0]}, "prior_weights": {"s0": 0.04, "s1": 0.0},
              "prior_evidence": {"s0": {"w": 0.04, "gain": 0.0129, "se": 0.0065, "best_w": 0.08, "best_gain": 0.0151,
                                        "best_se": 0.0068, "margin_z": 1.96},
                                 "s1": {"w": 0.0, "gain": 0.0, "se": 0.0, "best_w": 0.04, "best_gain": 0.0031,
                                        "best_se": None, "margin_z": 1.96}}}
    write_json(project / "models/sass/report.json", {"row": "sass", "report": report, "seconds": 5})
    _, blocks = blocks_of(project)
    training = section(blocks, "Training")
    table = next(t for t in tables(training) if t.header[:2] == ["model", "scenario"])
    rows = {(r[0].text, r[1].text): [c.text for c in r[2:]] for r in table.rows}
    assert rows[("sass", "s0")] == ["0.04", "+0.0129 ± 0.0065", "0.08", "+0.0151 ± 0.0068"]
    assert rows[("sass", "s1")] == ["0", "+0.0000", "0.04", "+0.0031"], "no standard error: no ±"
    assert "exceeds 1.96 standard errors" in note_texts(training)


def test_no_prior_evidence_no_table(project: Path):
    _, blocks = blocks_of(project)
    assert not any(t.header[:2] == ["model", "scenario"] for t in tables(section(blocks, "Training")))
