"""Writing a run's split: one scenario's feature tables and samples, or the cross-scenario pretraining pairs.

Each is written beside its folder and swapped in whole (atomic.swap_dir), so a failed split leaves the
previous one. A declared scenario skipped today (too few training rows, data.features.skipped_scenarios)
gets a marker instead of features, and the day goes on.

The tables are computed by DuckDB (data.split_sql) straight from the store's part files within
``data.memory_limit_mib``: the window's rows never enter pandas.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ..atomic import swap_dir, temp_path
from ..config import ConfigError
from ..run import Run
from .engine import connect, interaction_files
from .features import skipped_scenarios, split_meta, write_skipped_split
from .split_sql import write_pairs_split_sql, write_scenario_split_sql

log = logging.getLogger("split")

PAIRS = "pairs"   # the pretraining pairs' folder beside the scenarios'


def write_run_split(run: Run, out: Path, scenario: str | None) -> dict[str, Any]:
    """``out/<scenario>`` (or ``out/pairs`` when ``scenario`` is None) for the run's training window; its stats."""
    w = run.window
    declared = run.params.scenarios.names
    if scenario is not None and scenario not in declared:
        raise ConfigError(f"{run.params_path}: scenarios.names: does not list the scenario {scenario!r}: {declared}")
    files = interaction_files(run.store, w.train_dates)
    meta = split_meta(run.names, list(run.scenarios.reported), run.scenarios.mapping, w.train_dates, w.test_dates,
                      run.params.features.seq_len)
    name = PAIRS if scenario is None else scenario
    tmp, spill = temp_path(out / name), temp_path(out / f"{name}-duckdb", "")
    con = connect(run.params.data.memory_limit_mib, temp_dir=spill)
    try:
        if scenario is None:
            stats = write_pairs_split_sql(con, files, tmp, run.names, run.scenarios.mapping, meta)
        else:
            skipped = skipped_scenarios(declared, run.scenarios, run.names).get(scenario)
            if skipped is not None:  # a marker instead of features: the stage succeeds, the day goes on
                log.warning("scenario %s skipped today (%s, %s..%s): a marker, no features; served by %r", scenario,
                            skipped.reason, w.train_start, w.train_end, skipped.served_by)
                stats = write_skipped_split(tmp, skipped)
            else:
                stats = write_scenario_split_sql(con, files, run.store, tmp, scenario, run.scenarios.mapping, meta)
            if stats["rows"] == 0 and skipped is None:
                log.warning("scenario %s has no training rows in %s..%s", scenario, w.train_start, w.train_end)
        swap_dir(tmp, out / name)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
    return stats
