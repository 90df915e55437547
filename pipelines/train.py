"""Stage `train`: fine-tune one trained row of the registry (sass_retrieval.rows) into models/<row>/.

The folder's layout is the row's (sass_retrieval.train.model_folder); incremental days start from the
published folder."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace

from sass_retrieval.atomic import write_json
from sass_retrieval.rows import TRAINED_ROWS, spec
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--row", required=True, choices=TRAINED_ROWS)
    p.add_argument("--features", default="data/features")
    p.add_argument("--shards", default="data/shards", help="training shards, read with train.input: stream "
                   "(default: data/shards, the shards stage's)")
    p.add_argument("--pretrained", default="models/pretrain/model.pt", help="stage-1 checkpoint (row sass)")
    p.add_argument("--out", default=None, help="default: models/<row>")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from sass_retrieval.train import launch

    # train.nodes x train.procs_per_node > 1: run again as that many torchrun processes (train.launch)
    rc = launch.relaunch("pipelines.train", sys.argv[1:] if argv is None else argv, args.params, f"train-{args.row}")
    if rc is not None:
        return rc
    from sass_retrieval.train.distributed import init_from_env
    from sass_retrieval.train.model_folder import train_folder

    init_from_env()  # under torchrun: join the gloo process group; standalone: no-op
    t0 = time.perf_counter()
    run = load_run(args.params)
    run = replace(run, params=launch.per_process_threads(run.params))   # several processes share a node's threads
    out = safe_path(args.out or f"models/{args.row}")
    out.mkdir(parents=True, exist_ok=True)
    report = train_folder(run, spec(args.row), safe_path(args.features), out, args.pretrained, not args.no_progress,
                          shards=safe_path(args.shards))
    if report is None:   # a distributed worker: the main process writes the folder
        return 0
    write_json(out / "report.json", {"row": args.row, "report": report, "seconds": round(time.perf_counter() - t0, 2)})
    log.info("trained %s in %.1fs", args.row, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main
    from sass_retrieval.train.launch import record_exit

    raise SystemExit(record_exit(run_main(main)))   # a rank's failing code reaches the launching process
