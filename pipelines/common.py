"""Shared plumbing of the stage entry points: ``pipelines.base`` plus the feature bank.

``bank_for`` imports torch when called, so only the stages that need it import this module; the others import
``pipelines.base``, whose names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    ROOT,
    Run,
    incremental_params,
    load_run,
    parser,
    published_dir,
    read_mapped,
    safe_path,
    setup_logging,
    warm_start_path,
    write_json,
)

__all__ = ["ROOT", "Run", "bank_for", "incremental_params", "load_run", "parser", "published_dir", "read_mapped",
           "safe_path", "setup_logging", "warm_start_path", "write_json"]


def bank_for(run: Run, features_dir: str | Path = "data/features", serving_only: bool = False):
    """The run's feature bank (sass_retrieval.models.bank.bank_for), imported when called: it pulls torch."""
    from sass_retrieval.models.bank import bank_for as load

    return load(run, features_dir, serving_only)
