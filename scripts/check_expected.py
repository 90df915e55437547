"""Check a quick-start run against its expected values.

    make run && python scripts/check_expected.py
    python scripts/check_expected.py path/to/metrics.json --expected tests/expected/quickstart.yaml

Compares every row's macro NDCG@50 and HitRate@50 in metrics.json (default metrics/metrics.json, what `make run`
writes) with tests/expected/quickstart.yaml (expected value and tolerance per row and metric, from the seed
spread: bench/seed_spread.py). Prints one line per value and exits 1 when any is outside its tolerance, missing,
or a row the file does not expect was scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quickstart import EXPECTED_FILE, LABELS, compare, headline, load_expected  # noqa: E402


def report(measured: dict[str, dict[str, float]], expected: dict) -> list[str]:
    """One line per expected value: the run's value, the expected one and its tolerance."""
    lines = []
    for row, by_metric in expected.items():
        for m, e in by_metric.items():
            got = measured.get(row, {}).get(m)
            shown = "missing" if got is None else f"{got:.4f}"
            ok = got is not None and abs(got - e["expected"]) <= e["tolerance"]
            lines.append(f"{'ok  ' if ok else 'FAIL'} {row:12s} macro {LABELS[m]:10s} {shown:>8s}   "
                         f"expected {e['expected']:.4f} ± {e['tolerance']:.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", nargs="?", default="metrics/metrics.json", help="a run's metrics.json")
    p.add_argument("--expected", type=Path, default=EXPECTED_FILE)
    args = p.parse_args(argv)
    path = Path(args.metrics)
    if not path.exists():
        print(f"{path} not found: run `make run` first (or name a run's metrics.json)", file=sys.stderr)
        return 2
    measured = headline(json.loads(path.read_text()))
    expected = load_expected(args.expected)
    print("\n".join(report(measured, expected)))
    problems = compare(measured, expected)
    if problems:
        print(f"\n{len(problems)} problem(s):\n" + "\n".join(f"- {x}" for x in problems), file=sys.stderr)
        return 1
    print(f"\nevery row within tolerance of {os.path.relpath(args.expected)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
