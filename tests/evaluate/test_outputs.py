"""The evaluate stage's files: per_pair.npz and the `dvc plots` rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sass_retrieval.evaluate.outputs import plots_rows, write_per_pair
from sass_retrieval.evaluate.protocol import EvalSet


def test_write_per_pair(tmp_path: Path) -> None:
    es = EvalSet(scenarios=["a"], pairs={"a": np.array([3, 5])}, truth={"a": [{1}, {2}]},
                 pools={"a": np.array([1, 2])}, train_clicked={})
    per_pair = {"all": {"sass": {"a": {"ndcg@50": np.array([0.5, 0.0]), "recall@50": np.array([1.0, 0.0])}}}}
    path = tmp_path / "metrics/per_pair.npz"
    write_per_pair(path, {"all": es}, per_pair, ("ndcg@50", "hit_rate@50"))
    with np.load(path) as z:
        assert sorted(z.files) == ["all/pairs/a", "all/sass/a/ndcg@50"]
        assert z["all/pairs/a"].tolist() == [3, 5] and z["all/sass/a/ndcg@50"].tolist() == [0.5, 0.0]
        assert z["all/sass/a/ndcg@50"].dtype == np.float32
    assert sorted(p.name for p in path.parent.iterdir()) == ["per_pair.npz"]   # no temporary left


def test_plots_rows_are_long_format() -> None:
    res = {"sass": {"per_scenario": {"a": {"ndcg@50": 0.2, "hit_rate@50": 0.5}},
                    "macro": {"ndcg@20": 0.1, "hit_rate@20": 0.3, "recall@20": 0.2,
                              "ndcg@50": 0.2, "hit_rate@50": 0.5, "recall@50": 0.4}}}
    bars, lines = plots_rows(res, ["a"], [20, 50])
    assert bars == [{"scenario": "a", "row": "sass", "ndcg@50": 0.2, "hit_rate@50": 0.5}]
    assert [(x["k"], x["ndcg"], x["recall"]) for x in lines] == [(20, 0.1, 0.2), (50, 0.2, 0.4)]
