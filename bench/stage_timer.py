"""Run pipeline stages as separate processes and measure each one's wall time and peak memory.

Peak memory is the maximum resident set size of the stage process (and its children) as the kernel
reports it (`/usr/bin/time -f %M`), which is what a 2-core / 8 GiB machine has to hold.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sass_retrieval.orchestration.dvc_graph import load_graph  # noqa: E402


@dataclass
class StageTime:
    stage: str
    seconds: float
    peak_mib: float
    error: str = ""     # the stage's last error line when it failed (run_stage with check=False)


def dvc_plan(work: Path, groups: Collection[str] | None = None) -> list[tuple[str, list[str]]]:
    """The stages of these dvc.yaml entries (None: all of them), in dependency order, as (stage name,
    arguments to python).

    Resolved from the repository's dvc.yaml against ``work``'s params.yaml (foreach items included),
    so a benchmark times exactly the commands `dvc repro` would run there, not a copy of them.
    """
    graph = load_graph(work, str(ROOT / "dvc.yaml"))
    groups = set(graph.groups()) if groups is None else set(groups)
    unknown = groups - set(graph.groups())
    if unknown:
        raise ValueError(f"dvc.yaml has no stage(s) {sorted(unknown)} (it has {sorted(graph.groups())})")
    plan = []
    for name in graph.topological():
        stage = graph.stages[name]
        if stage.group not in groups:
            continue
        argv = shlex.split(stage.cmd)
        if argv[0] != "python" or "&&" in argv:
            raise ValueError(f"stage {name}: {stage.cmd!r} is not one `python ...` command; cannot time it alone")
        plan.append((name, argv[1:]))
    return plan


def run_stage(stage: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
              check: bool = True) -> StageTime:
    """Wall time and peak RSS of ``python <args>`` in ``cwd``. A failure raises, or with ``check=False`` is
    returned with its last error line: a benchmark at a size where a stage runs out of memory records that."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        cmd = ["/usr/bin/time", "-f", "%e %M", "-o", tf.name, sys.executable, *args]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0 and check:
            raise RuntimeError(f"stage {stage} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        parts = Path(tf.name).read_text().split()
        peak_kib = float(parts[-1]) if parts and parts[-1].replace(".", "").isdigit() else float("nan")
    error = ""
    if res.returncode != 0:
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        error = f"exit {res.returncode}" + (f": {lines[-1][:200]}" if lines else "")
    return StageTime(stage, wall, peak_kib / 1024.0, error)


def table(rows: list[StageTime]) -> str:
    lines = ["| stage | wall s | peak RSS MiB |", "|---|---:|---:|"]
    lines += [f"| {r.stage}{f' (**failed**: {r.error})' if r.error else ''} | {r.seconds:.1f} | {r.peak_mib:.0f} |"
              for r in rows]
    lines.append(f"| **total** | **{sum(r.seconds for r in rows):.1f}** | **{max(r.peak_mib for r in rows):.0f}** |")
    return "\n".join(lines)
