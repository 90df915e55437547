"""The run report: its tables (DataFrames of cell text and CSS classes) and what each section says, read
from the rendered markdown; one smoke test per rendered format; the training curves come from DVCLive."""

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
    RunReport,
    context,
    draw_figures,
    gather,
    render_html,
    render_markdown,
    write_report,
)
from sass_retrieval.evaluate.report_format import md_table, styled, verdict
from sass_retrieval.evaluate.report_inputs import read_dvclive

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


def write_curve(model_dir: Path, series: str, values: list[float], column: str | None = None) -> None:
    """A DVCLive series as train.loop.LiveLog writes it: plots/metrics/<series>.tsv, columns step and its name."""
    path = model_dir / "dvclive/plots/metrics" / f"{series}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = column or series.rsplit("/", 1)[-1]
    path.write_text("\n".join([f"step\t{name}"] + [f"{i + 1}\t{v}" for i, v in enumerate(values)]) + "\n")


def losses(n: int = 60, start: float = 5.0) -> list[float]:
    return [start - 0.03 * i + 0.1 * (i % 3) for i in range(n)]


def write_training(model_dir: Path, phases=("select", "refit"), validation=(0.1, 0.15, 0.14)) -> None:
    """DVCLive's curves of one fine-tuned model: per phase every step's loss and the epoch means."""
    for phase in phases:
        write_curve(model_dir, f"per_step/loss-{phase}", losses(60 if phase == "select" else 40))
        write_curve(model_dir, f"loss-{phase}", [3.0, 2.5, 2.4])
    if validation:
        write_curve(model_dir, "val_ndcg@50", list(validation))


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
    write_curve(p / "models/pretrain", "per_step/loss", losses())
    write_curve(p / "models/pretrain", "loss", [4.0, 3.5, 3.2])
    write_json(p / "models/pretrain/report.json", {"epoch_loss": [4.0, 3.5, 3.2], "steps": 60, "seconds": 12.0})
    for row in ("sass", "dssm_mixed"):
        write_training(p / f"models/{row}")
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


# ---- what each section says --------------------------------------------------------------------


def blocks_of(p: Path, published: Path | None = None, figures: bool = False):
    """The report of a project folder: the RunReport, its context (tables) and its markdown."""
    rep = gather(p / "metrics/metrics.json", p / "reports/validation", p / "models", p / "data/features",
                 published, p / "reports/run", commit="abc1234", now=NOW)
    return rep, context(rep), render_markdown(rep, draw_figures(rep) if figures else {})


def section(md: str, title: str) -> str:
    """One level-2 section of the markdown, from its heading to the next one."""
    start = md.index(f"\n## {title}\n")
    end = md.find("\n## ", start + 1)
    return md[start: end if end >= 0 else len(md)]


def headings(md: str, level: int = 2) -> list[str]:
    return re.findall(rf"(?m)^{'#' * level} (.+)$", md)


def rows(t) -> dict[str, list[str]]:
    """First cell -> the line's texts."""
    return {line[0]: list(line) for line in t.text.itertuples(index=False)}


def css(t, first: str) -> list[str]:
    i = t.text.iloc[:, 0].tolist().index(first)
    return t.css.iloc[i].tolist()


def test_header_cards_and_data_docs_link(project: Path):
    rep, c, md = blocks_of(project)
    assert rep.problems == []
    assert md.startswith("# SASS retrieval — run report\n")
    facts = {label: (value, tone) for label, value, tone in c["facts"] + c["key"]}
    assert facts["Training window"] == ("2024-03-01 … 2024-03-05", "")
    assert facts["Test window"] == ("2024-03-06 … 2024-03-08", "")
    assert facts["Scenarios"][0] == "s0, s1" and facts["Code commit"][0] == "abc1234"
    assert facts["Generated"][0] == "2024-03-09 06:00:00 UTC"
    assert facts["sass macro NDCG@50"][0] == f"{row_result(0.20)['macro']['ndcg@50']:.4f}"
    assert facts["Data validation"] == ("passed", "pos")
    assert facts["vs published (NDCG@50)"] == ("no published run yet", "muted")
    assert "- **Data validation:** passed" in md
    assert ("> ✅ All expectation suites passed over 2024-03-01 … 2024-03-08 (2 days). "
            "[Great Expectations Data Docs](../validation/data_docs/index.html)") in section(md, "Data validation")
    assert rows(c["data"])["s0"] == ["s0", "yes", "5,000", "500", "250", "1,666", "120", "900"]
    assert "Pretraining pairs (entities seen in two or more scenarios): 77 user pairs, 88 item pairs." in md


