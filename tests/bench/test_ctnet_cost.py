"""bench/ctnet_cost.py: the ratio of the medians of alternating runs, and every pair beside it."""

from __future__ import annotations

import pytest
from support import load_bench


def test_cost_table_gives_the_ratio_of_the_medians_and_the_range_of_the_pairs() -> None:
    cost = load_bench("ctnet_cost")
    lines, summary = cost.cost_table({"dssm_single": [30.0, 40.0, 32.0], "ctnet": [33.0, 36.0, 48.0]})
    assert summary["dssm_single_median"] == 32.0 and summary["ctnet_median"] == 36.0
    assert summary["ratio_of_medians"] == pytest.approx(36.0 / 32.0)
    assert lines[2] == "| 1 | 30.0 | 33.0 | 1.10× |"
    assert lines[-1] == "| median | 32.0 | 36.0 | **1.12×** (pairs 0.90-1.50×) |"


def test_cost_refuses_no_repeats() -> None:
    cost = load_bench("ctnet_cost")
    with pytest.raises(SystemExit):
        cost.main(["--repeats", "0", "--data-dir", "/nonexistent"])
