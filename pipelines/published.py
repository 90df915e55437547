"""`sass published pull`: bring the version in service from the published-model store to this machine.

On several machines (docs/cluster.md) the publish task writes to a store that outlives its workspace
($SASS_PUBLISHED_URL: ``s3://bucket/published``). A serving host runs this (by cron, or from a DAG that
consumes the ``sass_published_model`` Asset) to make its publish folder hold that version, ``current``
included; `sass serve` then swaps to it as it does after a local publish.
"""

from __future__ import annotations

import os

from pipelines.base import parser, setup_logging
from sass_retrieval.config import load_params
from sass_retrieval.errors import MissingPrerequisiteError
from sass_retrieval.published_store import pull
from sass_retrieval.run import published_dir


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("command", choices=["pull"])
    p.add_argument("--from", dest="url", default=os.environ.get("SASS_PUBLISHED_URL"),
                   help="the store's URL (default $SASS_PUBLISHED_URL)")
    p.add_argument("--to", default=None, help="the publish folder (default params' publish.dir)")
    args = p.parse_args(argv)
    setup_logging()
    if not args.url:
        raise MissingPrerequisiteError("sass published pull: no store URL (--from, or $SASS_PUBLISHED_URL)")
    target = args.to or published_dir(load_params(args.params))
    vid = pull(args.url, target)
    print(f"{target}: {'version ' + vid + ' in service' if vid else 'nothing published in ' + args.url + ' yet'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
