"""bench/ctnet.py: --rows and --variant make the continual rows of one run, each a set of params overrides; its
comparisons, tables and plot; a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import TINY_PARAMS, load_bench


def test_variants_are_ctnet_with_their_overrides_beside_the_chosen_rows() -> None:
    ctnet = load_bench("ctnet")
    rows = ctnet.continual_rows("pf_all", ["ct_lr:ctnet.adapter_lr=0.1",
                                           "ct_two:train.incremental_epochs=1;ctnet.adapt_output=false"])
    assert list(rows) == ["ctnet", "pf_all", "ct_lr", "ct_two"]
    assert rows["ct_lr"] == ({"ctnet.adapters": True, "ctnet.adapter_lr": 0.1}, False)
    assert rows["ct_two"][0] == {"ctnet.adapters": True, "train.incremental_epochs": 1, "ctnet.adapt_output": False}
    assert rows["pf_all"] == ctnet.CONTINUAL["pf_all"]


@pytest.mark.parametrize("names,variants,message", [
    ("pf_none", [], "unknown continual row 'pf_none'"),
    ("", ["ct_lr"], "expected NEW_NAME:key=value"),
    ("pf_all", ["pf_all:ctnet.adapter_lr=0.1"], "a new row name"),
    ("", ["dssm_single:ctnet.adapter_lr=0.1"], "a new row name"),
])
def test_bad_rows_and_variants_stop_with_one_line(names: str, variants: list[str], message: str) -> None:
    ctnet = load_bench("ctnet")
    with pytest.raises(SystemExit, match=message):
        ctnet.continual_rows(names, variants)


def test_negated_turns_a_minus_b_into_b_minus_a() -> None:
    """The row − dssm_single table is dssm_single − row turned round: the interval flips with the sign."""
    ctnet = load_bench("ctnet")
    ci = {"diff": 0.01, "lo": -0.002, "hi": 0.02, "pairs": 7, "significant": False}
    assert ctnet.negated(ci) == {"diff": -0.01, "lo": -0.02, "hi": 0.002, "pairs": 7, "significant": False}


def test_effect_table_averages_seeds_and_skips_rows_without_adapters() -> None:
    """One line per adapter row and day, users / items, mean over seeds; pf_* rows have no adapters."""
    ctnet = load_bench("ctnet")

    def seed(u: float, drift: float) -> dict:
        return {"ctnet": {"info": {"adapter_effect": {"0": {"user": u, "item": 0.01}}, "source_drift": drift}},
                "pf_all": {"info": {"adapter_effect": {}}}}

    by_label = {"d1": [seed(0.02, 0.0), seed(0.04, 0.0)], "d2": [seed(0.01, 0.003), seed(0.03, 0.005)]}
    table = ctnet.effect_table(by_label, ["d1", "d2"], ["ctnet", "pf_all"])
    assert "| ctnet | d1 | 0.0300 / 0.0100 | 0.0000 |" in table
    assert "| ctnet | d2 | 0.0200 / 0.0100 | 0.0040 |" in table
    assert not any("pf_all" in line for line in table)
    assert ctnet.effect_table(by_label, ["d1"], ["pf_all"]) == []


def test_source_drift_is_zero_for_the_same_source_and_positive_for_another(tiny_bank) -> None:
    import copy

    import torch

    from sass_retrieval.models.bank import model_config
    from sass_retrieval.models.retrieval import RetrievalModel

    ctnet = load_bench("ctnet")
    bank, _ = tiny_bank
    from sass_retrieval.params_schema import validate_params

    source = RetrievalModel(model_config(validate_params(TINY_PARAMS), bank.scenarios, "dssm"))
    other = copy.deepcopy(source)
    with torch.no_grad():
        other.video_emb.weight.add_(torch.randn_like(other.video_emb.weight))
    s = bank.scenarios[0]
    assert ctnet.source_drift(source, copy.deepcopy(source), bank, s) == pytest.approx(0.0, abs=1e-6)
    assert ctnet.source_drift(source, other, bank, s) > 0.0


def test_replot_draws_the_recorded_cis_and_links_them_once_under_their_heading(tmp_path) -> None:
    import json

    ctnet = load_bench("ctnet")
    ci = {"diff": 0.01, "lo": -0.002, "hi": 0.02, "pairs": 7, "significant": False}
    per_tab = {t: ci for t in ("1", "0", "4", "6", "2", "macro")}
    payload = {"rows": ["dssm_single", "ctnet", "pf_all"],
               "vs_dssm_single": {"dev 3d→0505 (train 8d)": {"ctnet": per_tab, "pf_all": per_tab},
                                  "pooled over the 2 days after the first": {"ctnet": per_tab, "pf_all": per_tab}}}
    (tmp_path / "run.json").write_text(json.dumps(payload))
    (tmp_path / "run.md").write_text("# CTNet run\n\n" + ctnet.VS_SINGLE + "### dev\n")
    for _ in range(2):
        ctnet.main(["--replot", str(tmp_path / "run.json")])
    assert (tmp_path / "run_vs_single.png").stat().st_size > 1000
    text = (tmp_path / "run.md").read_text()
    assert text.count("run_vs_single.png") == 1
    assert text.index("run_vs_single.png") > text.index("row − dssm_single")


def _result(all_pairs: dict[str, list[float]], cold_pairs: dict[str, list[float]]) -> dict:
    """A run_rows-shaped result: per-pair NDCG on every pair and on the scenario-cold slice."""
    def pp(d: dict[str, list[float]]) -> dict:
        return {s: {"ndcg@50": np.asarray(v), "hit_rate@50": np.asarray(v)} for s, v in d.items()}
    return {"per_pair": pp(all_pairs), "slices": {"scenario_cold": {"per_pair": pp(cold_pairs)}}}


def test_comparisons_on_a_slice_use_its_pairs_and_the_table_names_their_count() -> None:
    """The scenario-cold table compares rows on the slice's pairs only (here ctnet wins there and ties overall),
    pooled over the days after the first, and its headings say how many pairs each column holds."""
    ctnet = load_bench("ctnet")
    day = {"ctnet": _result({"4": [0.5, 0.5, 0.5, 0.5]}, {"4": [0.9, 0.8]}),
           "dssm_single": _result({"4": [0.5, 0.5, 0.5, 0.5]}, {"4": [0.1, 0.2]})}
    by_label = {lab: [day] for lab in ("dev", "d1", "d2", "d3")}
    every = ctnet.comparisons(by_label, "dssm_single", 200, ["dev"])
    cold = ctnet.comparisons(by_label, "dssm_single", 200, ["dev"], "scenario_cold")
    assert every["dev"]["ctnet"]["4"]["diff"] == pytest.approx(0.0)
    assert cold["dev"]["ctnet"]["4"]["diff"] == pytest.approx(-0.7)   # reference − row
    assert cold["dev"]["ctnet"]["4"]["pairs"] == 2
    pooled = cold["pooled over the 2 days after the first"]["ctnet"]["4"]
    assert pooled["pairs"] == 4 and pooled["significant"]
    table = "\n".join(ctnet.ci_tables(cold, ["dssm_single", "ctnet"], "dssm_single", pair_counts=True))
    assert "| row | 4 (2) | macro (2) |" in table and "| row | 4 (4) | macro (4) |" in table


def test_a_long_backfill_also_pools_its_last_three_days() -> None:
    """Beyond three days after the first, the last three (the test days of docs/benchmark.md) are pooled on their own too;
    a short backfill has only the pooled days after the first."""
    ctnet = load_bench("ctnet")
    day = {"ctnet": _result({"4": [0.5, 0.6]}, {"4": [0.9]}), "dssm_single": _result({"4": [0.4, 0.4]}, {"4": [0.1]})}
    long = ctnet.comparisons({lab: [day] for lab in ("dev", "d1", "d2", "d3", "d4", "d5")}, "dssm_single", 200, [])
    assert list(long) == ["pooled over the 4 days after the first", "pooled over the last 3 days"]
    assert long["pooled over the last 3 days"]["ctnet"]["4"]["pairs"] == 6
    short = ctnet.comparisons({lab: [day] for lab in ("dev", "d1", "d2", "d3", "d4")}, "dssm_single", 200, [])
    assert list(short) == ["pooled over the 3 days after the first"]


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    """A two-day backfill: the first day trains every row from scratch, the second continues ctnet and its
    one-time variant; every day scored, ctnet compared with every row, the plot against dssm_single linked."""
    out = tmp_path / "results" / "ctnet"
    assert load_bench("ctnet").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--days", f"{tiny_end - 1},{tiny_end}",
        "--train-days", "2", "--seeds", "0", "--baselines", "popular,dssm_single", "--rows", "ctnet_one_time",
        "--n-boot", "50", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert payload["labels"] == ["dev 2d→0429 (train 2d)", "0428 (train 2d)", "0429 (train 2d)"]
    assert set(payload["rows"]) == {"popular", "dssm_single", "ctnet", "ctnet_one_time"}
    assert set(payload["significance"]["0429 (train 2d)"]) == {"popular", "dssm_single", "ctnet_one_time"}
    first, second = (payload["per_seed"][0][lab] for lab in payload["labels"][1:])
    assert first["ctnet_one_time"]["macro"] == first["ctnet"]["macro"]      # the same model on the first day
    assert second["ctnet"]["info"]["source_drift"] >= 0.0
    md = out.with_suffix(".md").read_text()
    assert "(ctnet_vs_single.png)" in md and (out.parent / "ctnet_vs_single.png").exists()
