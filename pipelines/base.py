"""Shared plumbing of the stage entry points: arguments, logging, atomic JSON outputs.

The run's context (params, store, window, scenarios, output paths) is library code in
``sass_retrieval.run``; its names are re-exported here while the stages move to importing it.
Light on purpose: no torch, so the data stages import only the data modules (dvc.yaml's deps are the
import closure, checked by tests/test_dvc_deps.py). The feature bank is in ``pipelines.common``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from sass_retrieval.atomic import write_json
from sass_retrieval.run import (
    Run,
    incremental_params,
    load_run,
    published_dir,
    read_mapped,
    safe_path,
    warm_start_path,
)

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "Run", "incremental_params", "load_run", "parser", "published_dir", "read_mapped", "safe_path",
           "setup_logging", "warm_start_path", "write_json"]


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("SASS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p
