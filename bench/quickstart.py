"""The quick start's run and its headline numbers, in one place for the seed spread, the expected-values
check and docs/results.md.

The run is what a user gets from `make run`: `dvc repro` of the project's params.yaml (the synthetic default),
here in a copy of the project so nothing in the checkout changes. The copy holds the project's files (tracked,
and new ones git does not ignore; no data, models or .venv) in a fresh git repository, and the venv's bin goes
first on PATH, as the Makefile does (dvc.yaml's commands say `python -m pipelines.<stage>`).

Its headline numbers are metrics/metrics.json's ``rows.<row>.macro.<metric>`` for METRICS; the expected-values
file (tests/expected/quickstart.yaml) gives each an expected value and a tolerance.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ndcg@50", "hit_rate@50")
LABELS = {"ndcg@50": "NDCG@50", "hit_rate@50": "HitRate@50"}
METRICS_FILE = Path("metrics") / "metrics.json"
EXPECTED_FILE = ROOT / "tests" / "expected" / "quickstart.yaml"
MIN_TOLERANCE = 0.001   # a row that no seed moves (popular) still gets a numerical margin

Headline = dict[str, dict[str, float]]   # row -> metric -> value


# ------------------------------------------------------------------------------------------ the run


def copy_project(dst: Path, root: Path = ROOT) -> Path:
    """``root``'s files as in its work tree (tracked, and new ones not ignored; logs left out) in ``dst``, a
    fresh git repository with one commit (DVC works inside git; `dvc exp` needs a commit)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        src = root / rel
        if src.is_file() and not rel.endswith(".log"):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    modules = root / "report-assets" / "node_modules"   # the Data Docs' npm packages: installed, not committed
    if modules.is_dir() and not (dst / "report-assets" / "node_modules").exists():
        (dst / "report-assets" / "node_modules").symlink_to(modules.resolve(), target_is_directory=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy of the work tree"], cwd=dst, check=True)
    return dst


def pipeline_env() -> dict[str, str]:
    """The environment `make run` gives dvc: the venv's bin first on PATH, passive OpenMP waiting."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_WAIT_POLICY": "PASSIVE", "DVC_NO_ANALYTICS": "1"}


def repro(project: Path, log: Path | None = None) -> dict[str, Any]:
    """`dvc repro` in ``project``; its metrics.json. A failure raises with the end of dvc's output."""
    dvc = Path(sys.executable).parent / "dvc"
    res = subprocess.run([str(dvc), "repro"], cwd=project, env=pipeline_env(), capture_output=True, text=True)
    if log is not None:
        log.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {project} ({res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")
    return json.loads((project / METRICS_FILE).read_text())


def run_default(dst: Path, params_file: Path | None = None, settings: Mapping[str, Any] | None = None,
                log: Path | None = None) -> dict[str, Any]:
    """The quick start in a fresh copy of the project at ``dst``: its params.yaml (or ``params_file``) with
    ``settings`` (dotted keys, e.g. ``{"train.seed": 1}``) applied, then `dvc repro`; returns metrics.json."""
    from sass_retrieval.config import update_params_file

    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    copy_project(dst)
    if params_file is not None:
        shutil.copyfile(params_file, dst / "params.yaml")
    if settings:
        update_params_file(dst / "params.yaml", dict(settings))   # the file keeps its comments and layout
    return repro(dst, log)


# ------------------------------------------------------------------------------- the headline numbers


def headline(metrics: Mapping[str, Any]) -> Headline:
    """row -> metric -> macro value, for every row metrics.json scored (METRICS only)."""
    return {row: {m: float(res["macro"][m]) for m in METRICS} for row, res in metrics["rows"].items()}


def load_expected(path: Path = EXPECTED_FILE) -> dict[str, dict[str, dict[str, float]]]:
    """The expected-values file's ``rows``: row -> metric -> {expected, tolerance}."""
    return yaml.safe_load(Path(path).read_text())["rows"]


def compare(measured: Headline, expected: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    """One line per expected value the run misses (outside its tolerance, or not measured at all), and per
    row the run scored that the file does not expect; [] when the run agrees with the file."""
    problems = []
    for row, by_metric in expected.items():
        for m, e in by_metric.items():
            got = measured.get(row, {}).get(m)
            if got is None:
                problems.append(f"{row} {m}: not in the run's metrics (expected {e['expected']:.4f})")
            elif abs(got - e["expected"]) > e["tolerance"]:
                problems.append(f"{row} {m}: {got:.4f}, expected {e['expected']:.4f} ± {e['tolerance']:.4f} "
                                f"(off by {got - e['expected']:+.4f})")
    problems += [f"{row}: scored by the run, not in the expected values" for row in measured if row not in expected]
    return problems


def spread(per_seed: list[Headline]) -> dict[str, dict[str, dict[str, float]]]:
    """row -> metric -> mean, min, max and spread (max − min) over the seeds' runs."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in per_seed[0]:
        out[row] = {}
        for m in METRICS:
            vals = [h[row][m] for h in per_seed]
            out[row][m] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals),
                           "spread": max(vals) - min(vals)}
    return out


def expected_values(stats: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """The expected-values file's rows from a seed spread: the mean over seeds, and as tolerance the spread
    (every seed's run lies within it of the mean), at least MIN_TOLERANCE; both to 4 decimals, the tolerance
    rounded up past the mean's rounding so that no seed's run falls outside it."""
    def tolerance(s: Mapping[str, float]) -> float:
        return math.ceil((max(s["spread"], MIN_TOLERANCE) + 0.00005) * 1e4 - 1e-6) / 1e4

    return {row: {m: {"expected": round(s["mean"], 4), "tolerance": tolerance(s)} for m, s in by_metric.items()}
            for row, by_metric in stats.items()}
