"""The options every benchmark script shares: where KuaiRand is, where to work, where results go."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUAIRAND_DIR = ROOT.parent / "shared" / "data" / "kuairand_pure"  # ../shared beside the checkout, as in CI


def bench_parser(doc: str | None, name: str, kuairand: bool = True) -> argparse.ArgumentParser:
    """A parser with --data-dir (if the bench reads KuaiRand), --work bench/.work/<name> and
    --out bench/results/<name> (the .md and .json of the results table)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if kuairand:
        p.add_argument("--data-dir", default=str(KUAIRAND_DIR))
    p.add_argument("--work", default=str(ROOT / "bench" / ".work" / name))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / name))
    return p