def test_metrics_table_has_every_row_and_bold_best(project: Path):
    _, c, md = blocks_of(project)
    head, ks = c["headline"], c["ks"]
    assert head.column(("", "", "row")) == ["popular", "dssm_mixed", "sass (candidate)"]
    assert all("shade" in x for x in css(head, "sass (candidate)")) and not any("shade" in x for x in css(head, "popular"))
    assert list(dict.fromkeys(head.text.columns.get_level_values("group"))) == ["", "s0", "s1", "macro", "micro"]
    assert head.text.columns[1] == ("s0", "120 pairs · pool 900", "NDCG@50")
    best, worst = row_result(0.20), row_result(0.05)
    s0 = ("s0", "120 pairs · pool 900", "NDCG@50")
    assert head.text[s0].tolist()[2] == f"{best['per_scenario']['s0']['ndcg@50']:.4f}"
    assert head.text[s0].tolist()[0] == f"{worst['per_scenario']['s0']['ndcg@50']:.4f}"
    # sass (base 0.20) is best everywhere and bold; the worst row is never bold; numbers are right-aligned
    assert all(x.split()[:2] == ["num", "b"] for x in css(head, "sass (candidate)")[1:])
    assert not any("b" in x.split() for x in css(head, "popular"))
    # markdown: one header line with the group folded in (no pairs note), bold as **
    metrics = section(md, "Metrics")
    assert re.search(r"\| row +\| +s0 NDCG@50 \| +s0 HR@50 \|", metrics) and "micro HR@50 |" in metrics
    assert "pairs · pool" not in metrics
    assert f"**{best['macro']['hit_rate@50']:.4f}**" in metrics
    # the compact table covers NDCG/HitRate/Recall at 20/50/100, macro
    groups = list(dict.fromkeys(ks.text.columns.get_level_values("group")))
    assert groups == ["", "NDCG (macro)", "HitRate (macro)", "Recall (macro)"]
    assert ks.text.columns[-1] == ("Recall (macro)", "@100")
    assert rows(ks)["sass (candidate)"][-1] == f"{best['macro']['recall@100']:.4f}"
    assert "Recall (macro) @100 |" in metrics


def test_delta_against_published_run(project: Path):
    root = publish(project, metrics_json({"sass": 0.18}, test_end=20240307))
    rep, c, md = blocks_of(project, published=root)
    assert rep.published_version == "20240307-deadbeef00"
    assert ("vs published (NDCG@50)", "+0.0200", "pos") in c["key"]
    sec = section(md, "Change against the last published run")
    assert "version 20240307-deadbeef00 (test window 2024-03-06 … 2024-03-07)" in sec
    change = c["changes"]
    assert change.column(("", "scope")) == ["macro", "micro", "s0", "s1"]
    # this run's sass is 0.20-based, the published one 0.18-based: every delta is +0.0200
    deltas = [("NDCG@50", "Δ"), ("HitRate@50", "Δ")]
    assert all(x == "+0.0200" for d in deltas for x in change.column(d))
    assert all(x.split() == ["num", "pos", "b"] for d in deltas for x in change.css[d])
    assert "**+0.0200 ▲**" in sec
    # now a worse run: the delta is negative and marked so
    write_json(project / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.15}))
    _, c, md = blocks_of(project, published=root)
    assert all(x == "-0.0300" for d in deltas for x in c["changes"].column(d))
    assert all("neg" in x.split() for d in deltas for x in c["changes"].css[d])


def test_missing_inputs_render_notes(tmp_path: Path):
    """Nothing but metrics: no pretraining, no training, no validation, no published run."""
    write_json(tmp_path / "metrics/metrics.json", metrics_json({"popular": 0.05, "sass": 0.2}))
    rep, c, md = blocks_of(tmp_path, published=tmp_path / "published", figures=True)
    for expected in ("No published run yet", "No pretraining loss", "No fine-tuning loss",
                     "No validation summary", "No validation curve"):
        assert expected in md
    assert "Missing inputs" in headings(md) and len(c["problems"].text) == 3
    assert re.findall(r"\]\(images/(\w+)\.png\)", md) == ["ndcg_per_scenario"]  # the metrics chart stays


