"""Stage `shards`: every trained scenario's fine-tuning positives in one seeded random order (data/shards), the
rows the streamed training input (train.input: stream) reads; see sass_retrieval.data.shards."""

from __future__ import annotations

import logging
import shutil
import time

from sass_retrieval.atomic import swap_dir, temp_path
from sass_retrieval.data.engine import connect
from sass_retrieval.data.shards import trained_scenarios, write_shards
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging

log = logging.getLogger("shards")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--features", default="data/features", help="the split's folder (default: data/features)")
    p.add_argument("--out", default="data/shards", help="shards folder (default: data/shards)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    run = load_run(args.params)
    features, out = safe_path(args.features), safe_path(args.out)
    scenarios = trained_scenarios(features, run.names)
    tmp, spill = temp_path(out), temp_path(out.with_name(f"{out.name}-duckdb"), "")
    con = connect(run.params.data.memory_limit_mib, temp_dir=spill)
    try:
        meta = write_shards(con, features, scenarios, run.params.train.seed, tmp)
        swap_dir(tmp, out)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
    log.info("shards of %s: %d rows in %d row groups, %d files in %.1fs", ", ".join(scenarios),
             sum(meta["row_groups"]), len(meta["row_groups"]), len(meta["files"]), time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
