"""Shared plumbing of the stage entry points: params, paths, logging, the run's window and scenarios.

Light on purpose: no torch and no training code, so the data stages (ingest, validate, split) and
publish import only the data modules, and dvc.yaml's deps for them stay that small (the deps are the
import closure, checked by tests/test_dvc_deps.py). The feature bank, which pulls the training code,
is in ``pipelines.common``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sass_retrieval.config import ConfigError, Window, get, load_params, resolve_window
from sass_retrieval.data.features import OTHER, ScenarioMap, scenario_map
from sass_retrieval.data.schema import stored_dates
from sass_retrieval.data.store import read_interactions

ROOT = Path(__file__).resolve().parents[1]


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("SASS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def safe_path(value: str | Path, base: Path | None = None) -> Path:
    """A path for writing from params: relative paths must stay inside the project folder.

    Outputs named in params can not point outside the project (../../etc or an absolute path), so a
    mistyped or hostile params file can not overwrite files elsewhere.
    """
    base = (base or Path.cwd()).resolve()
    p = Path(value)
    resolved = (p if p.is_absolute() else base / p).resolve()
    if os.environ.get("SASS_ALLOW_EXTERNAL_PATHS") != "1" and not resolved.is_relative_to(base):
        raise ConfigError(f"path {value!r} escapes the project folder {base}; "
                          "set SASS_ALLOW_EXTERNAL_PATHS=1 to allow it deliberately")
    return resolved


@dataclass
class Run:
    params: dict[str, Any]
    store: Path
    window: Window
    scenarios: ScenarioMap

    @property
    def names(self) -> list[str]:
        """Scenarios this run trains on: the reported ones, plus 'other' when params list it.

        Raw scenarios that map to 'other' are dropped from training when params do not list 'other'.
        """
        listed = get(self.params, "scenarios.names")
        return [s for s in self.scenarios.names if s in self.scenarios.reported or (s == OTHER and OTHER in listed)]


def load_run(params_path: str | Path) -> Run:
    params = load_params(params_path)
    store = safe_path(get(params, "data.store_dir"))
    window = resolve_window(params, stored_dates(store))
    train = read_interactions(store, window.train_start, window.train_end, columns=["scenario"])
    declared = [s for s in get(params, "scenarios.names") if s != OTHER]
    smap = scenario_map(train["scenario"].value_counts(), declared, int(get(params, "scenarios.min_scenario_rows")))
    return Run(params=params, store=store, window=window, scenarios=smap)


def read_mapped(run: Run, start: int, end: int) -> pd.DataFrame:
    df = read_interactions(run.store, start, end)
    df["scenario"] = run.scenarios.apply(df["scenario"])
    return df[df["scenario"].isin(run.names)].reset_index(drop=True)


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def published_dir(params: dict[str, Any]) -> Path:
    return safe_path(get(params, "publish.dir"))


def warm_start_path(params: dict[str, Any], relative: str) -> Path | None:
    """In incremental mode, yesterday's published checkpoint to start from (None: train from scratch)."""
    if get(params, "train.mode") != "incremental":
        return None
    path = published_dir(params) / "current" / relative
    if not path.exists():
        logging.getLogger("train").warning("train.mode=incremental but no published %s yet; training from scratch", relative)
        return None
    return path


def incremental_params(params: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """Incremental days start from yesterday's weights and train a few epochs on the newest days only:
    the older days are already in those weights, so the update costs a day's data, not a window's."""
    import copy

    out = copy.deepcopy(params)
    for sec in sections:
        out.setdefault(sec, {})["epochs"] = int(get(params, "train.incremental_epochs"))
        out[sec]["recent_days"] = int(get(params, "train.incremental_days"))
    return out
