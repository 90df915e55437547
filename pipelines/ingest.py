"""Stage `ingest`: raw logs (KuaiRand release or the synthetic generator) -> the canonical Parquet store."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sass_retrieval.config import get, load_params, project_path
from sass_retrieval.data.kuairand import import_kuairand
from sass_retrieval.data.synthetic import SyntheticConfig, generate

from .base import parser, safe_path, setup_logging, write_json

log = logging.getLogger("ingest")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--source", choices=["synthetic", "kuairand"], help="override data.source")
    p.add_argument("--kuairand-dir", help="override data.kuairand_dir (the release folder, read-only)")
    p.add_argument("--keep", action="store_true", help="keep days already in the store (default: rebuild)")
    args = p.parse_args(argv)
    params = load_params(args.params)
    source = args.source or get(params, "data.source")
    store = safe_path(get(params, "data.store_dir"))
    if not args.keep and store.exists():
        # A fresh store per run: a smaller re-run must not leave yesterday's extra days behind.
        shutil.rmtree(store)
    t0 = time.perf_counter()
    if source == "kuairand":
        src = Path(args.kuairand_dir) if args.kuairand_dir else project_path(Path(args.params), get(params, "data.kuairand_dir"))
        summary = import_kuairand(src, store)
    elif source == "synthetic":
        summary = generate(store, SyntheticConfig.from_params(params))
    else:
        raise SystemExit(f"ingest: data.source must be 'synthetic' or 'kuairand', got {source!r}")
    summary = {"source": source, "seconds": round(time.perf_counter() - t0, 2),
               **{k: v for k, v in summary.items() if k != "seconds"}}
    write_json(store / "ingest.json", summary)
    log.info("ingested %s rows from %s into %s in %.1fs", summary.get("rows"), source, store, summary["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
