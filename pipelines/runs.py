"""`sass runs`: the runs the Airflow DAG records as git tags: each run its own run-YYYYMMDD-NN (never moved),
and day-YYYYMMDD on the day's latest run (a commit of dvc.lock, params.yaml and the metrics; the models and
indexes are in the DVC cache/remote, named by dvc.lock). RUN below is a day (YYYYMMDD: its current run) or a
run tag (run-YYYYMMDD-NN).

    sass runs list                      one line per run: day, run, recorded at, macro NDCG@50 of every
                                        reference row, published or not; * marks each day's current run
    sass runs restore RUN [--to DIR] [--remote NAME]
                                        that run's models/ and indexes/ (dvc get --rev day-YYYYMMDD | run-...)
    sass runs diff RUN RUN              macro metrics of two runs (dvc metrics diff day-A day-B: all of them)
    sass runs record YYYYMMDD [--no-push]
                                        record the workspace's current run by hand (after `dvc repro`)

The DVC commands work on the same tags: `dvc metrics diff day-20220504 day-20220505`, `dvc plots diff
day-20220504 day-20220505`, `git checkout day-20220504 && dvc checkout`, `dvc get . models/sass --rev
run-20220504-01`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sass_retrieval.orchestration import runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sass runs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="project folder (default: $SASS_PROJECT_DIR or the current folder)")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="table of recorded runs")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    rs = sub.add_parser("restore", help="restore one run's models/ and indexes/")
    rs.add_argument("day", help="YYYYMMDD (the day's current run) or a run tag run-YYYYMMDD-NN")
    rs.add_argument("--to", default=None, help="write DIR/models and DIR/indexes instead of the workspace")
    rs.add_argument("--remote", default=None, help="DVC remote to fetch from (default: the default remote)")
    df = sub.add_parser("diff", help="compare two runs' metrics")
    df.add_argument("a", help="YYYYMMDD (the day's current run) or run-YYYYMMDD-NN")
    df.add_argument("b", help="YYYYMMDD (the day's current run) or run-YYYYMMDD-NN")
    rc = sub.add_parser("record", help="record the workspace's current dvc.lock/metrics as a day")
    rc.add_argument("day", help="YYYYMMDD")
    rc.add_argument("--no-push", action="store_true", help="do not push the DVC cache to the remote")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.root).resolve() if args.root else runs.project_root(Path.cwd())
    # errors (a day or run tag that is not one, no such recorded run, ...) become one `error:` line: sass_retrieval.errors
    if args.command == "list":
        found = runs.list_runs(root)
        if args.json:
            print(json.dumps([{"day": r.day, "tag": r.tag, "run_tag": r.run_tag, "run_id": r.run_id,
                               "recorded_at": r.recorded_at, "current": r.current, "end_date": r.end_date,
                               "ndcg@50": r.ndcg50, "published": r.published, "winner": r.winner,
                               "version": r.version, "reason": r.reason, "pushed": r.pushed}
                              for r in found],
                             indent=2))
        else:
            print(runs.format_runs(found))
    elif args.command == "restore":
        restored = runs.restore(root, args.day, args.to, remote=args.remote)
        print(runs.format_restored(args.day, restored, args.to))
    elif args.command == "diff":
        print(runs.diff_runs(root, args.a, args.b))
    elif args.command == "record":
        tag = runs.record_run(root, args.day, {"recorded_by": "sass runs record"}, push=not args.no_push)
        print(f"recorded {runs.current_run_tag(root, tag) or tag} ({tag} now points to it)")
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