def test_nothing_at_all_does_not_crash(tmp_path: Path):
    rep, written = build(tmp_path)
    md = written["report.md"].read_text()
    assert "No metrics found" in md and "No published run yet" in md and "![" not in md
    assert written["index.html"].is_file()
    assert not list((tmp_path / "reports/run/images").glob("*.png"))


def test_failed_validation_is_shown_with_observed_values(project: Path):
    write_json(project / "reports/validation/summary.json", validation_summary(success=False))
    _, c, md = blocks_of(project)
    assert ("Data validation", "FAILED", "neg") in c["key"]
    assert "> ❌ Validation FAILED over 2024-03-01 … 2024-03-08 (2 days): 1 failed check(s)" in md
    assert rows(c["suites"])["interactions"][:2] == ["interactions", "FAILED"]
    assert css(c["suites"], "interactions")[1] == "b neg"
    line = rows(c["failures"])["interactions"]
    assert line[1:4] == ["day 20240303 (200 rows)", "is_click", "expect_column_values_to_be_in_set"]
    assert line[4] == "200 of 5,000 rows unexpected (4.00%), e.g. 7" and css(c["failures"], "interactions")[4] == "neg"
    assert "Failed checks:" in section(md, "Data validation")


def test_pretraining_skipped_and_empty_loss(project: Path):
    (project / "models/pretrain/dvclive/plots/metrics/per_step/loss.tsv").write_text("step\tloss\n")
    write_json(project / "models/pretrain/report.json", {"skipped": True, "seconds": 0.1})
    rep, c, md = blocks_of(project, figures=True)
    assert "Pretraining was skipped" in md
    assert "pretrain_loss" not in draw_figures(rep)
    assert rows(c["training"])["pretrain"][1] == "skipped"


def test_curves_come_from_dvclive_only(project: Path):
    """A loss CSV (the old per-step log) is not read; a resumed phase's redone steps count once (the last)."""
    pre = project / "models/pretrain"
    (pre / "dvclive").rename(project / "old-dvclive")
    (pre / "loss.csv").write_text("step,epoch,loss\n1,0,5.0\n2,0,4.0\n")
    rep, _, md = blocks_of(project, figures=True)
    assert "pretrain_loss" not in draw_figures(rep) and "No pretraining loss" in md
    write_curve(pre, "per_step/loss", [5.0, 4.0, 3.0])
    with (pre / "dvclive/plots/metrics/per_step/loss.tsv").open("a") as f:
        f.write("3\t2.5\n4\t2.0\n")        # resumed at step 3
    curve = read_dvclive(pre, "pretrain", "pretrain")
    assert curve["step"].tolist() == [1, 2, 3, 4] and curve["value"].tolist() == [5.0, 4.0, 2.5, 2.0]
    assert set(curve["series"]) == {"per_step/loss"}
    rep, _, _ = blocks_of(project)
    assert "pretrain_loss" in draw_figures(rep)


def test_dssm_single_per_scenario_curves(project: Path):
    d = project / "models/dssm_single"
    report = {}
    for s in SCENARIOS:
        write_training(d / s, validation=(0.05, 0.07))
        report[s] = {"validation": [{"epoch": 1, "val_ndcg@50": 0.05}, {"epoch": 2, "val_ndcg@50": 0.07}],
                     "best_epoch": 2, "best_val_ndcg@50": 0.07, "refit": {"epoch_loss": [2.0, 1.5]},
                     "prior_weights": {s: 0.04}}
    write_json(d / "report.json", {"row": "dssm_single", "report": report, "seconds": 20})
    rep, c, md = blocks_of(project)
    models = rep.curves[rep.curves["row"] == "dssm_single"].groupby("model")["series"].agg(set).to_dict()
    assert models == {f"dssm_single/{s}": {"per_step/loss-select", "per_step/loss-refit", "loss-select",
                                           "loss-refit", "val_ndcg@50"} for s in SCENARIOS}
    assert rows(c["training"])["dssm_single/s1"][:6] == ["dssm_single/s1", "2", "2", "0.0700", "s1 0.04", "1.5000"]
    figs = draw_figures(rep)
    assert {"finetune_loss", "validation_ndcg"} <= set(figs)
    assert "dashed: one model per scenario" in figs["validation_ndcg"].title


