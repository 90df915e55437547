"""Data validation of the canonical store with Great Expectations 1.x.

``validate_store`` checks the interactions of the run's days plus the users and items tables and
fails the run before any feature or model stage sees bad data. It works in three steps:

1. **Read.** Every parquet file is read directly (one per day partition part, plus ``users.parquet``
   and ``items.parquet``). A missing or unreadable file, or a file missing a canonical column, is a
   failure that names the file -- a corrupt parquet never surfaces as a bare pyarrow traceback.
2. **Derive.** Rules that are not a property of a single stored column are turned into per-row
   columns with pandas, so that a plain built-in GE expectation can check them (see
   ``DERIVED_COLUMNS``): the row's day size and its ratio to the window's median day, the hours
   between the row's ``date`` (00:00 UTC+8) and its ``time_ms``, a duplicate flag, known-user /
   known-video flags and the play-time rule's flag (below).
3. **Expect.** Three suites (``interactions``, ``users``, ``items``) run in an ephemeral GE context
   on pandas dataframes; the results go to ``report_dir/summary.json`` and to GE Data Docs under
   ``report_dir/data_docs/``, which open offline (:mod:`.offline_assets` copies their CDN files
   next to them). Any failure raises :class:`ValidationFailed` after the report is
   written; its message has one line per failed expectation.

Labels: ``is_click`` and every feedback label (``schema.FEEDBACK_COLUMNS``: ``long_view``, ``is_like``, ...)
must be non-null and in {0, 1}; ``play_time_ms`` must be >= 0.

The play-time rule: a long view is at least 18 s watched (``schema.LONG_VIEW_MS``) or the whole video when it
is shorter, so a row must satisfy ``long_view == 0 or play_time_ms > 0`` and ``long_view == 1 or
play_time_ms < 18000``. The derived flag ``long_view_play_time_consistent`` holds both, and at least
``validation.min_play_time_consistency`` of the rows must have it. Only this weak form is checked: on
KuaiRand-Pure it holds for every row (no row has ``long_view == 0`` and 18 s watched; the shortest long view
is 5 s), while the strong form (``play_time_ms >= min(18000, duration_ms)`` for a long view) fails for 433
rows whose logged play time ends a little before the logged duration. The synthetic generator obeys the
strong form.

Great Expectations is imported lazily inside the functions: importing it takes seconds and most
users of this module (the CLI's help, the DAG parser) never validate anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadInputError
from ..params_schema import Validation
from .schema import FEEDBACK_COLUMNS, INTERACTIONS, ITEMS, LONG_VIEW_MS, USERS, Table, day_dir, table_path

log = logging.getLogger(__name__)

SITE_NAME = "sass_validation"
SUITE_NAMES = (INTERACTIONS.name, USERS.name, ITEMS.name)
LABELS = ("is_click", *FEEDBACK_COLUMNS)   # every 0/1 label column
NOT_NULL = ("user_id", "video_id", "date", "time_ms", "scenario", *LABELS)
DUPLICATE_KEY = ("user_id", "video_id", "time_ms", "scenario")
UTC8_OFFSET_MS = 8 * 3600 * 1000
HOUR_MS = 3600 * 1000

# canonical dtype -> the ``type_`` GE's pandas engine compares against. GE compares
# ``dtype.type``; pandas' StringDtype has ``type is str``, which GE spells "str".
GE_TYPE = {"int64": "int64", "int32": "int32", "int8": "int8", "float64": "float64", "string": "str"}

DERIVED_COLUMNS = {
    "day_row_count": "rows stored for this row's date (NaN, i.e. not checked, outside the window)",
    "day_row_ratio": "rows of this row's date / median rows per day of the run window",
    "hours_into_date": "hours from 00:00 UTC+8 of `date` to `time_ms`",
    "is_duplicate": f"1 when an earlier row has the same {list(DUPLICATE_KEY)}",
    "user_known": "1 when user_id is in the users table",
    "video_known": "1 when video_id is in the items table",
    "long_view_play_time_consistent": f"1 when (long_view == 0 or play_time_ms > 0) and (long_view == 1 or "
                                      f"play_time_ms < {LONG_VIEW_MS})",
}
PLAY_RULE = "long_view_play_time_consistent"


class ValidationFailed(BadInputError, RuntimeError):
    """Validation found problems; the message has one line per failed expectation:

    ``<table> (<file or day>): column <col>: <expectation_type> failed: observed <value> (rule: <kwargs>)``
    """

    def __init__(self, failures: list[dict], report_dir: Path | None = None) -> None:
        self.failures = failures
        self.report_dir = report_dir
        report = f" Report: {Path(report_dir) / 'data_docs' / 'index.html'}" if report_dir is not None else ""
        super().__init__("\n".join(f["message"] for f in failures),
                         hint="validation failed: the run stops here; the published model stays in place." + report)


# ---- reading ------------------------------------------------------------------------------------


def _failure(table: str, where: str, column: str, expectation: str, observed: Any, rule: Any) -> dict:
    obs = _short(observed)
    rule_s = rule if isinstance(rule, str) else _fmt_kwargs(rule)
    return {
        "table": table,
        "where": where,
        "column": column,
        "expectation_type": expectation,
        "observed": _jsonable(observed),
        "rule": _jsonable(rule),
        "message": f"{table} ({where}): column {column}: {expectation} failed: observed {obs} (rule: {rule_s})",
    }


def _read_file(path: Path, table: Table) -> tuple[pd.DataFrame | None, list[dict]]:
    """Read one parquet file; problems become failures naming the file (and column)."""
    if not path.is_file():
        return None, [_failure(table.name, str(path), "*", "file_exists", "file not found",
                               "the parquet file must exist")]
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is a data problem to report
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, [_failure(table.name, str(path), "*", "file_readable", f"{type(exc).__name__}: {text}",
                               "the file must be a readable parquet file")]
    missing = [c for c in table.names if c not in df.columns]
    fails = [_failure(table.name, str(path), c, "expect_column_to_exist", "column missing",
                      f"column {c!r} of the canonical {table.name} table must exist") for c in missing]
    return df, fails


@dataclass
class _Interactions:
    frame: pd.DataFrame
    part_dates: np.ndarray          # the partition (day folder) of every row, aligned with frame
    files: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def _read_interactions(store: Path, dates: list[int]) -> _Interactions:
    frames, parts, files, failures = [], [], [], []
    for d in dates:
        for path in sorted(day_dir(store, d).glob("*.parquet")):
            df, fails = _read_file(path, INTERACTIONS)
            failures += fails
            files.append({"date": d, "path": str(path), "rows": None if df is None else len(df),
                          "dtypes": {} if df is None else {c: str(t) for c, t in df.dtypes.items()}})
            if df is not None:
                frames.append(df)
                parts.append(np.full(len(df), d, dtype=np.int64))
    if frames:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        part_dates = np.concatenate(parts)
    else:
        frame = pd.DataFrame({c.name: pd.Series(dtype=c.dtype) for c in INTERACTIONS.columns})
        part_dates = np.zeros(0, dtype=np.int64)
    return _Interactions(frame, part_dates, files, failures)


# ---- derived columns ----------------------------------------------------------------------------


def _local_midnight_ms(dnum: pd.Series) -> pd.Series:
    """YYYYMMDD (float, NaN allowed) -> epoch ms of that day's 00:00 in naive local time."""
    uniq = dnum.dropna().unique()
    ok = uniq[(uniq == np.floor(uniq)) & (uniq > 0) & (uniq < 1e8)]
    stamps = pd.to_datetime(pd.Series(ok.astype(np.int64).astype(str)), format="%Y%m%d", errors="coerce")
    # unit-agnostic (pandas 3 parses to datetime64[us], pandas 2 to [ns])
    ms = ((stamps - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)).astype("float64").to_numpy()
    return dnum.map(dict(zip(ok.tolist(), ms.tolist(), strict=True)))


