"""Stage `split`: per-scenario feature tables and samples (one scenario per call, a DVC foreach item),
or the cross-scenario pretraining pairs (`--pairs`)."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from pathlib import Path

from sass_retrieval.data.features import (
    skipped_scenarios,
    split_meta,
    write_pairs_split,
    write_scenario_split,
    write_skipped_split,
)
from sass_retrieval.data.store import read_items, read_users

from .base import load_run, parser, read_mapped, safe_path, setup_logging

log = logging.getLogger("split")


def _swap_in(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--scenario", help="scenario to split (one of scenarios.names in params)")
    g.add_argument("--pairs", action="store_true", help="write the pretraining pairs instead")
    p.add_argument("--out", default="data/features", help="features folder (default: data/features)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    run = load_run(args.params)
    out = safe_path(args.out)
    w = run.window
    train = read_mapped(run, w.train_start, w.train_end)
    meta = split_meta(run.names, list(run.scenarios.reported), run.scenarios.mapping, w.train_dates, w.test_dates,
                      run.params.features.seq_len)
    name = "pairs" if args.pairs else args.scenario
    tmp = out / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        if args.pairs:
            stats = write_pairs_split(tmp, train, meta)
        else:
            s = args.scenario
            declared = run.params.scenarios.names
            if s not in declared:
                from sass_retrieval.config import ConfigError

                raise ConfigError(f"{args.params}: scenarios.names: does not list the scenario {s!r}: {declared}")
            skipped = skipped_scenarios(declared, run.scenarios, run.names).get(s)
            if skipped is not None:  # a marker instead of features: the stage succeeds, the day goes on
                log.warning("scenario %s skipped today (%s, %s..%s): a marker, no features; served by %r", s,
                            skipped.reason, w.train_start, w.train_end, skipped.served_by)
                stats = write_skipped_split(tmp, skipped)
            else:
                stats = write_scenario_split(tmp, train, s, read_users(run.store), read_items(run.store), meta)
            if stats["rows"] == 0 and skipped is None:
                log.warning("scenario %s has no training rows in %s..%s", s, w.train_start, w.train_end)
        _swap_in(tmp, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("split %s: %s in %.1fs", name, stats, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