def test_ctnet_source_and_targets_each_get_a_training_row_and_a_kept_start_is_explained(project: Path):
    d = project / "models/ctnet"
    write_training(d / "source", phases=("refit",), validation=())
    write_training(d / "s1", phases=("refit",), validation=())
    fit = {"refit": {"epoch_loss": [2.0, 1.5]}}
    report = {"source_scenario": "s0", "targets": ["s1"], "adapters": True,
              "source": {"best_epoch": 3, "best_val_ndcg@50": 0.08, **fit},
              "s1": {"best_epoch": 0, "best_val_ndcg@50": 0.05, **fit}}
    write_json(d / "report.json", {"row": "ctnet", "report": report, "seconds": 12})
    rep, c, md = blocks_of(project)
    training = rows(c["training"])
    assert training["ctnet/source"][:3] == ["ctnet/source", "2", "3"]
    assert training["ctnet/s1"][:3] == ["ctnet/s1", "2", "0"]
    assert set(rep.curves.loc[rep.curves["row"] == "ctnet", "model"]) == {"ctnet/source", "ctnet/s1"}
    assert ("Best epoch 0 (ctnet/s1): early stopping kept the model as it started"
            in section(md, "Training"))


def test_without_figures_there_is_no_image(project: Path):
    rep, _, md = blocks_of(project)
    assert "Pretraining loss" in headings(md, 3) and "![" not in md
    assert "<img" not in render_html(rep)


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
    assert "Champion / challenger" in headings(md)     # the publish gate's preview
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
    # tables come from the Styler: grouped headers span their columns, cells carry their classes
    assert re.search(r'<th [^>]*colspan="2"[^>]*>s0</th>', html)
    assert re.search(r'<td [^>]*class="data row2 col\d+ num b shade"', html)
    assert html == render_html(rep, draw_figures(rep)), "the same inputs render the same page"


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
    assert "\n\n\n" not in md


def test_markdown_tables_bold_arrows_escapes_and_alignment():
    t = styled(["name", "value"], [["a|b", ("0.5", "num b pos")], [("<i>", "muted"), ("1,000", "num neg")],
                                   ["x", ("", "num b")]])
    lines = md_table(t).splitlines()
    assert re.fullmatch(r"\| name +\| +value \|", lines[0]) and re.fullmatch(r"\|:-+\|-+:\|", lines[1])
    assert re.fullmatch(r"\| a\\\|b +\| +\*\*0\.5 ▲\*\* \|", lines[2])
    assert re.fullmatch(r"\| &lt;i> +\| +1,000 ▼ \|", lines[3]), "numbers stay as written (no reformatting)"
    assert re.fullmatch(r"\| x +\| +\|", lines[4]), "an empty bold cell stays empty"


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


def test_significance_section():
    metrics = with_significance(metrics_json({"popular": 0.05, "dssm_mixed": 0.10, "sass": 0.20}))
    rep = report_of(metrics)
    md = render_markdown(rep)
    titles = headings(md)
    assert titles.index("Is the difference real?") == titles.index("Metrics") + 1
    sec = section(md, "Is the difference real?")
    assert "paired bootstrap" in sec and "sass − row" in sec and "95%" in sec
    assert "scenario_cold: users with fewer than 5 training interactions" in sec
    assert "tail_truth has no pair in s1" in sec and "no training click" in sec

    sig = context(rep)["significance"]
    slice_tab = sig["slice_table"]
    assert list(slice_tab.text.columns[:4]) == ["slice", "s0", "s1", "total"]
    assert slice_tab.text.iloc[:, :4].values.tolist() == [
        ["all", "120", "40", "160"], ["scenario_cold", "12", "9", "21"], ["tail_truth", "30", "0", "30"]]
    assert "muted" in css(slice_tab, "tail_truth")[2]

    # one table per slice with results, in slice order; the empty scenario_cold result is skipped
    assert [title for title, _ in sig["slices"]] == ["Slice all (160 pairs)", "Slice tail_truth (30 pairs)"]
    assert headings(sec, 3) == ["Slice all (160 pairs)", "Slice tail_truth (30 pairs)"]
    (_, all_tab), (_, tail_tab) = sig["slices"]
    assert list(all_tab.text.columns) == ["row", "s0 (120 pairs)", "s1 (40 pairs)", "macro", "verdict (macro)"]
    table = rows(all_tab)
    assert list(table) == ["popular", "dssm_mixed"]
    assert table["popular"][1] == "+0.1500 [+0.1300, +0.1700]" and css(all_tab, "popular")[1] == "num pos b"
    assert table["popular"][4] == "sass better" and css(all_tab, "popular")[4] == "pos b"
    # dssm_mixed: s0 not significant, s1 significantly better than sass, macro not significant
    assert table["dssm_mixed"][1] == "+0.0040 [-0.0060, +0.0140]" and css(all_tab, "dssm_mixed")[1] == "num muted"
    assert table["dssm_mixed"][2] == "-0.0300 [-0.0400, -0.0200]" and css(all_tab, "dssm_mixed")[2] == "num neg b"
    assert table["dssm_mixed"][4] == "no measurable difference" and css(all_tab, "dssm_mixed")[4] == "muted"
    assert "**+0.1500 [+0.1300, +0.1700] ▲**" in sec and "**-0.0300 [-0.0400, -0.0200] ▼**" in sec
    tail = rows(tail_tab)
    assert tail["popular"][2] == "– (no pairs)"
    assert tail["dssm_mixed"][4] == "dssm_mixed better"


