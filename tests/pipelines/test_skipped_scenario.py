"""Scenarios that come and go: a declared scenario with too few training rows on the run's window.

Its split and index stages succeed with a marker, evaluation lists it as skipped (outside the macro), the
report says why and what serves it, publishing goes on and records the fallback, and routing sends its
requests to the 'other' index (or, without 'other', to the largest scenario's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from support import cwd, write_project

from pipelines import evaluate, index, ingest, pretrain, publish, report, shards, split, train, validate
from sass_retrieval.data.store import DayWriter, read_interactions
from sass_retrieval.index.routing import resolve_index
from sass_retrieval.run import load_run

NAMES = ["s0", "s1", "s2", "other"]


def thin_scenario(root: Path, scenario: str, keep_per_day: int) -> None:
    """Keep only ``keep_per_day`` rows of ``scenario`` on each training day of the run's window."""
    store = root / "data" / "store"
    writer = DayWriter(store)
    for d in load_run(root / "params.yaml").window.train_dates:
        df = read_interactions(store, d, d)
        mine = df[df["scenario"] == scenario]
        writer.write(pd.concat([df[df["scenario"] != scenario], mine.head(keep_per_day)]), source=f"thinned {d}")
    writer.commit()


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny daily run where s2 has 3 x 4 = 12 training rows (min_scenario_rows 100) and 'other' is listed."""
    root = write_project(tmp_path_factory.mktemp("skipped") / "p", scenarios__names=NAMES, pretrain__enabled=False)
    with cwd(root):
        assert ingest.main([]) == 0
        thin_scenario(root, "s2", 4)
        assert validate.main([]) == 0
        for s in NAMES:
            assert split.main(["--scenario", s]) == 0
        assert split.main(["--pairs"]) == 0
        assert shards.main([]) == 0
        assert pretrain.main(["--no-progress"]) == 0
        for row in ("sass", "dssm_mixed"):
            assert train.main(["--row", row, "--no-progress"]) == 0
        for s in NAMES:
            assert index.main(["--scenario", s]) == 0     # index@s2 used to exit "has no split output"
        assert evaluate.main([]) == 0
        assert report.main([]) == 0
        assert publish.main([]) == 0
    return root


@pytest.mark.slow  # the whole daily run on the tiny project
def test_split_and_index_of_the_skipped_scenario_write_markers(day: Path) -> None:
    expected = {"scenario": "s2", "rows": 12, "min_scenario_rows": 100, "served_by": "other",
                "reason": "12 training rows in the window, fewer than scenarios.min_scenario_rows (100)"}
    assert sorted(p.name for p in (day / "data/features/s2").iterdir()) == ["skipped.json", "stats.json"]
    assert json.loads((day / "data/features/s2/skipped.json").read_text()) == expected
    assert json.loads((day / "data/shards/meta.json").read_text())["scenarios"] == ["s0", "s1", "other"]
    for row in ("sass", "dssm_mixed"):
        assert sorted(p.name for p in (day / "indexes" / row / "s2").iterdir()) == ["skipped.json"]
        assert json.loads((day / "indexes" / row / "s2" / "skipped.json").read_text()) == expected
        assert (day / "indexes" / row / "other" / "index.faiss").is_file()


@pytest.mark.slow  # the whole daily run on the tiny project
def test_evaluation_reports_it_as_skipped_outside_the_macro(day: Path) -> None:
    m = json.loads((day / "metrics/metrics.json").read_text())
    assert m["reported"] == m["macro_scenarios"] == ["s0", "s1"]
    assert set(m["skipped"]) == {"s2"} and m["skipped"]["s2"]["served_by"] == "other"
    assert m["skipped"]["s2"]["eval_pairs"] > 0                       # its test-window requests still exist
    assert all("s2" not in r["per_scenario"] for r in m["rows"].values())
    assert "skipped today, not in the macro: s2" in m["macro_note"]
    assert m["macro_note"] in (day / "plots/table.md").read_text()


@pytest.mark.slow  # the whole daily run on the tiny project
def test_the_report_view_model_lists_it_with_its_fallback(day: Path) -> None:
    from sass_retrieval.evaluate.report import context, gather, render_markdown

    rep = gather(metrics=day / "metrics/metrics.json", validation_dir=day / "reports/validation",
                 models_dir=day / "models", features_dir=day / "data/features", published_dir=None,
                 out_dir=day / "reports/run")
    assert rep.skipped["s2"]["served_by"] == "other" and rep.stats["s2"]["skipped"] is True
    assert "\n## Scenarios skipped today\n" in render_markdown(rep)
    table = context(rep)["skipped"].text
    assert table.iloc[:, [0, 2, 4]].values.tolist() == [["s2", "12", "other"]]


@pytest.mark.slow  # the whole daily run on the tiny project
def test_publish_completes_and_routes_the_skipped_scenario_to_other(day: Path) -> None:
    decision = json.loads((day / "reports/publish.json").read_text())
    assert decision["publish"] is True and decision["fallback"] == {"s2": "other"}
    current = day / "published/current"
    served = json.loads((current / "served.json").read_text())
    assert served["row"] == decision["winner"] and served["fallback"]["s2"]["served_by"] == "other"
    route = resolve_index(current / "indexes", "s2")
    assert route.fallback and route.scenario == "other" and route.index == current / "indexes/other/index.faiss"
    assert resolve_index(current / "indexes", "s0").index == current / "indexes/s0/index.faiss"


def test_without_other_a_scenario_with_no_rows_is_served_by_the_largest(tmp_path: Path, caplog) -> None:
    """No training needed: split and index of a skipped scenario read nothing but the store."""
    root = write_project(tmp_path / "p")                                 # names s0, s1, s2; no 'other'
    with cwd(root):
        assert ingest.main([]) == 0
        thin_scenario(root, "s2", 0)
        stale = root / "indexes/sass/s2"
        stale.mkdir(parents=True)
        (stale / "index.faiss").write_bytes(b"yesterday's index")       # s2 was big yesterday
        with caplog.at_level(logging.WARNING):
            assert split.main(["--scenario", "s2"]) == 0
            assert index.main(["--scenario", "s2"]) == 0
    said = [r.getMessage() for r in caplog.records if "skipped today" in r.getMessage()]
    assert len(said) == 2 and all("no training rows in the window" in m and "'s0'" in m for m in said)
    assert json.loads((root / "data/features/s2/stats.json").read_text())["skipped"] is True
    assert sorted(p.name for p in stale.iterdir()) == ["skipped.json"]
    assert json.loads((stale / "skipped.json").read_text())["served_by"] == "s0"
