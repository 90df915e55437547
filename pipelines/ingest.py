"""Stage `ingest`: raw logs (KuaiRand release or the synthetic generator) -> the canonical Parquet store.

The store is replaced only when the new one holds every day the run asks for (sass_retrieval.data.ingest).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from sass_retrieval.config import load_params, project_path
from sass_retrieval.data.ingest import ingest
from sass_retrieval.run import safe_path

from .base import parser, setup_logging

log = logging.getLogger("ingest")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--source", choices=["synthetic", "kuairand"], help="override data.source")
    p.add_argument("--kuairand-dir", help="override data.kuairand_dir (the release folder, read-only)")
    p.add_argument("--keep", action="store_true",
                   help="also keep the previous store's days this import does not write (default: the store "
                        "holds what this import wrote, so a smaller re-run leaves no extra days behind)")
    args = p.parse_args(argv)
    params = load_params(args.params)
    source = args.source or params.data.source
    store = safe_path(params.data.store_dir)
    release = Path(args.kuairand_dir) if args.kuairand_dir else project_path(Path(args.params), params.data.kuairand_dir)
    progress = sys.stderr.isatty()   # progress bars for a person at a terminal, not in logs or captured output
    summary = ingest(params, store, source, release, keep=args.keep, progress=progress)
    log.info("ingested %s rows from %s into %s in %.1fs (%d days in the store)", summary.get("rows"), source, store,
             summary["seconds"], len(summary["stored_days"]))
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
