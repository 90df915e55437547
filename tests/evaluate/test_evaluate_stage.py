"""The evaluate stage's significance plumbing (pure helpers; the stage itself runs in tests/pipelines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.evaluate import (
    reference_row,
    significance_by_slice,
    significance_metric,
    write_per_pair,
)
from sass_retrieval.evaluate.protocol import EvalSet


def test_reference_row_and_metric():
    assert reference_row(["popular", "dssm_mixed", "sass", "published"]) == "sass"
    assert reference_row(["popular", "published", "dssm_single", "sass_base"]) == "dssm_single"
    assert reference_row(["popular"]) is None
    assert significance_metric([20, 50, 100]) == "ndcg@50"
    assert significance_metric([10, 40, 60]) == "ndcg@40"


def test_significance_by_slice_compares_the_reference_with_every_row():
    rng = np.random.default_rng(0)
    v = rng.random(50)
    per_pair = {
        "all": {"popular": {"a": {"ndcg@50": v / 2}}, "sass": {"a": {"ndcg@50": v}},
                "published": {"a": {"ndcg@50": v}}},
        "tail_truth": {"popular": {"a": {"ndcg@50": np.empty(0)}}, "sass": {"a": {"ndcg@50": np.empty(0)}}},
    }
    sig = significance_by_slice(per_pair, "sass", "ndcg@50", n_boot=200, level=0.95, seed=0)
    assert set(sig["all"]) == {"popular", "published"}
    assert sig["all"]["popular"]["macro"]["significant"] and sig["all"]["published"]["a"]["diff"] == 0.0
    assert sig["tail_truth"]["popular"]["a"]["pairs"] == 0
    assert significance_by_slice(per_pair, None, "ndcg@50", 10, 0.95, 0) == {}


def test_write_per_pair(tmp_path: Path):
    es = EvalSet(scenarios=["a"], pairs={"a": np.array([3, 5])}, truth={"a": [{1}, {2}]},
                 pools={"a": np.array([1, 2])}, train_clicked={})
    per_pair = {"all": {"sass": {"a": {"ndcg@50": np.array([0.5, 0.0]), "recall@50": np.array([1.0, 0.0])}}}}
    path = tmp_path / "metrics/per_pair.npz"
    write_per_pair(path, {"all": es}, per_pair, ("ndcg@50", "hit_rate@50"))
    with np.load(path) as z:
        assert sorted(z.files) == ["all/pairs/a", "all/sass/a/ndcg@50"]
        assert z["all/pairs/a"].tolist() == [3, 5] and z["all/sass/a/ndcg@50"].tolist() == [0.5, 0.0]
    assert not list(path.parent.glob(".*tmp*"))
