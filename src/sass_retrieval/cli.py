"""`sass`: one entry point, one subcommand per pipeline stage (the same modules dvc.yaml calls).

    sass params | ingest | validate | split | pretrain | train | index | evaluate | report | publish
    sass recommend --user 42 --scenario 1 --k 20
    sass runs list | sass runs restore YYYYMMDD
    sass run            # every stage in order, without DVC (dvc repro is the tracked way)

Run `sass <command> --help` for each command's options.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "params": ("pipelines.check_params", "check params.yaml against the schema (exit 3 on a bad key or value)"),
    "ingest": ("pipelines.ingest", "raw logs -> canonical daily Parquet store"),
    "validate": ("pipelines.validate", "Great Expectations suites; stops the run on bad data"),
    "split": ("pipelines.split", "per-scenario features and samples (--scenario S | --pairs)"),
    "pretrain": ("pipelines.pretrain", "cross-scenario contrastive pretraining"),
    "train": ("pipelines.train", "fine-tune a reference row (--row sass|sass_base|dssm_mixed|dssm_single)"),
    "index": ("pipelines.index", "build one scenario's FAISS index (--scenario S)"),
    "evaluate": ("pipelines.evaluate", "BENCHMARK.md protocol for every reference row"),
    "report": ("pipelines.report", "HTML + markdown run report"),
    "publish": ("pipelines.publish", "publish gate and atomic swap"),
    "recommend": ("pipelines.recommend", "top-K items for a user in a scenario from the published index"),
    "runs": ("pipelines.runs", "list past daily runs with metrics, restore one day's model and indexes"),
    "run": ("pipelines.run_all", "run every stage in order without DVC"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [__doc__.strip().splitlines()[0], "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"sass: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
