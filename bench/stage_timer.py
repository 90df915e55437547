"""Run pipeline stages as separate processes and measure each one's wall time and peak memory.

Peak memory is the maximum resident set size of the stage process (and its children) as the kernel
reports it (`/usr/bin/time -f %M`), which is what a 2-core / 8 GiB machine has to hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class StageTime:
    stage: str
    seconds: float
    peak_mib: float


def run_stage(stage: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> StageTime:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        cmd = ["/usr/bin/time", "-f", "%e %M", "-o", tf.name, sys.executable, *args]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"stage {stage} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        parts = Path(tf.name).read_text().split()
        peak_kib = float(parts[-1]) if parts else float("nan")
    return StageTime(stage, wall, peak_kib / 1024.0)


def table(rows: list[StageTime]) -> str:
    lines = ["| stage | wall s | peak RSS MiB |", "|---|---:|---:|"]
    lines += [f"| {r.stage} | {r.seconds:.1f} | {r.peak_mib:.0f} |" for r in rows]
    lines.append(f"| **total** | **{sum(r.seconds for r in rows):.1f}** | **{max(r.peak_mib for r in rows):.0f}** |")
    return "\n".join(lines)
