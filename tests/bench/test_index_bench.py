"""bench/index_bench.py: a smoke run at a tiny pool size (exact, IVF and HNSW against exact search)."""

from __future__ import annotations

import json
from pathlib import Path

from support import load_bench


def test_smoke_run_at_a_tiny_pool(tmp_path: Path) -> None:
    out = tmp_path / "index"
    assert load_bench("index_bench").main([
        "--sizes", "2000", "--queries", "50", "--runs", "1", "--clusters", "20", "--nprobe", "4",
        "--ef-search", "32", "--bandwidth-gib", "0.01", "--single-seconds", "0.05", "--out", str(out)]) == 0
    payload = json.loads(Path(f"{out}.json").read_text())
    kinds = {r["index"] for r in payload["rows"]}
    assert {"exact", "ivf-flat"} <= kinds and any(k.startswith("hnsw") for k in kinds)
    exact = next(r for r in payload["rows"] if r["index"] == "exact")
    assert exact["recall"] == 1.0 and exact["qps"] > 0
    assert all(0.0 <= r["recall"] <= 1.0 for r in payload["rows"])
    assert payload["meta"]["command"].startswith("python bench/index_bench.py --sizes 2000")
    assert str(tmp_path) not in Path(f"{out}.json").read_text()          # no machine path recorded
