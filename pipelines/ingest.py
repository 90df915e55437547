"""Stage `ingest`: raw logs (KuaiRand release or the synthetic generator) -> the canonical Parquet store.

The new store is built beside the old one and replaces it only when it holds rows for every day the run
asks for (``requested_days``): an empty, header-only or partial source fails here, with one line naming
the file, and the previous store stays as it was.

The synthetic source is a daily feed: for a run day D (params.yaml ``window.end_date``) it writes the
days of D's window, generating only those the previous store lacks (a day's rows depend only on the
generator's config and the day, so a kept day equals a regenerated one). ``end_date: auto`` asks for
the generator's configured range (``data.synthetic.start_date`` + ``days``): the fixed demo store.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from sass_retrieval.config import ConfigError, fmt_date, load_params, make_window, parse_date, project_path
from sass_retrieval.data.kuairand import import_kuairand
from sass_retrieval.data.schema import stored_dates
from sass_retrieval.data.store import carry_days, require_days, staged_store
from sass_retrieval.data.synthetic import SyntheticConfig, fingerprint, generate
from sass_retrieval.params_schema import Params

from .base import parser, safe_path, setup_logging, write_json

log = logging.getLogger("ingest")
SUMMARY = "ingest.json"
PROGRESS = sys.stderr.isatty()   # progress bars for a person at a terminal, not in logs or captured output


def requested_days(params: Params, source: str) -> list[int] | None:
    """The days the run needs rows for: the window ending at ``window.end_date``; with 'auto', the
    synthetic generator's configured range, or None for a release (whatever days it holds, at least one)."""
    window = params.window
    if str(window.end_date) != "auto":
        return make_window(fmt_date(parse_date(window.end_date)), window.train_days, window.test_days).all_dates
    return SyntheticConfig.from_params(params).dates if source == "synthetic" else None


def previous_fingerprint(store: Path) -> dict[str, Any] | None:
    """The generator config the existing store was written with (None: not a synthetic store)."""
    try:
        return json.loads((store / SUMMARY).read_text()).get("synthetic")
    except (OSError, ValueError, AttributeError):
        return None


def ingest_synthetic(old: Path, new: Path, cfg: SyntheticConfig, days: list[int]) -> dict[str, Any]:
    """Carry over the requested days the old store holds for the same generator config; generate the others.

    A store written by another config or generator version (e.g. before the feedback labels existed) keeps
    nothing: every day is generated again, and the log says why."""
    before, now = previous_fingerprint(old), fingerprint(cfg)
    if before is not None and before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        log.info("previous store %s was generated with another generator config or version (differs in: %s): "
                 "regenerating every requested day", old, ", ".join(changed))
    carried = carry_days(old, new, days) if before == now else []
    missing = [d for d in days if d not in carried]
    summary = generate(new, cfg, progress=PROGRESS, dates=missing)   # users and items too, from the seed alone
    log.info("synthetic feed %s .. %s: %d day(s) kept from the previous store, %d generated", days[0], days[-1],
             len(carried), len(missing))
    return {**summary, "kept": carried, "generated": missing}


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
    if source not in ("synthetic", "kuairand"):
        raise ConfigError(f"{args.params}: data.source: 'synthetic' or 'kuairand': got {source!r}")
    store = safe_path(params.data.store_dir)
    days = requested_days(params, source)
    t0 = time.perf_counter()
    with staged_store(store) as new:   # replaces the store only if the block ends without an error
        if source == "kuairand":
            src = (Path(args.kuairand_dir) if args.kuairand_dir
                   else project_path(Path(args.params), params.data.kuairand_dir))
            summary, origin = import_kuairand(src, new, progress=PROGRESS), str(src)
        else:
            cfg = SyntheticConfig.from_params(params)
            summary = ingest_synthetic(store, new, cfg, days or cfg.dates)
            origin = f"synthetic generator (data.synthetic, seed {cfg.seed})"
        if args.keep:
            carry_days(store, new, sorted(set(stored_dates(store)) - set(stored_dates(new))))
        stored = require_days(new, days, origin)
        summary = {"source": source, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: v for k, v in summary.items() if k != "seconds"}, "stored_days": stored}
        write_json(new / SUMMARY, summary)
    log.info("ingested %s rows from %s into %s in %.1fs (%d days in the store)", summary.get("rows"), source, store,
             summary["seconds"], len(stored))
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
