"""Shared plumbing of the stage entry points: arguments and logging.

Everything else a stage needs (the run's context, the feature bank, atomic writes) is library code the
stage imports itself, so dvc.yaml's deps stay each stage's own import closure (tests/test_dvc_deps.py).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("SASS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p
