"""`sass`: one entry point, one subcommand per pipeline stage (the same modules dvc.yaml calls).

    sass params | ingest | validate | split | pretrain | train | index | rank | evaluate | report | publish
    sass recommend --user 42 --scenario 1 --k 20
    sass runs list | sass runs restore YYYYMMDD|run-YYYYMMDD-NN
    sass published pull --from s3://bucket/published
    sass run [ARGS]     # = dvc repro [ARGS] under the workspace's run lock
    sass --debug ...    # the traceback of an error too (or SASS_DEBUG=1); exit codes: docs/errors.md

Run `sass <command> --help` for each command's options.
"""

from __future__ import annotations

import importlib
import sys

from .rows import TRAINED_ROWS, help_text

COMMANDS = {
    "params": ("pipelines.check_params", "check params.yaml against the schema (exit 3 on a bad key or value)"),
    "ingest": ("pipelines.ingest", "raw logs -> canonical daily Parquet store"),
    "validate": ("pipelines.validate", "checks on every row + GE on a seeded sample; stops the run on bad data"),
    "split": ("pipelines.split", "per-scenario features and samples (--scenario S | --pairs)"),
    "pretrain": ("pipelines.pretrain", "cross-scenario contrastive pretraining"),
    "train": ("pipelines.train", f"fine-tune a trained row (--row {help_text(TRAINED_ROWS)})"),
    "index": ("pipelines.index", "build one scenario's FAISS index (--scenario S)"),
    "rank": ("pipelines.rank", "the pre-ranker of each publishable row (retrieval's top-K rescored)"),
    "evaluate": ("pipelines.evaluate", "the benchmark protocol (docs/benchmark.md) for every reference row"),
    "report": ("pipelines.report", "HTML + markdown run report"),
    "publish": ("pipelines.publish", "publish gate and atomic swap"),
    "recommend": ("pipelines.recommend", "top-K items for a user in a scenario from the published index"),
    "serve": ("pipelines.serve", "HTTP retrieval service over the published indexes (127.0.0.1 by default)"),
    "published": ("pipelines.published", "pull: the version in service from the published-model store "
                                          "($SASS_PUBLISHED_URL, several machines)"),
    "runs": ("pipelines.runs", "list recorded runs (one line each) with metrics, restore a day's or a run's models"),
    "run": (None, "dvc repro [ARGS]: the whole pipeline (or the named stages), refused while another run holds "
                  "the workspace"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [__doc__.strip().splitlines()[0], "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module; its errors become ``error: ...`` lines and the exit code of their
    class (``sass_retrieval.errors``: 2 bad input, 3 bad config, 4 missing prerequisite, 5 busy), with the
    traceback only under ``--debug`` (anywhere on the line) or SASS_DEBUG=1."""
    from .errors import EXIT_BAD_INPUT, debug_requested, run_main

    debug, argv = debug_requested(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: sass: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if COMMANDS[name][0] is None:
        return run_main(run, rest, debug=debug)
    module = importlib.import_module(COMMANDS[name][0])
    return run_main(module.main, rest, debug=debug)


def run(args: list[str]) -> int:
    """``sass run``: ``dvc repro`` itself (DVC orders, skips up-to-date stages and records dvc.lock), with this
    interpreter's bin first on PATH so the stages' ``python`` is the project's, under the workspace's run
    lock so a second ``sass run`` is refused with a readable message. A failing stage stops the run."""
    import os
    import subprocess
    from pathlib import Path

    from .runlock import run_lock

    project = Path.cwd()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    with run_lock(project / ".locks" / "run.lock", "sass run"):   # RunLocked: exit 5 (busy), one line
        return subprocess.call([sys.executable, "-m", "dvc", "repro", *args], cwd=project, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
