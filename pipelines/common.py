"""Shared plumbing of the stage entry points: ``pipelines.base`` plus the feature bank.

``bank_for`` imports the training code (the bank, the model config), so only the stages that need it
import this module; the others import ``pipelines.base``, whose names are re-exported here.
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


def bank_for(run: Run, features_dir: str | Path = "data/features", arch: str | None = None,
             serving_only: bool = False):
    """The encoded feature bank for this run (imports torch lazily: only training stages need it).

    Serving stages (index, evaluate, recommend) pass ``serving_only``: they never read training samples."""
    from sass_retrieval.data.store import read_items, read_users
    from sass_retrieval.models.bank import load_bank
    from sass_retrieval.train.recipes import model_config

    cfg = model_config(run.params, run.names, arch)
    return load_bank(safe_path(features_dir), read_users(run.store), read_items(run.store), cfg,
                     serving_only=serving_only)
