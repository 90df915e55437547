"""bench/data_bench.py: each source's params, and a smoke run of the data stages on tiny synthetic data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from support import load_bench

ROOT = Path(__file__).resolve().parents[2]


def test_kuairand_reads_its_dev_window_and_tabs_and_synthetic_its_size(tmp_path: Path) -> None:
    from sass_retrieval.config import load_params

    bench = load_bench("data_bench")
    base = load_params(ROOT / "params.yaml")
    args = argparse.Namespace(data_dir=str(tmp_path), synthetic_rows=1234, synthetic_users=56, synthetic_items=78)
    kr = bench.source_params(base, "kuairand", args)
    assert kr.data.source == "kuairand" and kr.data.kuairand_dir == str(tmp_path.resolve())
    assert (kr.window.end_date, kr.window.train_days, kr.window.test_days) == (20220505, 8, 3)
    assert kr.scenarios.names == ["1", "0", "4", "6", "2", "other"]
    syn = bench.source_params(base, "synthetic", args)
    assert (syn.data.synthetic.rows, syn.data.synthetic.users, syn.data.synthetic.items) == (1234, 56, 78)


def test_unknown_sources_stop_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_bench("data_bench").main(["--sources", "synthetic,parquet", "--work", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_smoke_run_on_tiny_synthetic_data(tmp_path: Path, tiny_params_file: Path) -> None:
    out = tmp_path / "results" / "data"
    assert load_bench("data_bench").main([
        "--sources", "synthetic", "--synthetic-rows", "20000", "--synthetic-users", "500", "--synthetic-items", "300",
        "--params", str(tiny_params_file), "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    stages = [s["stage"] for s in payload["synthetic"]]
    assert stages[:2] == ["ingest", "validate"] and "pairs" in stages
    assert [s for s in stages if s.startswith("split@")] == ["split@s0", "split@s1", "split@s2"]
    assert "kuairand" not in payload and payload["synthetic_rows"] == 20000
    assert "## Synthetic, 20,000 rows" in out.with_suffix(".md").read_text()
    assert not (tmp_path / "work").exists()      # the work folder goes: 10M rows are large
