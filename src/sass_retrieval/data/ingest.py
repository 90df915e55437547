"""Filling the run's store: raw logs (KuaiRand release or the synthetic generator) -> the canonical Parquet store.

The new store is built beside the old one and replaces it only when it holds rows for every day the run
asks for (:func:`requested_days`): an empty, header-only or partial source fails, with one line naming the
file, and the previous store stays as it was.

The synthetic source is a daily feed: for a run day D (``window.end_date``) it writes the days of D's
window, generating only those the previous store lacks (a day's rows depend only on the generator's
config and the day, so a kept day equals a regenerated one). ``end_date: auto`` asks for the generator's
configured range (``data.synthetic.start_date`` + ``days``): the fixed demo store.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..config import fmt_date, make_window, parse_date
from ..params_schema import Params
from .kuairand import import_kuairand
from .schema import stored_dates
from .store import carry_days, require_days, staged_store
from .synthetic import SyntheticConfig, fingerprint, generate

log = logging.getLogger("ingest")
SUMMARY = "ingest.json"   # written into the store: what filled it (and the synthetic generator's fingerprint)


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


def ingest_synthetic(old: Path, new: Path, cfg: SyntheticConfig, days: list[int], progress: bool) -> dict[str, Any]:
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
    summary = generate(new, cfg, progress=progress, dates=missing)   # users and items too, from the seed alone
    log.info("synthetic feed %s .. %s: %d day(s) kept from the previous store, %d generated", days[0], days[-1],
             len(carried), len(missing))
    return {**summary, "kept": carried, "generated": missing}


def ingest(params: Params, store: Path, source: str, kuairand_dir: Path, keep: bool = False,
           progress: bool = False) -> dict[str, Any]:
    """Rebuild ``store`` from ``source`` (the release in ``kuairand_dir``, or the generator of data.synthetic);
    ``keep``: also keep the previous store's days this import does not write. Returns the summary it writes
    into the store (``SUMMARY``)."""
    days = requested_days(params, source)
    t0 = time.perf_counter()
    with staged_store(store) as new:   # replaces the store only if the block ends without an error
        if source == "kuairand":
            summary, origin = import_kuairand(kuairand_dir, new, progress=progress), str(kuairand_dir)
        else:
            cfg = SyntheticConfig.from_params(params)
            summary = ingest_synthetic(store, new, cfg, days or cfg.dates, progress)
            origin = f"synthetic generator (data.synthetic, seed {cfg.seed})"
        if keep:
            carry_days(store, new, sorted(set(stored_dates(store)) - set(stored_dates(new))))
        stored = require_days(new, days, origin)
        summary = {"source": source, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: v for k, v in summary.items() if k != "seconds"}, "stored_days": stored}
        write_json(new / SUMMARY, summary)
    return summary
