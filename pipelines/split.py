"""Stage `split`: per-scenario feature tables and samples (one scenario per call, a DVC foreach item),
or the cross-scenario pretraining pairs (`--pairs`)."""

from __future__ import annotations

import logging
import time

from sass_retrieval.data.split import PAIRS, write_run_split
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging

log = logging.getLogger("split")


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
    stats = write_run_split(run, safe_path(args.out), None if args.pairs else args.scenario)
    log.info("split %s: %s in %.1fs", PAIRS if args.pairs else args.scenario, stats, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
