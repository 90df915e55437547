"""`sass recommend`: top-K videos for a user in a scenario, from the published (or a given) model and index.

Answers with the same code as `sass serve` (sass_retrieval.serve), so the two agree. A user without features
in the scenario (cold) or unknown to the bank gets its popular list, marked "fallback": "popular" with why.
A version (or workspace) with a list re-ranker answers with its list under --weights' goal weights.
"""

from __future__ import annotations

import json
import sys

from .base import parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--user", type=int, required=True, help="user id")
    p.add_argument("--scenario", required=True, help="scenario name (see scenarios.names)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--from", dest="source", default=None, help="folder holding models/sass and indexes/ "
                   "(default: the published current version, else the workspace)")
    p.add_argument("--row", default=None, help="with a workspace (not a version): the row to serve (default sass)")
    p.add_argument("--features", default="data/features")
    p.add_argument("--weights", default=None, help="goal weights of the list re-ranker, e.g. click:1,diversity:0.3 "
                   "(goals not named keep their defaults), and/or objective weights of a multi-objective version "
                   "(row sass_mt), e.g. click=1,long_view=0.5 (default: the weights it was published with)")
    args = p.parse_args(argv)
    from sass_retrieval.run import load_run, published_dir, safe_path
    from sass_retrieval.serve.loader import MAX_K, VersionLoadError, load_version, version_folder
    from sass_retrieval.serve.query import answer, recommend

    def refuse(message: str) -> int:
        print(f"recommend: {message}", file=sys.stderr)
        return 2

    if not 1 <= args.k <= MAX_K:
        return refuse(f"--k must be in 1..{MAX_K}, got {args.k}")
    run = load_run(args.params)
    base = version_folder(args.source, published_dir(run.params), safe_path("."))
    try:
        version = load_version(base, safe_path(args.features), run.store, row=args.row, scenarios=[args.scenario])
    except VersionLoadError as exc:
        return refuse(str(exc))
    if args.scenario not in version.routes:
        return refuse(f"unknown scenario {args.scenario!r}; known: {version.bank.scenarios}")
    try:
        rec = recommend(version, args.user, args.scenario, args.k, args.weights)
    except ValueError as exc:   # weights: unknown goal or objective, out of range, or nothing to apply them to
        return refuse(f"--weights: {exc}")
    if rec.fallback:
        print(f"recommend: user {args.user} {rec.reason} in {args.scenario}: the scenario's popular list",
              file=sys.stderr)
    print(json.dumps(answer(version, rec, args.user, args.scenario, base, args.weights), indent=2))
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
