"""`sass recommend`: top-K videos for a user in a scenario, from the published (or a given) model and index."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .common import bank_for, load_run, parser, published_dir, safe_path, setup_logging


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
    args = p.parse_args(argv)
    from sass_retrieval.evaluate.embedding_recommender import embed_users
    from sass_retrieval.index.faiss_index import load_index, search
    from sass_retrieval.publish import SERVED_FILE, served_row
    from sass_retrieval.train.checkpoint import load_model

    run = load_run(args.params)
    if args.source:
        base = Path(args.source)
    elif (published_dir(run.params) / "current").exists():
        base = (published_dir(run.params) / "current").resolve()
    else:
        base = safe_path(".")
    if (base / SERVED_FILE).exists() or (base / "indexes" / args.scenario).is_dir():
        row = served_row(base)                       # a published version: the row it serves
        index_dir = base / "indexes" / args.scenario
    else:                                            # a workspace: indexes/<row>/<scenario>
        row = args.row or "sass"
        index_dir = base / "indexes" / row / args.scenario
    model, _ = load_model(base / "models" / row / "model.pt")
    index = load_index(index_dir / "index.faiss")
    bank = bank_for(run, args.features, serving_only=True)
    if args.scenario not in bank.per:
        print(f"recommend: unknown scenario {args.scenario!r}; known: {bank.scenarios}", file=sys.stderr)
        return 2
    if args.user not in set(bank.user_ids.tolist()):
        print(f"recommend: user {args.user} has no features in this run (cold user); "
              "scoring with static defaults is not supported from the CLI", file=sys.stderr)
        return 2
    uv = embed_users(model, bank, args.scenario, bank.user_rows(np.array([args.user])))
    scores, ids = search(index, uv, args.k)
    out = [{"rank": r + 1, "video_id": int(v), "score": round(float(s), 5)}
           for r, (v, s) in enumerate(zip(ids[0], scores[0], strict=True)) if v >= 0]
    print(json.dumps({"user": args.user, "scenario": args.scenario, "source": str(base), "row": row, "items": out},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
