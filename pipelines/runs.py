"""`sass runs`: the runs the Airflow DAG records as git tags (docs/orchestration.md).

Each run has its own tag run-YYYYMMDD-NN (never moved); day-YYYYMMDD points at the day's latest run. A tag
is a commit of dvc.lock, params.yaml and the metrics (the models and indexes are in the DVC cache/remote,
named by dvc.lock). RUN is a day (YYYYMMDD: its current run) or a run tag; DVC commands take the same tags
(`dvc metrics diff day-20220504 day-20220505`, `dvc get . models/sass --rev run-20220504-01`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sass_retrieval.orchestration import runs

RUN_HELP = "YYYYMMDD (the day's current run) or a run tag run-YYYYMMDD-NN"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sass runs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="project folder (default: $SASS_PROJECT_DIR or the current folder)")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="one line per run: day, run, recorded at, macro NDCG@50 of every row, "
                        "published or not; * marks each day's current run")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    rs = sub.add_parser("restore", help="restore one run's models/ and indexes/ (dvc get --rev <tag>)")
    rs.add_argument("day", help=RUN_HELP)
    rs.add_argument("--to", default=None, help="write DIR/models and DIR/indexes instead of the workspace")
    rs.add_argument("--remote", default=None, help="DVC remote to fetch from (default: the default remote)")
    sub.add_parser("diff", help="the metrics and params that changed between two runs (dvc metrics diff, "
                   "dvc params diff)").add_argument("runs", nargs=2, metavar="RUN", help=RUN_HELP)
    rc = sub.add_parser("record", help="record the workspace's current run by hand (after `dvc repro`)")
    rc.add_argument("day", help="YYYYMMDD")
    rc.add_argument("--no-push", action="store_true", help="do not push the DVC cache to the remote")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.root).resolve() if args.root else runs.project_root(Path.cwd())
    if args.command == "list":
        found = runs.list_runs(root)
        print(json.dumps(found, indent=2) if args.json else runs.format_runs(found))
    elif args.command == "restore":
        print(runs.format_restored(*runs.restore(root, args.day, args.to, remote=args.remote), args.to))
    elif args.command == "diff":
        return runs.diff_runs(root, *args.runs)
    elif args.command == "record":
        tag = runs.record_run(root, args.day, {"recorded_by": "sass runs record"}, push=not args.no_push)
        print(f"recorded {runs.current_run_tag(root, tag) or tag} ({tag} now points to it)")
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