def _derive_interactions(df: pd.DataFrame, dates: list[int], users: pd.DataFrame | None,
                         items: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[int, int], float]:
    """Add the per-row helper columns the derived rules expect on; returns (batch, rows per day, median)."""
    out = df.copy(deep=False)
    day_rows = {d: 0 for d in dates}
    median = float("nan")
    if "date" in df.columns:
        dnum = pd.to_numeric(df["date"], errors="coerce").astype("float64")
        counts = dnum.value_counts()
        day_rows = {d: int(counts.get(float(d), 0)) for d in dates}
        median = float(np.median(list(day_rows.values())))
        # only days of the window are held to the per-day minimum; stray dates fail the window rule
        in_window = dnum.isin([float(d) for d in dates])
        out["day_row_count"] = dnum.map(counts).astype("float64").where(in_window)
        out["day_row_ratio"] = out["day_row_count"] / median if median > 0 else np.nan
        if "time_ms" in df.columns:
            tnum = pd.to_numeric(df["time_ms"], errors="coerce").astype("float64")
            out["hours_into_date"] = (tnum + UTC8_OFFSET_MS - _local_midnight_ms(dnum)) / HOUR_MS
    if all(c in df.columns for c in DUPLICATE_KEY):
        out["is_duplicate"] = df.duplicated(subset=list(DUPLICATE_KEY), keep="first").astype("int8")
    if users is not None and "user_id" in df.columns and "user_id" in users.columns:
        out["user_known"] = df["user_id"].isin(users["user_id"]).astype("int8")
    if items is not None and "video_id" in df.columns and "video_id" in items.columns:
        out["video_known"] = df["video_id"].isin(items["video_id"]).astype("int8")
    if "long_view" in df.columns and "play_time_ms" in df.columns:
        out[PLAY_RULE] = _play_time_consistent(df["long_view"], df["play_time_ms"])
    return out, day_rows, median


