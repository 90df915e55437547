"""bench/engines.py: a smoke run at 300k rows; the Polars port computes the same tables as the product's DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import load_bench

TABLES = ("users", "items", "item_daily", "positives", "exposure_dist")


@pytest.mark.slow
def test_smoke_run_measures_both_engines_and_they_agree(tmp_path: Path) -> None:
    out = tmp_path / "results" / "engines"
    work = tmp_path / "work"
    assert load_bench("engines").main(["--rows", "300000", "--work", str(work), "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    got = {(r["engine"], r["task"]) for r in res["results"]}
    assert got == {(e, t) for e in ("duckdb", "polars") for t in ("split", "positives")}
    assert all(r["wall_s"] > 0 and r["peak_mib"] > 0 for r in res["results"])
    assert "| split | duckdb |" in out.with_suffix(".md").read_text()
    tables = work / "rows300000" / "out"
    for table in TABLES:
        duck = pd.read_parquet(tables / "duckdb" / "split" / f"{table}.parquet")
        pol = pd.read_parquet(tables / "polars" / "split" / f"{table}.parquet")
        assert len(duck) > 0
        # the same values in the same order; prob to rounding (Polars divides its own way)
        pd.testing.assert_frame_equal(pol, duck, check_dtype=False, rtol=1e-12, obj=table)
    pd.testing.assert_frame_equal(pd.read_parquet(tables / "polars" / "positives" / "positives.parquet"),
                                  pd.read_parquet(tables / "duckdb" / "positives" / "positives.parquet"),
                                  check_dtype=False)