def test_significance_section_for_older_metrics_and_without_metrics():
    older = metrics_json({"popular": 0.05, "sass": 0.20})  # no slices / significance keys
    sec = section(render_markdown(report_of(older)), "Is the difference real?")
    assert "No significance results" in sec and "| row" not in sec
    assert "Is the difference real?" not in headings(render_markdown(report_of(None)))


def test_verdict():   # the interval's text: tests/evaluate/test_significance.py (format_ci)
    assert verdict(boot(0.1, 0.01, 5), "sass", "x") == ("sass better", "pos")
    assert verdict(boot(-0.1, 0.01, 5), "sass", "x") == ("x better", "neg")
    assert verdict(boot(0.0, 0.01, 5), "sass", "x") == ("no measurable difference", "muted")
    assert verdict(None, "sass", "x") == ("no pairs", "muted")


def test_champion_challenger_section_shows_the_gate_decision_and_margins() -> None:
    rep = RunReport(generated="2026-12-01T00:00:00+00:00")
    assert "Champion / challenger" not in headings(render_markdown(rep))
    rep.gate = {"publish": True, "winner": "dssm_mixed", "reason": "dssm_mixed leads the published 0.1000 by ...",
                "published": 0.1, "scores": {"sass": 0.11, "dssm_mixed": 0.12},
                "margins": {"dssm_mixed-published": {"diff": 0.02, "lo": 0.01, "hi": 0.03, "significant": True},
                            "sass-dssm_mixed": {"diff": -0.01, "lo": -0.03, "hi": 0.01, "significant": False}}}
    c = context(rep)
    assert "Publish gate: dssm_mixed will be published. dssm_mixed leads" in section(render_markdown(rep),
                                                                                     "Champion / challenger")
    assert c["gate"].column("row") == ["sass", "dssm_mixed", "published (in service)"]
    assert c["gate"].column("macro NDCG@50 (this run's pairs)") == ["0.1100", "0.1200", "0.1000"]
    margins = c["gate_margins"].text.values.tolist()
    assert margins[0] == ["dssm_mixed − published", "+0.0200 [+0.0100, +0.0300]", "significant"]
    assert margins[1][2] == "no measurable difference"


