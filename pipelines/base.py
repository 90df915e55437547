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


def row_model_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The arguments of a stage that trains a model per publishable row on top of its index (rank, rerank)."""
    p = parser(doc)
    p.add_argument("--models", default="models", help="folder of models/<row>/")
    p.add_argument("--features", default="data/features")
    p.add_argument("--indexes", default="indexes", help="folder of indexes/<row>/<scenario>/ (the index stage's)")
    p.add_argument("--out", default=out)
    return p
