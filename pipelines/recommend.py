"""`sass recommend`: top-K videos for a user in a scenario, from the published (or a given) model and index.

Loads the version with the same loader as `sass serve` (sass_retrieval.serve.loader) and answers with the
same function, so the CLI and the service agree. A user without features in the scenario (cold) or unknown
to the bank gets the scenario's popular list, marked "fallback": "popular" with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import load_run, parser, published_dir, safe_path, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--user", type=int, required=True, help="user id")
    p.add_argument("--scenario", required=True, help="scenario name (see scenarios.names)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--from", dest="source", default=None,
                   help="folder holding models/sass and indexes/ (default: the published current version, "
                        "else the workspace)")
    p.add_argument("--row", default=None, help="with a workspace (not a published version): the row to serve "
                                               "(default sass)")
    p.add_argument("--features", default="data/features")
    p.add_argument("--weights", default=None,
                   help="objective weights of a multi-objective version (row sass_mt), e.g. click=1,long_view=0.5; "
                        "default: the weights it was published with (multitask.weights)")
    args = p.parse_args(argv)
    from sass_retrieval.serve.loader import MAX_K, VersionLoadError, load_version
    from sass_retrieval.serve.query import recommend

    if not 1 <= args.k <= MAX_K:
        print(f"recommend: --k must be in 1..{MAX_K}, got {args.k}", file=sys.stderr)
        return 2
    run = load_run(args.params)
    if args.source:
        base = Path(args.source)
    elif (published_dir(run.params) / "current").exists():
        base = (published_dir(run.params) / "current").resolve()
    else:
        base = safe_path(".")
    try:
        version = load_version(base, safe_path(args.features), run.store, row=args.row, scenarios=[args.scenario])
    except VersionLoadError as exc:
        print(f"recommend: {exc}", file=sys.stderr)
        return 2
    if args.scenario not in version.routes:
        print(f"recommend: unknown scenario {args.scenario!r}; known: {version.bank.scenarios}", file=sys.stderr)
        return 2
    try:
        rec = recommend(version, args.user, args.scenario, args.k, args.weights)
    except ValueError as exc:   # weights: unknown objective, negative, or a single-objective version
        print(f"recommend: --weights: {exc}", file=sys.stderr)
        return 2
    if rec.fallback:
        print(f"recommend: user {args.user} {rec.reason} in {args.scenario}: the scenario's popular list",
              file=sys.stderr)
    out = [{"rank": r + 1, "video_id": v, "score": round(s, 5)}
           for r, (v, s) in enumerate(zip(rec.items, rec.scores, strict=True))]
    print(json.dumps({"user": args.user, "scenario": args.scenario, "source": str(base), "row": version.row,
                      "version": version.run_id, "fallback": rec.fallback, "reason": rec.reason,
                      "served_by": rec.served_by, "weights": args.weights, "items": out},
                     indent=2))
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
