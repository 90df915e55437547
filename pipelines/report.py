"""Stage `report`: the run report, one self-contained HTML page (reports/run/index.html) plus report.md."""

from __future__ import annotations

import logging

from sass_retrieval.config import load_params
from sass_retrieval.evaluate.report import gather, git_commit, write_report
from sass_retrieval.publish_run import gate_preview
from sass_retrieval.run import published_dir, safe_path

from .base import ROOT, parser, setup_logging

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--validation", default="reports/validation", help="validation report folder")
    p.add_argument("--models", default="models")
    p.add_argument("--features", default="data/features")
    p.add_argument("--per-pair", default="metrics/per_pair.npz")
    p.add_argument("--out", default="reports/run")
    args = p.parse_args(argv)
    params = load_params(args.params)
    out = safe_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = gather(metrics=safe_path(args.metrics), validation_dir=safe_path(args.validation),
                 models_dir=safe_path(args.models), features_dir=safe_path(args.features),
                 published_dir=published_dir(params), out_dir=out, commit=git_commit(ROOT))
    rep.gate = gate_preview(rep.metrics, rep.validation, safe_path(args.per_pair), params)
    for problem in rep.problems:
        log.warning("report: %s", problem)
    written = write_report(rep, out)
    log.info("run report: %s (%d figures)", written["index.html"], len(written) - 2)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