def _play_time_consistent(long_view: pd.Series, play_ms: pd.Series) -> pd.Series:
    """The play-time rule per row (module docstring): 1 when the row's play time agrees with its long_view.

    A null or non-numeric value counts as agreeing: the not-null and type expectations report those."""
    lv = pd.to_numeric(long_view, errors="coerce")
    play = pd.to_numeric(play_ms, errors="coerce")
    bad = ((lv == 1) & (play <= 0)) | ((lv == 0) & (play >= LONG_VIEW_MS))
    return (~bad.fillna(False).astype(bool)).astype("int8")


# ---- suites -------------------------------------------------------------------------------------


def _type_expectations(gxe, table: Table, present: set[str]) -> list:
    return [gxe.ExpectColumnValuesToBeOfType(column=c.name, type_=GE_TYPE[c.dtype],
                                             notes=f"canonical dtype {c.dtype}")
            for c in table.columns if c.name in present]


def _interactions_suite(gxe, batch: pd.DataFrame, dates: list[int], known_scenarios: list[str],
                        rules: Validation) -> list:
    present = set(batch.columns)
    exps: list = [gxe.ExpectTableColumnsToMatchSet(column_set=INTERACTIONS.names, exact_match=False,
                                                   notes="every canonical column is present; extra "
                                                         "columns are the derived helper columns")]
    exps += _type_expectations(gxe, INTERACTIONS, present)
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in NOT_NULL if c in present]
    exps += [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[0, 1]) for c in LABELS if c in present]
    if "play_time_ms" in present:
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="play_time_ms", min_value=0,
                                                      notes="watch time is never negative"))
    if "scenario" in present:
        exps.append(gxe.ExpectColumnValuesToBeInSet(column="scenario", value_set=sorted(map(str, known_scenarios))))
    if "date" in present:
        exps += [
            gxe.ExpectColumnValuesToBeBetween(column="date", min_value=min(dates), max_value=max(dates),
                                              notes="rows are dated inside the run window"),
            gxe.ExpectColumnDistinctValuesToContainSet(column="date", value_set=list(dates),
                                                       notes="every day of the run window has rows"),
        ]
    derived = [
        ("day_row_count", lambda: gxe.ExpectColumnValuesToBeBetween(
            column="day_row_count", min_value=rules.min_rows_per_day,
            notes=f"derived: {DERIVED_COLUMNS['day_row_count']}; each day needs >= min_rows_per_day")),
        ("day_row_ratio", lambda: gxe.ExpectColumnValuesToBeBetween(
            column="day_row_ratio", min_value=rules.min_day_ratio,
            notes=f"derived: {DERIVED_COLUMNS['day_row_ratio']}; far fewer rows than usual fails")),
        ("hours_into_date", lambda: gxe.ExpectColumnValuesToBeBetween(
            column="hours_into_date", min_value=-rules.time_slack_hours, max_value=24, strict_max=True,
            mostly=rules.min_time_consistency,
            notes=f"derived: {DERIVED_COLUMNS['hours_into_date']}; time_ms lies on `date` (UTC+8)")),
        ("user_known", lambda: gxe.ExpectColumnValuesToBeInSet(
            column="user_known", value_set=[1], mostly=1.0 - rules.max_unknown_id_rate,
            notes=f"derived: {DERIVED_COLUMNS['user_known']}; unknown share <= max_unknown_id_rate")),
        ("video_known", lambda: gxe.ExpectColumnValuesToBeInSet(
            column="video_known", value_set=[1], mostly=1.0 - rules.max_unknown_id_rate,
            notes=f"derived: {DERIVED_COLUMNS['video_known']}; unknown share <= max_unknown_id_rate")),
        (PLAY_RULE, lambda: gxe.ExpectColumnValuesToBeInSet(
            column=PLAY_RULE, value_set=[1], mostly=rules.min_play_time_consistency,
            notes=f"derived: {DERIVED_COLUMNS[PLAY_RULE]}; the play-time rule of a long view")),
        ("is_duplicate", lambda: gxe.ExpectColumnValuesToBeInSet(
            column="is_duplicate", value_set=[0], mostly=1.0 - rules.max_duplicate_rate,
            notes=f"derived: {DERIVED_COLUMNS['is_duplicate']}; duplicate share <= max_duplicate_rate")),
    ]
    exps += [make() for col, make in derived if col in present]
    return exps


