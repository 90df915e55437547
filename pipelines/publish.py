"""Stage `publish`: champion/challenger. The better of the candidate (sass) and the challenger
(publish.challenger) becomes "current" only when it beats the model in service by more than the paired 95%
confidence interval on this run's evaluation pairs; otherwise the model in service stays. On the first day
(nothing in service) the better of the two is published (sass_retrieval.publish_run).

The decision, the scores and the paired margins go to reports/publish.json and one line of
<publish.dir>/decisions.jsonl:

    winner      the row published, or null when the model in service stays
    best        the better of candidate and challenger today; served: the row in service after the decision
    scores      macro NDCG@50 of candidate, challenger and the model in service ("published")
    margins     "<a>-<b>": paired bootstrap of a - b on this run's pairs ({diff, lo, hi, pairs, significant}),
                for candidate vs challenger and for the best vs the model in service
    stages      (a published version) "retrieval", then "rank" when it holds the winner's pre-ranker
                (models/rank/<row>, copied with models/rank/stats), then "rerank" when it holds the winner's
                list re-ranker (models/rerank/<row>, copied with models/rerank/stats)
"""

from __future__ import annotations

import sys

from sass_retrieval.atomic import write_json
from sass_retrieval.publish_run import publish_run
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--per-pair", default="metrics/per_pair.npz")
    p.add_argument("--validation", default="reports/validation/summary.json")
    p.add_argument("--out", default="reports/publish.json")
    args = p.parse_args(argv)
    run = load_run(args.params)
    entry = publish_run(run, safe_path(args.metrics), safe_path(args.per_pair), safe_path(args.validation))
    if not entry["publish"]:
        print(f"NOT PUBLISHED: {entry['reason']}. The current model and indexes stay in service.", file=sys.stderr)
    write_json(safe_path(args.out), entry)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
