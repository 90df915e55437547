"""`sass serve`: HTTP retrieval service over the published model and indexes (FastAPI + uvicorn).

    sass serve                                  # 127.0.0.1:8000, the publish folder of params.yaml
    sass serve --port 8080 --workers 2          # two processes, each with its own copy of the version

GET /recommend?user=&scenario=&k=[&weights=click:1,diversity:0.3], /healthz, /version; see docs/serving.md.
The version in service is reloaded aside and swapped in when `publish` moves `current` (polled every
--reload-interval seconds). A version with the list re-ranker serves its list under the request's goal weights.
The service has no authentication: it binds the loopback interface unless --host says otherwise.
"""

from __future__ import annotations

import os

from .base import parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes; each loads its own copy of the version")
    p.add_argument("--reload-interval", type=float, default=5.0,
                   help="seconds between checks of <publish.dir>/current for a new version (0: never)")
    p.add_argument("--threads", type=int, default=1, help="torch/FAISS threads per worker process")
    p.add_argument("--published", default=None,
                   help="publish folder holding `current`, or one version folder (default: publish.dir)")
    p.add_argument("--features", default="data/features", help="the split's output: users' features")
    p.add_argument("--store", default=None, help="the store, for static user/item tables (default: data.store_dir)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    import uvicorn

    from sass_retrieval.serve.settings import FACTORY, resolve_settings, warn_if_exposed

    settings = resolve_settings(args.params, published=args.published, features=args.features, store=args.store,
                                reload_interval=args.reload_interval, threads=args.threads)
    warn_if_exposed(args.host)
    os.environ.update(settings.to_env())   # read by create_app in every worker process
    uvicorn.run(FACTORY, factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