def _table_suite(gxe, table: Table, batch: pd.DataFrame) -> list:
    present = set(batch.columns)
    key = table.key[0]
    exps: list = [gxe.ExpectTableColumnsToMatchSet(column_set=table.names, exact_match=False),
                  gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += _type_expectations(gxe, table, present)
    if key in present:
        exps += [gxe.ExpectColumnValuesToNotBeNull(column=key), gxe.ExpectColumnValuesToBeUnique(column=key)]
    return exps


# ---- result formatting --------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _tidy(value: Any) -> Any:
    """Integral floats as ints (GE turns min_value=20240301 into 20240301.0), others to 4 decimals."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 4)
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def _short(value: Any, limit: int = 10) -> str:
    value = _tidy(_jsonable(value))
    if isinstance(value, list) and len(value) > limit:
        return f"[{', '.join(map(repr, value[:limit]))}, ... +{len(value) - limit}]"
    return repr(value) if isinstance(value, str) else str(value)


def _fmt_kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items()) or "-"


def _observed(result: dict, exception: dict | None) -> Any:
    if exception and exception.get("raised_exception"):
        return f"error: {exception.get('exception_message')}"
    if "unexpected_count" in result:
        obs = {
            "unexpected_count": result.get("unexpected_count"),
            "element_count": result.get("element_count"),
            "unexpected_percent": round(float(result.get("unexpected_percent") or 0.0), 4),
            "sample": list(dict.fromkeys(_jsonable(result.get("partial_unexpected_list") or [])))[:10],
        }
        if result.get("missing_count"):
            obs["missing_count"] = result["missing_count"]
        return obs
    if result.get("observed_value") is not None:
        return result["observed_value"]
    if "partial_missing_list" in result:
        return {"missing": result["partial_missing_list"]}
    return result


def _observed_text(obs: Any) -> str:
    if isinstance(obs, dict) and "unexpected_count" in obs:
        unknown = [k for k in obs if k.startswith("unknown_")]
        sample = (f"{obs['distinct_unknown']} distinct, e.g. {unknown[0]} {_short(obs[unknown[0]], 5)}"
                  if unknown else f"e.g. {_short(obs['sample'], 5)}")
        return (f"{obs['unexpected_count']} of {obs['element_count']} rows unexpected "
                f"({obs['unexpected_percent']:.2f}%), {sample}")
    if isinstance(obs, dict) and set(obs) == {"missing"}:
        return f"missing {_short(obs['missing'])}"
    return _short(obs)


def _days_label(days: list[int]) -> str:
    days = sorted(set(days))
    if len(days) > 6:
        return f"{len(days)} days {days[0]}..{days[-1]}"
    return ("day " if len(days) == 1 else "days ") + ", ".join(map(str, days))


def _unexpected_mask(kind: str, kwargs: dict, batch: pd.DataFrame) -> pd.Series | None:
    """Recompute which rows a failed column-map expectation rejected (GE's SUMMARY format only
    returns the first 20 indices, too few to name every affected day)."""
    col = batch.get(kwargs.get("column", ""))
    if col is None:
        return None
    try:
        if kind == "expect_column_values_to_not_be_null":
            return col.isna()
        if kind == "expect_column_values_to_be_in_set":
            return col.notna() & ~col.isin(kwargs["value_set"])
        if kind == "expect_column_values_to_be_between":
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            bad = pd.Series(False, index=col.index)
            if lo is not None:
                bad |= (col <= lo) if kwargs.get("strict_min") else (col < lo)
            if hi is not None:
                bad |= (col >= hi) if kwargs.get("strict_max") else (col > hi)
            return bad.fillna(False).astype(bool) & col.notna()
        if kind == "expect_column_values_to_be_unique":
            return col.notna() & col.duplicated(keep=False)
    except (TypeError, ValueError):
        return None
    return None


def _interactions_where(kind: str, kwargs: dict, result: dict, data: _Interactions, batch: pd.DataFrame,
                        window: str) -> str:
    """Name the day(s) (day partitions) a failed interactions expectation is about."""
    mask = _unexpected_mask(kind, kwargs, batch)
    if mask is not None and len(mask) == len(data.part_dates) and mask.any():
        days, counts = np.unique(data.part_dates[mask.to_numpy(dtype=bool)], return_counts=True)
        label = _days_label(days.tolist())
        if len(days) <= 6:
            label = ("day " if len(days) == 1 else "days ") + ", ".join(
                f"{d} ({n} rows)" for d, n in zip(days.tolist(), counts.tolist(), strict=True))
        return label
    idx = result.get("partial_unexpected_index_list")
    if idx:
        pos = [int(i) for i in idx if isinstance(i, (int, np.integer)) and 0 <= int(i) < len(data.part_dates)]
        if pos:
            return _days_label(data.part_dates[pos].tolist())
    if kind == "expect_column_distinct_values_to_contain_set" and result.get("partial_missing_list"):
        return _days_label([int(d) for d in result["partial_missing_list"]])
    if kind == "expect_column_values_to_be_of_type":
        col, want = kwargs.get("column"), INTERACTIONS.dtypes.get(kwargs.get("column", ""))
        bad = [f["date"] for f in data.files if f["dtypes"].get(col, want) != want]
        if bad:
            return _days_label(bad)
    return window


SAMPLE_SOURCE = {"user_known": "user_id", "video_known": "video_id"}


def _flag_sample(kwargs: dict, batch: pd.DataFrame) -> dict | None:
    """For a failed known-id flag, show the unknown ids themselves rather than the flag value 0; for the
    play-time rule, the offending (long_view, play_time_ms) pairs."""
    if kwargs.get("column") == PLAY_RULE and PLAY_RULE in batch:
        bad = batch.loc[batch[PLAY_RULE] == 0, ["long_view", "play_time_ms"]].drop_duplicates().head(10)
        return {"sample": [f"long_view={lv} play_time_ms={p}" for lv, p in bad.itertuples(index=False)]}
    src = SAMPLE_SOURCE.get(kwargs.get("column", ""))
    if src is None or src not in batch:
        return None
    bad = batch.loc[batch[kwargs["column"]] == 0, src]
    return {f"unknown_{src}s": _jsonable(pd.unique(bad)[:10].tolist()), "distinct_unknown": int(bad.nunique())}


def _summarise_suite(name: str, res, where_fn, sample_fn=None) -> tuple[dict, list[dict]]:
    expectations, failures = [], []
    for r in res.results:
        cfg = r.expectation_config
        kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
        result = dict(r.result or {})
        exception = dict(r.exception_info or {})
        obs = _observed(result, exception)
        column = kwargs.get("column")
        if column is None and cfg.type == "expect_table_columns_to_match_set":
            missing = (result.get("details") or {}).get("mismatched", {}).get("missing") or []
            column = ", ".join(map(str, missing)) or "*"
        column = column or "*"
        entry = {"expectation_type": cfg.type, "column": column, "kwargs": _jsonable(kwargs),
                 "success": bool(r.success), "observed": _jsonable(obs)}
        if not r.success:
            extra = sample_fn(kwargs) if sample_fn is not None else None
            if extra and isinstance(obs, dict):
                obs = {**obs, **extra}
                entry["observed"] = _jsonable(obs)
            where = where_fn(cfg.type, kwargs, result, obs)
            entry["where"] = where
            rule = {k: v for k, v in kwargs.items() if k != "column"}
            f = _failure(name, where, column, cfg.type, obs, rule)
            f["message"] = (f"{name} ({where}): column {column}: {cfg.type} failed: observed "
                            f"{_observed_text(_jsonable(obs))} (rule: {_fmt_kwargs(rule)})")
            failures.append(f)
        expectations.append(entry)
    stats = res.statistics
    counts = {
        "evaluated": int(stats.get("evaluated_expectations", 0)),
        "successful": int(stats.get("successful_expectations", 0)),
        "unsuccessful": int(stats.get("unsuccessful_expectations", 0)),
        "success_percent": _jsonable(stats.get("success_percent")),
    }
    return {"success": bool(res.success), "counts": counts, "expectations": expectations}, failures


# ---- GE plumbing --------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_ge() -> Iterator[None]:
    """Silence GE's loggers and warnings while it runs; restore the levels afterwards."""
    # data_context.types.base pins its own level to INFO, so the parent's level alone is not enough
    loggers = [logging.getLogger(n) for n in ("great_expectations",
                                              "great_expectations.data_context.types.base")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def _make_context(docs_dir: Path):
    """An in-memory context whose only Data Docs site is a local folder, with progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Without an explicit config the ephemeral context adds a default docs site in a temp dir.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={SITE_NAME: {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }},
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    ctx = gx.get_context(project_config=config, mode="ephemeral")
    ctx.data_sources.add_pandas("store")
    return ctx


def _run_suite(ctx, name: str, batch: pd.DataFrame, expectations: list, run_name: str):
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    source = ctx.data_sources.get("store")
    batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(f"{name}_all")
    # Pass the expectations at construction: suite.add_expectation() on a stored suite re-serialises
    # the whole suite into the store on every call (quadratic in the number of expectations).
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"validate_{name}", data=batch_def,
                                                                suite=suite))
    # SUMMARY: counts plus the first 20 unexpected values/indices; COMPLETE would carry every
    # unexpected value of a 100k-row batch into the results and the Data Docs pages.
    return vd.run(batch_parameters={"dataframe": batch}, result_format="SUMMARY",
                  run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)))


def _localize_docs(docs_dir: Path) -> None:
    """Point the Data Docs at local copies of their CDN files (:mod:`.offline_assets`); a problem
    there is logged, never a reason to stop a run whose data passed."""
    from .offline_assets import AssetError, localize

    try:
        localize(docs_dir)
    except (AssetError, OSError) as exc:
        log.warning("Data Docs keep (some of) their CDN links: %s", exc)


# ---- entry point --------------------------------------------------------------------------------


def validate_store(store: Path, dates: list[int], known_scenarios: list[str], rules: Validation,
                   report_dir: Path) -> dict:
    """Validate interactions of the given days plus the users and items tables.

    Writes ``report_dir/summary.json`` (per suite: success, counts, each expectation with its
    observed value) and GE Data Docs under ``report_dir/data_docs/`` (``index.html``). Returns the
    summary; raises :class:`ValidationFailed` after writing the report if anything failed.
    """
    t0 = time.perf_counter()
    store, report_dir = Path(store), Path(report_dir)
    dates = sorted({int(d) for d in dates})
    if not dates:
        raise ValueError("validate_store: no dates to validate")
    window = f"days {dates[0]}..{dates[-1]}" if len(dates) > 1 else f"day {dates[0]}"

    # 1. read every file directly so a problem names its file
    users_path, items_path = table_path(store, USERS.name), table_path(store, ITEMS.name)
    users, users_fails = _read_file(users_path, USERS)
    items, items_fails = _read_file(items_path, ITEMS)
    inter = _read_interactions(store, dates)

    # 2. derived columns for the rules GE cannot express on a stored column
    batch, day_rows, median = _derive_interactions(inter.frame, dates, users, items)
    batches = {
        INTERACTIONS.name: batch,
        USERS.name: users if users is not None else pd.DataFrame(),
        ITEMS.name: items if items is not None else pd.DataFrame(),
    }
    pre_failures = {INTERACTIONS.name: inter.failures, USERS.name: users_fails, ITEMS.name: items_fails}

    # 3. expectations
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / "data_docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    with _quiet_ge():
        import great_expectations.expectations as gxe

        ctx = _make_context(docs_dir)
        suite_exps = {
            INTERACTIONS.name: _interactions_suite(gxe, batch, dates, known_scenarios, rules),
            USERS.name: _table_suite(gxe, USERS, batches[USERS.name]),
            ITEMS.name: _table_suite(gxe, ITEMS, batches[ITEMS.name]),
        }
        wheres = {
            INTERACTIONS.name: lambda kind, kw, res, obs: _interactions_where(kind, kw, res, inter, batch, window),
            USERS.name: lambda *_: str(users_path),
            ITEMS.name: lambda *_: str(items_path),
        }
        suites, failures = {}, []
        for name in SUITE_NAMES:
            res = _run_suite(ctx, name, batches[name], suite_exps[name], run_name=f"{dates[0]}-{dates[-1]}")
            sample_fn = (lambda kw: _flag_sample(kw, batch)) if name == INTERACTIONS.name else None
            entry, fails = _summarise_suite(name, res, wheres[name], sample_fn)
            entry["file_checks"] = pre_failures[name]
            entry["success"] = entry["success"] and not pre_failures[name]
            entry["rows"] = int(len(batches[name]))
            suites[name] = entry
            failures += pre_failures[name] + fails
        ctx.build_data_docs(site_names=[SITE_NAME])
    _localize_docs(docs_dir)

    suites[INTERACTIONS.name]["days"] = {str(d): n for d, n in day_rows.items()}
    suites[INTERACTIONS.name]["median_rows_per_day"] = _jsonable(median)
    suites[INTERACTIONS.name]["files"] = [{k: v for k, v in f.items() if k != "dtypes"} for f in inter.files]
    suites[INTERACTIONS.name]["derived_columns"] = {c: d for c, d in DERIVED_COLUMNS.items() if c in batch}
    summary = {
        "success": not failures,
        "store": str(store),
        "dates": dates,
        "known_scenarios": sorted(map(str, known_scenarios)),
        "rules": rules.model_dump(),
        "suites": suites,
        "failures": failures,
        "data_docs": str(docs_dir / "index.html"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    (report_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    log.info("validation of %s (%s): %s in %.1fs, %d failure(s)", store, window,
             "passed" if not failures else "FAILED", summary["seconds"], len(failures))
    if failures:
        raise ValidationFailed(failures, report_dir)
    return summary
