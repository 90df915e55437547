"""The daily evaluation's choices: which rows are scored today and which one the others are tested against
(the scoring itself runs end to end in tests/pipelines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sass_retrieval.config import load_params
from sass_retrieval.evaluate.daily import Scoreboard, daily_and_benchmark_rows, reference_row

ROOT = Path(__file__).resolve().parents[2]


def test_reference_row_is_the_candidate_else_the_first_trained_row() -> None:
    assert reference_row(["popular", "dssm_mixed", "sass", "published"]) == "sass"
    assert reference_row(["popular", "published", "dssm_single", "sass_base"]) == "dssm_single"
    assert reference_row(["popular"]) is None
    assert reference_row(["published", "popular"]) is None


def test_the_rows_of_the_day_add_the_challenger_and_the_benchmark_rows_once() -> None:
    params = load_params(ROOT / "params.yaml").override(
        {"evaluate.rows": ["popular", "sass"], "publish.challenger": "ctnet",
         "evaluate.benchmark_rows": ["dssm_single", "ctnet"]})
    assert daily_and_benchmark_rows(params) == ["popular", "sass", "ctnet", "dssm_single"]
    plain = params.override({"evaluate.benchmark_rows": [], "publish.challenger": "dssm_mixed"})
    assert daily_and_benchmark_rows(plain) == ["popular", "sass", "dssm_mixed"]


def test_the_scoreboard_keeps_per_pair_values_out_of_the_results() -> None:
    board = Scoreboard({"all": None, "tail_truth": None}, [50])  # type: ignore[dict-item]
    board.add("sass", {"all": {"macro": {"ndcg@50": 0.2}, "per_pair": {"a": [1.0]}},
                       "tail_truth": {"macro": {"ndcg@50": 0.1}, "per_pair": {"a": [0.0]}}})
    assert board.by_slice == {"all": {"sass": {"macro": {"ndcg@50": 0.2}}},
                              "tail_truth": {"sass": {"macro": {"ndcg@50": 0.1}}}}
    assert board.per_pair["tail_truth"]["sass"] == {"a": [0.0]}
    with pytest.raises(KeyError):
        board.add("dssm_mixed", {"all": {"macro": {}}})   # a result without its per-pair values
