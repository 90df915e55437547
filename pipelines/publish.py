"""Stage `publish`: champion/challenger. The better of the candidate (sass) and the challenger
(publish.challenger) becomes "current" only when it beats the model in service by more than the paired 95%
confidence interval on this run's evaluation pairs; otherwise the model in service stays. On the first day
(nothing in service) the better of the two is published.

The decision, the scores and the paired margins go to reports/publish.json and one line of
<publish.dir>/decisions.jsonl:

    winner      the row published, or null when the model in service stays
    best        the better of candidate and challenger today; served: the row in service after the decision
    scores      macro NDCG@50 of candidate, challenger and the model in service ("published")
    margins     "<a>-<b>": paired bootstrap of a - b on this run's pairs ({diff, lo, hi, pairs, significant}),
                for candidate vs challenger and for the best vs the model in service
"""

from __future__ import annotations

import json
import logging
import sys

from sass_retrieval.config import get
from sass_retrieval.publish import (
    CANDIDATE,
    SERVED_FILE,
    current_version,
    decide,
    install_version,
    point_current,
    published_metric,
    record,
    run_id,
    served_record,
    served_row,
)

from .base import load_run, parser, published_dir, safe_path, setup_logging, write_json

log = logging.getLogger("publish")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--per-pair", default="metrics/per_pair.npz")
    p.add_argument("--validation", default="reports/validation/summary.json")
    p.add_argument("--out", default="reports/publish.json")
    args = p.parse_args(argv)
    run = load_run(args.params)
    root = published_dir(run.params)
    challenger = str(get(run.params, "publish.challenger"))
    vpath = safe_path(args.validation)
    validation_ok = vpath.exists() and bool(json.loads(vpath.read_text()).get("success"))
    metrics = json.loads(safe_path(args.metrics).read_text())
    level = float((metrics.get("significance_config") or {}).get("level", 0.95))
    published = published_metric(root, metrics)
    decision = decide(metrics, safe_path(args.per_pair), validation_ok, challenger, published,
                      float(get(run.params, "publish.tolerance")))
    in_service = current_version(root)
    entry = {"window_end": run.window.test_end, "publish": decision.publish, "reason": decision.reason,
             "candidate_ndcg@50": decision.candidate, "published_ndcg@50": decision.published,
             "candidate": CANDIDATE, "challenger": challenger, "best": decision.best, "winner": decision.winner,
             "served": decision.winner or (served_row(in_service) if in_service else None),
             "scores": {**decision.scores, "published": published}, "margins": decision.margins,
             "level": level}
    if decision.publish:
        from sass_retrieval.runlock import run_lock

        row = decision.winner
        sources = {"models/pretrain": safe_path("models/pretrain"), f"models/{CANDIDATE}": safe_path("models/sass"),
                   f"models/{challenger}": safe_path(f"models/{challenger}"),
                   "indexes": safe_path(f"indexes/{row}"), "metrics.json": safe_path(args.metrics),
                   "validation.json": vpath}
        sources = {k: v for k, v in sources.items() if v.exists() or k in ("indexes", f"models/{row}")}
        record_served = served_record(row, sources["indexes"])
        if record_served["fallback"]:  # scenarios skipped today: no index of their own, served by another one
            entry["fallback"] = {s: m["served_by"] for s, m in record_served["fallback"].items()}
            log.info("skipped scenarios and the index serving them: %s", entry["fallback"])
        served = json.dumps(record_served, sort_keys=True) + "\n"
        files = [f for src in sources.values() for f in ([src] if src.is_file() else sorted(src.rglob("*")))
                 if f.is_file()]
        vid = run_id(run.window.test_end, files)  # the served row's indexes are among the files
        with run_lock(root / ".publish.lock", "publish"):
            target = install_version(root, vid, sources, {SERVED_FILE: served})
            point_current(root, target)
        entry["version"] = vid
        log.info("published %s (%s): %s", vid, row, decision.reason)
    else:
        print(f"NOT PUBLISHED: {decision.reason}. The current model and indexes stay in service.", file=sys.stderr)
    record(root, entry)
    write_json(safe_path(args.out), entry)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
