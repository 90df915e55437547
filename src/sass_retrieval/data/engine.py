"""The data engine of the out-of-core path: one DuckDB connection per stage, bounded by params.

Every stage that reads days of interactions does it through here, so the memory bound of
``data.memory_limit_mib`` holds for all of them: DuckDB streams Parquet row groups and spills its
sorts, joins and aggregates to ``<work>/.duckdb-tmp`` beyond the limit instead of failing or taking
the machine's memory. Why DuckDB rather than Polars: docs/lab/notes.md (bench/engines.py measures both).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

from .schema import day_dir, stored_dates


def connect(memory_limit_mib: int, threads: int | None = None, temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB database that holds at most ``memory_limit_mib`` and spills to ``temp_dir``."""
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{int(memory_limit_mib)}MB'")
    con.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
    con.execute("SET preserve_insertion_order = false")   # lets DuckDB stream where order is not asked for
    tmp = Path(temp_dir) if temp_dir is not None else Path(".duckdb-tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{tmp.resolve()}'")
    return con


def interaction_files(store: Path, dates: Iterable[int] | None = None) -> list[Path]:
    """Every Parquet part file of the interactions of ``dates`` (None: every stored day), whatever the
    partition folders below a day's folder (``date=D/`` or ``date=D/scenario=S/``)."""
    wanted = stored_dates(store) if dates is None else sorted(set(int(d) for d in dates))
    return [f for d in wanted for f in sorted(day_dir(store, d).rglob("*.parquet"))]


def parquet_list(files: Iterable[Path]) -> str:
    """``files`` as a DuckDB list literal for ``read_parquet([...])``."""
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"[{quoted}]"
