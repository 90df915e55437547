"""bench/quality.py: the grouping of test windows into rolling comparisons, the source's defaults, the CI
plot, and a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench

ROOT = Path(__file__).resolve().parents[2]


def _w(start: int, train_days: int, test_days: int = 1) -> dict:
    return {"window": {"train_start": start}, "train_days": train_days, "test_days": test_days}


def test_expanding_windows_share_a_start_and_sliding_ones_group_by_length() -> None:
    results = {"dev": _w(20220425, 8, 3), "0503": _w(20220425, 8), "0504": _w(20220425, 9), "0505": _w(20220425, 10),
               "0503/4d": _w(20220429, 4), "0504/4d": _w(20220430, 4), "0505/4d": _w(20220501, 4)}
    groups = load_bench("quality").rolling_groups(results)
    assert groups == {"expanding": ["0503", "0504", "0505"], "4d": ["0503/4d", "0504/4d", "0505/4d"]}


def test_sliding_windows_alone_stay_one_group() -> None:
    """Three 4-day windows: the earliest is not an expanding group of its own."""
    results = {"0503": _w(20220429, 4), "0504": _w(20220430, 4), "0505": _w(20220501, 4)}
    assert load_bench("quality").rolling_groups(results) == {"4d": ["0503", "0504", "0505"]}


def test_the_synthetic_source_defaults_to_the_window_make_run_trains_on() -> None:
    import argparse
    import datetime as dt

    from sass_retrieval.config import load_params

    quality = load_bench("quality")
    params = load_params(ROOT / "params.yaml")
    args = argparse.Namespace(source="synthetic", windows=None, scenarios=None, title=None)
    quality.source_defaults(args, params)
    syn = params.data.synthetic
    last = dt.datetime.strptime(str(syn.start_date), "%Y%m%d") + dt.timedelta(days=syn.days - 1)
    # the generator's last day, as `end_date: auto` reads it, and the params' window lengths
    assert args.windows == f"{last:%Y%m%d}:{params.window.test_days}:{params.window.train_days}"
    assert args.scenarios == ",".join(params.scenarios.names) and "synthetic" in args.title
    args = argparse.Namespace(source="kuairand", windows="20220505:1:4", scenarios=None, title=None)
    quality.source_defaults(args, params)
    assert args.windows == "20220505:1:4" and args.scenarios == "1,0,4,6,2" and args.windows != quality.DEFAULT_WINDOWS


def test_the_ci_plot_is_drawn_from_the_recorded_payload_and_linked_once(tmp_path) -> None:
    quality = load_bench("quality")
    ci = {"diff": 0.01, "lo": -0.002, "hi": 0.02, "pairs": 100, "significant": False}
    payload = {"rows": ["popular", "sass"],
               "significance": {"dev": {sl: {"popular": {"macro": ci}} for sl in ("all", "scenario_cold", "tail_truth")}}}
    assert quality.plot_cis({"rows": ["sass"], "significance": {}}, tmp_path / "none.png", "t") == ""
    link = quality.plot_cis(payload, tmp_path / "q_ci.png", "t")
    assert "(q_ci.png)" in link and (tmp_path / "q_ci.png").stat().st_size > 1000
    (tmp_path / "r.json").write_text(json.dumps(payload))
    (tmp_path / "r.md").write_text("# A title\n\n- command: x\n\nSeeds [0].\n\n## Macro\n\n| a |\n")
    quality.replot(tmp_path / "r.json")
    quality.replot(tmp_path / "r.json")
    md = (tmp_path / "r.md").read_text()
    assert md.count("(r_ci.png)") == 1 and md.index("(r_ci.png)") < md.index("## Macro")
    assert (tmp_path / "r_ci.png").exists()


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path) -> None:
    """The whole benchmark at a tiny size: every row trained and scored, CIs against sass, the plot linked."""
    out = tmp_path / "results" / "quality"
    assert load_bench("quality").main(["--source", "synthetic", "--params", str(tiny_params_file), "--seeds", "0",
                                       "--rows", "popular,dssm_mixed,sass", "--n-boot", "50",
                                       "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    (label,) = payload["windows"]
    assert payload["windows"][label]["window"]["test_end"] == 20220429      # the tiny generator's last day
    macro = payload["windows"][label]["per_seed"][0]
    assert set(macro) == {"popular", "dssm_mixed", "sass"}
    assert all(0.0 < macro[r]["macro"]["ndcg@50"] <= 1.0 for r in macro)
    assert set(payload["significance"][label]["all"]) == {"popular", "dssm_mixed"}
    md = out.with_suffix(".md").read_text()
    assert "(quality_ci.png)" in md and (out.parent / "quality_ci.png").exists()
    assert "- command: `python bench/quality.py --source synthetic" in md
