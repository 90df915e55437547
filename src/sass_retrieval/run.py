"""A run's context: its validated params, store, window and scenarios, and the paths it may write.

Every stage starts from :func:`load_run`. Light on purpose (pandas and the data modules, no torch), so
the data stages and publish import only the data code, and dvc.yaml's deps for them stay that small
(the deps are the import closure, checked by tests/test_dvc_deps.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import ConfigError, Window, load_params, resolve_window
from .data.features import OTHER, ScenarioMap, scenario_map
from .data.schema import stored_dates
from .data.store import read_interactions, scenario_counts
from .params_schema import Params


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
    params: Params
    store: Path
    window: Window
    scenarios: ScenarioMap
    params_path: Path = Path("params.yaml")   # the file the params came from (named in error messages)

    @property
    def names(self) -> list[str]:
        """Scenarios this run trains on: the reported ones, plus 'other' when params list it.

        Raw scenarios that map to 'other' are dropped from training when params do not list 'other'.
        """
        listed = self.params.scenarios.names
        return [s for s in self.scenarios.names if s in self.scenarios.reported or (s == OTHER and OTHER in listed)]


def load_run(params_path: str | Path) -> Run:
    """The run ``params_path`` describes: its window over the days stored, and the scenario map decided
    on the training days' rows (scenarios.min_scenario_rows)."""
    params = load_params(params_path)
    store = safe_path(params.data.store_dir)
    window = resolve_window(params.window, stored_dates(store))
    counts = scenario_counts(store, window.train_start, window.train_end)
    declared = [s for s in params.scenarios.names if s != OTHER]
    smap = scenario_map(counts, declared, params.scenarios.min_scenario_rows)
    return Run(params=params, store=store, window=window, scenarios=smap, params_path=Path(params_path))


def read_mapped(run: Run, start: int, end: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The stored rows of days start..end with the run's scenario names; rows of untrained scenarios dropped.
    ``columns``: only these (``scenario`` is always read)."""
    df = read_interactions(run.store, start, end, columns=None if columns is None else ["scenario", *
                           (c for c in columns if c != "scenario")])
    df["scenario"] = run.scenarios.apply(df["scenario"])
    return df[df["scenario"].isin(run.names)].reset_index(drop=True)


def published_dir(params: Params) -> Path:
    return safe_path(params.publish.dir)


def warm_start_path(params: Params, relative: str) -> Path | None:
    """In incremental mode, yesterday's published checkpoint to start from (None: train from scratch)."""
    if params.train.mode != "incremental":
        return None
    path = published_dir(params) / "current" / relative
    if not path.exists():
        logging.getLogger("train").warning("train.mode=incremental but no published %s yet; training from scratch", relative)
        return None
    return path


def incremental_params(params: Params, sections: tuple[str, ...]) -> Params:
    """Incremental days start from yesterday's weights and train a few epochs on the newest days only:
    the older days are already in those weights, so the update costs a day's data, not a window's."""
    settings: dict[str, int] = {}
    for sec in sections:
        settings[f"{sec}.epochs"] = params.train.incremental_epochs
        settings[f"{sec}.recent_days"] = params.train.incremental_days
    return params.override(settings, source="incremental day")
