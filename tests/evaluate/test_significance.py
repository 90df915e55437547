"""Paired bootstrap: exact answers on degenerate inputs, calibrated intervals on noise, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sass_retrieval.evaluate.significance import (
    DASH,
    bootstrap_means,
    compare_rows,
    format_ci,
    paired_bootstrap,
    significance_by_slice,
    significance_metric,
)


def noise(rng, sizes, seeds=None):
    return {s: rng.random(n if seeds is None else (seeds, n)) for s, n in sizes.items()}


def test_identical_rows_give_zero_diff_and_a_ci_containing_zero():
    rng = np.random.default_rng(0)
    a = noise(rng, {"s0": 300, "s1": 50}, seeds=3)
    res = paired_bootstrap(a, {s: v.copy() for s, v in a.items()}, n_boot=500)
    assert set(res) == {"s0", "s1", "macro"}
    for r in res.values():
        assert r["diff"] == 0.0 and r["lo"] == 0.0 and r["hi"] == 0.0 and not r["significant"]
    assert res["s0"]["pairs"] == 300 and res["macro"]["pairs"] == 350


def test_constant_gain_gives_that_diff_with_a_tight_ci():
    rng = np.random.default_rng(1)
    b = noise(rng, {"s0": 400, "s1": 80})
    a = {s: v + 0.01 for s, v in b.items()}
    res = paired_bootstrap(a, b, n_boot=500)
    for r in res.values():
        assert r["diff"] == pytest.approx(0.01, abs=1e-12)
        assert r["lo"] == pytest.approx(0.01, abs=1e-12) and r["hi"] == pytest.approx(0.01, abs=1e-12)
        assert r["significant"]
    worse = paired_bootstrap(b, a, n_boot=200)["macro"]
    assert worse["diff"] == pytest.approx(-0.01) and worse["significant"] and worse["hi"] < 0


def test_diff_and_macro_definitions():
    a = {"x": np.array([1.0, 0.0, 1.0, 0.0]), "y": np.array([0.5, 0.5])}
    b = {"x": np.array([0.0, 0.0, 0.0, 0.0]), "y": np.array([0.5, 0.0])}
    res = paired_bootstrap(a, b, n_boot=1000, seed=3)
    assert res["x"]["diff"] == pytest.approx(0.5) and res["y"]["diff"] == pytest.approx(0.25)
    assert res["macro"]["diff"] == pytest.approx(0.375)  # mean over scenarios, not over the 6 pairs
    assert res["x"]["lo"] <= 0.5 <= res["x"]["hi"] and res["x"]["lo"] >= 0.0 and res["x"]["hi"] <= 1.0
    assert res["macro"]["lo"] <= res["macro"]["diff"] <= res["macro"]["hi"]


def test_seeds_are_pooled_with_the_same_indices():
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 200)), rng.random((3, 200))
    pooled = paired_bootstrap({"s": a}, {"s": b}, n_boot=300, seed=5)["s"]
    # same indices for every seed: the statistic is the bootstrap of the per-pair seed means
    means = paired_bootstrap({"s": a.mean(axis=0)}, {"s": b.mean(axis=0)}, n_boot=300, seed=5)["s"]
    assert pooled == pytest.approx(means, abs=1e-12)
    assert pooled["diff"] == pytest.approx(float((a - b).mean()))
    # a deterministic row (one seed) against a seeded one broadcasts
    one = paired_bootstrap({"s": a}, {"s": b[0]}, n_boot=100)["s"]
    assert one["diff"] == pytest.approx(float(a.mean() - b[0].mean()))


def test_reproducible_and_independent_of_other_scenarios():
    rng = np.random.default_rng(3)
    a, b = noise(rng, {"s0": 100, "s1": 60}), noise(rng, {"s0": 100, "s1": 60})
    r1 = paired_bootstrap(a, b, n_boot=400, seed=7)
    assert r1 == paired_bootstrap(a, b, n_boot=400, seed=7)
    alone = paired_bootstrap({"s0": a["s0"]}, {"s0": b["s0"]}, n_boot=400, seed=7)
    assert alone["s0"] == r1["s0"]
    assert paired_bootstrap(a, b, n_boot=400, seed=8)["s0"]["lo"] != r1["s0"]["lo"]


def test_coverage_on_synthetic_noise_with_zero_true_difference():
    """200 simulated datasets where a and b have the same distribution: the 95% CI holds 0 in ~95%."""
    rng = np.random.default_rng(12345)
    covered = 0
    for i in range(200):
        base = rng.random(300)  # a pair effect shared by both rows (what pairing removes)
        a = {"s0": base + rng.normal(0, 0.2, 300), "s1": rng.binomial(1, 0.3, 80).astype(float)}
        b = {"s0": base + rng.normal(0, 0.2, 300), "s1": rng.binomial(1, 0.3, 80).astype(float)}
        res = paired_bootstrap(a, b, n_boot=400, seed=i)
        covered += res["macro"]["lo"] <= 0 <= res["macro"]["hi"]
    assert 180 <= covered <= 198, covered


def test_empty_scenario_is_nan_and_left_out_of_macro():
    a = {"s0": np.array([1.0, 1.0]), "s1": np.empty(0)}
    b = {"s0": np.array([0.0, 0.0]), "s1": np.empty(0)}
    res = paired_bootstrap(a, b, n_boot=50)
    assert math.isnan(res["s1"]["diff"]) and res["s1"]["pairs"] == 0 and not res["s1"]["significant"]
    assert res["macro"]["diff"] == 1.0 and res["macro"]["pairs"] == 2
    none = paired_bootstrap({"s": np.empty(0)}, {"s": np.empty(0)})
    assert math.isnan(none["macro"]["diff"]) and not none["macro"]["significant"]


def test_shape_errors_are_clear():
    one = np.zeros(5)
    with pytest.raises(ValueError, match="same scenarios"):
        paired_bootstrap({"s": one}, {"t": one})
    with pytest.raises(ValueError, match="a has 5 pairs, b has 4"):
        paired_bootstrap({"s": one}, {"s": np.zeros(4)})
    with pytest.raises(ValueError, match=r"\(n_pairs,\) or \(n_seeds, n_pairs\)"):
        paired_bootstrap({"s": np.zeros((2, 2, 5))}, {"s": np.zeros((2, 2, 5))})
    with pytest.raises(ValueError, match="a has 3 seeds, b has 2"):
        paired_bootstrap({"s": np.zeros((3, 5))}, {"s": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap({"s": np.array([np.nan])}, {"s": np.zeros(1)})
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap({"s": one}, {"s": one}, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap({"s": one}, {"s": one}, level=1.0)
    with pytest.raises(ValueError, match="reserved"):
        paired_bootstrap({"macro": one}, {"macro": one})


def test_compare_rows_reference_against_every_other_row():
    rng = np.random.default_rng(4)
    base = {s: rng.random(200) for s in ("s0", "s1")}
    rows = {
        "popular": {s: {"ndcg@50": v * 0.5, "hit_rate@50": v} for s, v in base.items()},
        "sass": {s: {"ndcg@50": v, "hit_rate@50": v} for s, v in base.items()},
        "twin": {s: {"ndcg@50": v.copy(), "hit_rate@50": v} for s, v in base.items()},
    }
    res = compare_rows(rows, "sass", n_boot=300)
    assert set(res) == {"popular", "twin"}
    assert res["popular"]["macro"]["significant"] and res["popular"]["macro"]["diff"] > 0
    assert res["twin"]["macro"]["diff"] == 0.0 and not res["twin"]["macro"]["significant"]
    assert compare_rows(rows, "sass", metric="hit_rate@50", n_boot=50)["popular"]["macro"]["diff"] == 0.0
    with pytest.raises(ValueError, match="reference row 'nope'"):
        compare_rows(rows, "nope")
    with pytest.raises(ValueError, match="no per-pair 'recall@20'"):
        compare_rows(rows, "sass", metric="recall@20")
    bad = {**rows, "short": {"s0": rows["sass"]["s0"]}}
    with pytest.raises(ValueError, match="covers scenarios"):
        compare_rows(bad, "sass")


def test_bootstrap_means_chunks_give_the_same_distribution_shape():
    rng = np.random.default_rng(0)
    d = rng.random(1000)
    out = bootstrap_means(d, 3000, np.random.default_rng(1))
    assert out.shape == (3000,)
    assert abs(out.mean() - d.mean()) < 0.005
    assert out.std() == pytest.approx(d.std() / math.sqrt(d.size), rel=0.1)


def test_the_benchmark_size_counts_every_pair_once_across_seeds():
    """11,000 pairs x 3 seeds x 2,000 replicates (the KuaiRand dev split's shape). Its cost is part of the
    evaluate stage's, which bench/speed.py times; a wall-clock bound here would measure the machine."""
    rng = np.random.default_rng(0)
    sizes = {"1": 5000, "0": 3000, "4": 1500, "6": 500, "2": 1000}
    a, b = noise(rng, sizes, seeds=3), noise(rng, sizes, seeds=3)
    res = paired_bootstrap(a, b, n_boot=2000)
    assert res["macro"]["pairs"] == 11_000
    assert {s: res[s]["pairs"] for s in sizes} == sizes
    for s in sizes:
        assert res[s]["diff"] == pytest.approx(float((a[s] - b[s]).mean()))
        assert res[s]["lo"] < res[s]["diff"] < res[s]["hi"]


def test_significance_metric_is_ndcg_at_the_k_closest_to_50() -> None:
    assert significance_metric([20, 50, 100]) == "ndcg@50"
    assert significance_metric([10, 40, 60]) == "ndcg@40"


def test_significance_by_slice_compares_the_reference_with_every_row() -> None:
    rng = np.random.default_rng(0)
    v = rng.random(50)
    per_pair = {
        "all": {"popular": {"a": {"ndcg@50": v / 2}}, "sass": {"a": {"ndcg@50": v}},
                "published": {"a": {"ndcg@50": v}}},
        "tail_truth": {"popular": {"a": {"ndcg@50": np.empty(0)}}, "sass": {"a": {"ndcg@50": np.empty(0)}}},
        "scenario_cold": {"popular": {"a": {"ndcg@50": v}}},   # the reference not scored here: left out
    }
    sig = significance_by_slice(per_pair, "sass", "ndcg@50", n_boot=200, level=0.95, seed=0)
    assert set(sig) == {"all", "tail_truth"} and set(sig["all"]) == {"popular", "published"}
    assert sig["all"]["popular"]["macro"]["significant"] and sig["all"]["published"]["a"]["diff"] == 0.0
    assert sig["tail_truth"]["popular"]["a"]["pairs"] == 0
    assert significance_by_slice(per_pair, None, "ndcg@50", 10, 0.95, 0) == {}


def test_format_ci_is_signed_never_negative_zero_and_a_dash_when_undefined() -> None:
    assert format_ci(0.0123, 0.005, 0.019) == "+0.0123 [+0.0050, +0.0190]"
    assert format_ci(-0.00001, -0.00002, 0.0) == "+0.0000 [+0.0000, +0.0000]"
    assert format_ci(-0.02, -0.03, -0.01, digits=3) == "-0.020 [-0.030, -0.010]"
    assert format_ci(0.01, 0.0, 0.02, label=", paired 95% CI") == "+0.0100, paired 95% CI [+0.0000, +0.0200]"
    assert format_ci(float("nan"), 0, 0) == DASH and format_ci(None, None, None) == DASH
