"""`sass run`: every stage of dvc.yaml in order, in this process tree, without DVC bookkeeping.

The tracked way is `dvc repro`; this is for a first look, and for environments without a git repo.
The stage list is read from dvc.yaml (one declaration), so it can not drift from the pipeline.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from .base import ROOT, parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.parse_args(argv)
    from sass_retrieval.orchestration.dvc_graph import load_graph
    from sass_retrieval.runlock import RunLocked, run_lock

    project = Path.cwd() if (Path.cwd() / "dvc.yaml").exists() else ROOT
    try:
        with run_lock(project / ".locks" / "run.lock", "sass run"):
            return _run(load_graph(project), project)
    except RunLocked as exc:
        print(str(exc), file=sys.stderr)
        return 3


def _run(graph, project: Path) -> int:
    for stage in graph.topological():
        cmd = graph.stages[stage].cmd
        print(f"==> {stage}: {cmd}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable if a == "python" else a for a in shlex.split(cmd)], cwd=project)
        if rc != 0:
            print(f"stage {stage} failed (exit {rc}); later stages were not run", file=sys.stderr)
            return rc
        print(f"<== {stage} done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
