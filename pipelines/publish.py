"""Stage `publish`: make this run's model and indexes "current" if the gate allows; otherwise say why."""

from __future__ import annotations

import json
import logging
import sys

from sass_retrieval.config import get
from sass_retrieval.publish import gate, install_version, point_current, published_metric, record, run_id

from .base import load_run, parser, published_dir, safe_path, setup_logging, write_json

log = logging.getLogger("publish")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--validation", default="reports/validation/summary.json")
    p.add_argument("--out", default="reports/publish.json")
    args = p.parse_args(argv)
    run = load_run(args.params)
    root = published_dir(run.params)
    vpath = safe_path(args.validation)
    validation_ok = vpath.exists() and bool(json.loads(vpath.read_text()).get("success"))
    metrics = json.loads(safe_path(args.metrics).read_text())
    candidate = metrics["sass"]["macro"]["ndcg@50"]
    decision = gate(validation_ok, candidate, published_metric(root, metrics),
                    float(get(run.params, "publish.tolerance")))
    entry = {"window_end": run.window.test_end, "publish": decision.publish, "reason": decision.reason,
             "candidate_ndcg@50": decision.candidate, "published_ndcg@50": decision.published}
    if decision.publish:
        from sass_retrieval.runlock import run_lock

        sources = {"models/sass": safe_path("models/sass"), "models/pretrain": safe_path("models/pretrain"),
                   "indexes": safe_path("indexes"), "metrics.json": safe_path(args.metrics),
                   "validation.json": vpath}
        files = [f for src in sources.values() for f in ([src] if src.is_file() else sorted(src.rglob("*")))
                 if f.is_file()]
        vid = run_id(run.window.test_end, files)
        with run_lock(root / ".publish.lock", "publish"):
            target = install_version(root, vid, sources)
            point_current(root, target)
        entry["version"] = vid
        log.info("published %s: %s", vid, decision.reason)
    else:
        print(f"NOT PUBLISHED: {decision.reason}. The current model and indexes stay in service.", file=sys.stderr)
    record(root, entry)
    write_json(safe_path(args.out), entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