def test_skipped_scenarios_are_listed_with_why_and_what_serves_them() -> None:
    m = metrics_json({"popular": 0.2, "sass": 0.3})
    m["skipped"] = {"s2": {"scenario": "s2", "reason": "12 training rows in the window, fewer than "
                           "scenarios.min_scenario_rows (100)", "rows": 12, "min_scenario_rows": 100,
                           "served_by": "other", "eval_pairs": 7}}
    rep = RunReport(generated=NOW.isoformat(), metrics=m, stats={"s2": {"rows": 12, "reported": False,
                                                                        "skipped": True}})
    assert rep.skipped["s2"]["served_by"] == "other" and rep.scenarios == SCENARIOS
    c, md = context(rep), render_markdown(rep)
    assert ("Skipped today", "s2 → other", "neg") in c["facts"]
    assert "Scenarios skipped today" in headings(md)
    assert c["skipped"].text.values.tolist() == [["s2", m["skipped"]["s2"]["reason"], "12", "100", "other", "7"]]
    assert dict(zip(c["data"].column("scenario"), c["data"].column("reported"), strict=True)) == {
        "s0": "yes", "s1": "yes", "s2": "skipped"}
    assert "reported scenarios: s0, s1; skipped today and not in the macro: s2" in section(md, "Metrics")
    # a run without skipped scenarios has no such section
    plain = render_markdown(RunReport(generated=NOW.isoformat(), metrics=metrics_json({"sass": 0.3})))
    assert "Scenarios skipped today" not in headings(plain)


def test_objective_tables_show_every_row_and_name_the_scenarios_left_out() -> None:
    m = metrics_json({"popular": 0.2, "sass": 0.3, "sass_mt": 0.31})
    results = {r: row_result(b) for r, b in (("popular", 0.1), ("sass", 0.2), ("sass_mt", 0.25),
                                             ("sass_mt (long_view only)", 0.27))}
    for r in results.values():
        r["per_scenario"].pop("s1")
    m["objectives"] = {"like": {"scenarios": [], "pairs": {}, "too_few": {"s0": 3, "s1": 1}, "rows": {}},
                       "long_view": {"scenarios": ["s0"], "pairs": {"s0": 140}, "too_few": {"s1": 12},
                                     "rows": results}}   # sorted by name, as metrics.json stores them
    rep = RunReport(generated=NOW.isoformat(), metrics=m)
    md = render_markdown(rep)
    assert [h for h in headings(md, 3) if h.startswith("Ground truth")] == [
        "Ground truth: long_view", "Ground truth: like"]      # the schema's order
    table, too_few = context(rep)["objectives"]["long_view"]
    assert too_few == "s1 (12)" and "evaluate.objective_min_pairs): s1 (12)" in md
    assert context(rep)["objectives"]["like"][0] is None
    assert list(table.text.columns) == ["row", "s0 (140 pairs)", "macro"]
    assert set(table.column("row")) == {"popular", "sass (candidate)", "sass_mt", "sass_mt (long_view only)"}
    assert [r for r in table.column("row") if "b" in css(table, r)[-1].split()] == ["sass_mt (long_view only)"]
    # without the multi-task row there is no such section
    plain = render_markdown(RunReport(generated=NOW.isoformat(), metrics=metrics_json({"sass": 0.3})))
    assert not [h for h in headings(plain) if h.startswith("Other objectives")]


def test_prior_evidence_table_says_why_each_weight(project: Path):
    """Each scenario's chosen prior weight beside the held-out gain behind it, and the best weight the day saw."""
    report = {"validation": [{"epoch": 1, "val_ndcg@50": 0.05}], "best_epoch": 1, "best_val_ndcg@50": 0.05,
              "refit": {"epoch_loss": [1.0]}, "prior_weights": {"s0": 0.04, "s1": 0.0},
              "prior_evidence": {"s0": {"w": 0.04, "gain": 0.0129, "se": 0.0065, "best_w": 0.08, "best_gain": 0.0151,
                                        "best_se": 0.0068, "margin_z": 1.96},
                                 "s1": {"w": 0.0, "gain": 0.0, "se": 0.0, "best_w": 0.04, "best_gain": 0.0031,
                                        "best_se": None, "margin_z": 1.96}}}
    write_json(project / "models/sass/report.json", {"row": "sass", "report": report, "seconds": 5})
    _, c, md = blocks_of(project)
    table = {(line[0], line[1]): list(line[2:]) for line in c["prior"].text.itertuples(index=False)}
    assert table[("sass", "s0")] == ["0.04", "+0.0129 ± 0.0065", "0.08", "+0.0151 ± 0.0068"]
    assert table[("sass", "s1")] == ["0", "+0.0000", "0.04", "+0.0031"], "no standard error: no ±"
    assert "exceeds 1.96 standard errors" in section(md, "Training")
    assert "best on the day its gain" in section(md, "Training")


def test_no_prior_evidence_no_table(project: Path):
    _, c, md = blocks_of(project)
    assert c["prior"] is None and "Popularity prior" not in md
