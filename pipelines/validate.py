"""Stage `validate`: cheap checks on every row of the run window (DuckDB) and Great Expectations suites on a
seeded sample per scenario; a failure stops the pipeline."""

from __future__ import annotations

import logging

from sass_retrieval.data.validation import validate_store
from sass_retrieval.params_schema import Params
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging

log = logging.getLogger("validate")


def known_scenarios(params: Params) -> list[str]:
    """Raw scenario names a source may produce: KuaiRand tabs 0..14, or the synthetic list."""
    if params.data.source == "kuairand":
        return [str(t) for t in range(15)]
    return [str(s) for s in params.data.synthetic.scenarios]


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--out", default="reports/validation", help="report folder (default: reports/validation)")
    args = p.parse_args(argv)
    run = load_run(args.params)
    out = safe_path(args.out)
    # ValidationFailed (exit 2, one line per failed expectation, a hint naming the report) stops the run.
    summary = validate_store(run.store, run.window.all_dates, known_scenarios(run.params), run.params.validation,
                             out, memory_limit_mib=run.params.data.memory_limit_mib)
    log.info("validation passed: %s", {k: v.get("success") for k, v in summary.get("suites", {}).items()})
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
