"""Stage `index`: one scenario's FAISS index for every row that may be published (the candidate sass and
the challenger, publish.challenger), over the item tower's scenario vectors: indexes/<row>/<scenario>.

A declared scenario skipped today (too few training rows) gets ``skipped.json`` instead of ``index.faiss``,
naming the scenario that serves it (sass_retrieval.index.routing); the stage succeeds.
"""

from __future__ import annotations

from sass_retrieval.rows import CANDIDATE
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--scenario", required=True)
    p.add_argument("--row", action="append", default=None,
                   help="row to index, repeatable (default: sass and publish.challenger)")
    p.add_argument("--models", default="models", help="folder of models/<row>/ (models.checkpoint.row_checkpoint)")
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="indexes", help="writes <out>/<row>/<scenario>/")
    args = p.parse_args(argv)
    from sass_retrieval.index.build import index_scenario  # torch and FAISS: only when the stage runs

    run = load_run(args.params)
    rows = args.row or [CANDIDATE, run.params.publish.challenger]
    index_scenario(run, args.scenario, rows, safe_path(args.models), args.features, safe_path(args.out))
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
