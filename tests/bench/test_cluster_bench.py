"""bench/cluster.py: a smoke run at the Airflow tests' tiny size, one folder then 1 and 2 Celery workers, writes
its table and every task's timers (slow: two clusters start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def test_a_tiny_day_on_one_and_two_workers(tmp_path: Path) -> None:
    bench = load_bench("cluster")
    out = tmp_path / "cluster"
    bench.main(["--tiny", "--day", "20220429", "--work", str(tmp_path / "work"), "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["workers"] for r in result["runs"]] == [1, 2] and result["single_folder_seconds"] > 0
    two = result["runs"][1]["tasks"]
    assert {t["worker"] for t in two} == {"w0", "w1"}
    staged = [t for t in two if t["stage"] is not None]
    assert staged and all(t["checkout"] > 0 and t["push"] is not None for t in staged)
    assert {t["worker"] for t in result["runs"][0]["tasks"]} == {"w0"}
    table = out.with_suffix(".md").read_text()
    assert "| sass_daily, 2 workers |" in table and "| finetune | w" in table
