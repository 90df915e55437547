"""bench/speed.py's row names: which tower each timed row trains."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from speed import row_arch  # noqa: E402


def test_rows_name_their_tower() -> None:
    params = {"model": {"arch": "sass"}}
    assert row_arch("dssm_mixed", params) == "dssm"
    assert row_arch("sass", params) == "sass"
    assert row_arch("sass@star", params) == "star"
    assert row_arch("sass", {"model": {"arch": "star"}}) == "star"
