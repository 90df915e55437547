"""Data validation of the canonical store: cheap checks on every row in DuckDB, Great Expectations 1.x on a
seeded sample.

``validate_store`` checks the interactions of the run's days plus the users and items tables and fails the
run before any feature or model stage sees bad data. A window of 100M-row days neither fits in pandas nor
runs through GE's pandas engine in time, so the work is split by what each rule needs:

1. **Every row, in DuckDB** (:mod:`.validation_full`). Each part file is inspected (readable, every
   canonical column with its type; a problem names the file and the file sits out the row rules). Then
   aggregates that stream the Parquet files within ``data.memory_limit_mib``: rows per day
   (``min_rows_per_day``, ``min_day_ratio`` of the window's median), nulls per canonical column, key ranges
   (ids >= 0, dates inside the window, labels in {0, 1}, ``play_time_ms >= 0``), scenario names in the known
   list, the share of duplicated ``(user_id, video_id, time_ms, scenario)`` rows (``max_duplicate_rate``)
   and of ids unknown to the users/items tables (``max_unknown_id_rate``). Day sizes, duplicates and
   unknown ids are properties of all rows that a sample cannot measure; the hard per-row rules are exact
   this way (one bad row among 100M fails) at the price of a count per rule.
2. **A seeded sample per scenario, through GE** (:mod:`.validation_sample`). ``validation.sample_rows``
   rows of each scenario (seed ``validation.sample_seed``, the same rows for the same store and seed) get
   the derived per-row columns and the suite of the rules that are tolerated shares of rows: time
   consistency (``min_time_consistency``) and the play-time rule (``min_play_time_consistency``). The
   standard error of a share p measured on n rows is sqrt(p (1 - p) / n): 0.01 % for p = 0.1 % and the
   default 100k rows per scenario, small against the tolerances, so the thresholds keep their meaning. A
   share right at the tolerance passes or fails by chance, as it would on all rows; a rule with no
   tolerance (mostly = 1.0) catches a pattern once one bad row is sampled, which misses with probability
   (1 - p)^n.
3. **Report.** The users and items tables (small dimension tables) run their own GE suites whole. Results
   go to ``report_dir/summary.json`` (``sample``: size per scenario, seed, population; ``full_checks``:
   every all-row rule with its observed value) and to GE Data Docs under ``report_dir/data_docs/``, whose
   run name names the sample and whose suite notes list the population and the full checks; they open
   offline (:mod:`.offline_assets`). Any failure raises :class:`ValidationFailed` after the report is
   written; its message has one line per failure, naming the file or day, column, rule and observed value.

Labels: ``is_click`` and every feedback label (``schema.FEEDBACK_COLUMNS``: ``long_view``, ``is_like``, ...)
must be non-null and in {0, 1}; ``play_time_ms`` must be >= 0.

The play-time rule: a long view is at least 18 s watched (``schema.LONG_VIEW_MS``) or the whole video when it
is shorter, so a row must satisfy ``long_view == 0 or play_time_ms > 0`` and ``long_view == 1 or
play_time_ms < 18000``. The derived flag ``long_view_play_time_consistent`` holds both, and at least
``validation.min_play_time_consistency`` of the (sampled) rows must have it. Only this weak form is checked:
on KuaiRand-Pure it holds for every row (no row has ``long_view == 0`` and 18 s watched; the shortest long
view is 5 s), while the strong form (``play_time_ms >= min(18000, duration_ms)`` for a long view) fails for
433 rows whose logged play time ends a little before the logged duration. The synthetic generator obeys the
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
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..errors import BadInputError
from ..params_schema import Data, Validation
from .engine import connect
from .schema import INTERACTIONS, ITEMS, USERS, Table, table_path
from .validation_format import days_label, failure, fmt_kwargs, jsonable, observed_text
from .validation_full import DERIVED as FULL_DERIVED
from .validation_full import FullChecks, full_checks
from .validation_sample import DERIVED as SAMPLE_DERIVED
from .validation_sample import PLAY_RULE, Sample, derive, draw_sample, empty_sample, sample_suite

log = logging.getLogger(__name__)

SITE_NAME = "sass_validation"
SUITE_NAMES = (INTERACTIONS.name, USERS.name, ITEMS.name)
DERIVED_COLUMNS = {**FULL_DERIVED, **SAMPLE_DERIVED}

# canonical dtype -> the ``type_`` GE's pandas engine compares against. GE compares
# ``dtype.type``; pandas' StringDtype has ``type is str``, which GE spells "str".
GE_TYPE = {"int64": "int64", "int32": "int32", "int8": "int8", "float64": "float64", "string": "str"}


class ValidationFailed(BadInputError, RuntimeError):
    """Validation found problems; the message has one line per failure:

    ``<table> (<file or day>): column <col>: <rule> failed: observed <value> (rule: <kwargs>)``
    """

    def __init__(self, failures: list[dict], report_dir: Path | None = None) -> None:
        self.failures = failures
        self.report_dir = report_dir
        report = f" Report: {Path(report_dir) / 'data_docs' / 'index.html'}" if report_dir is not None else ""
        super().__init__("\n".join(f["message"] for f in failures),
                         hint="validation failed: the run stops here; the published model stays in place." + report)


# ---- the users and items tables (small: read whole) ---------------------------------------------


def _read_file(path: Path, table: Table) -> tuple[pd.DataFrame | None, list[dict]]:
    """Read one parquet file; problems become failures naming the file (and column)."""
    if not path.is_file():
        return None, [failure(table.name, str(path), "*", "file_exists", "file not found",
                              "the parquet file must exist")]
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is a data problem to report
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, [failure(table.name, str(path), "*", "file_readable", f"{type(exc).__name__}: {text}",
                              "the file must be a readable parquet file")]
    missing = [c for c in table.names if c not in df.columns]
    fails = [failure(table.name, str(path), c, "expect_column_to_exist", "column missing",
                     f"column {c!r} of the canonical {table.name} table must exist") for c in missing]
    return df, fails


def _table_suite(gxe, table: Table, batch: pd.DataFrame) -> list:
    present = set(batch.columns)
    key = table.key[0]
    exps: list = [gxe.ExpectTableColumnsToMatchSet(column_set=table.names, exact_match=False),
                  gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    exps += [gxe.ExpectColumnValuesToBeOfType(column=c.name, type_=GE_TYPE[c.dtype], notes=f"canonical dtype {c.dtype}")
             for c in table.columns if c.name in present]
    if key in present:
        exps += [gxe.ExpectColumnValuesToNotBeNull(column=key), gxe.ExpectColumnValuesToBeUnique(column=key)]
    return exps


# ---- result formatting --------------------------------------------------------------------------


def _observed(result: dict, exception: dict | None) -> Any:
    if exception and exception.get("raised_exception"):
        return f"error: {exception.get('exception_message')}"
    if "unexpected_count" in result:
        obs = {
            "unexpected_count": result.get("unexpected_count"),
            "element_count": result.get("element_count"),
            "unexpected_percent": round(float(result.get("unexpected_percent") or 0.0), 4),
            "sample": list(dict.fromkeys(jsonable(result.get("partial_unexpected_list") or [])))[:10],
        }
        if result.get("missing_count"):
            obs["missing_count"] = result["missing_count"]
        return obs
    if result.get("observed_value") is not None:
        return result["observed_value"]
    if "partial_missing_list" in result:
        return {"missing": result["partial_missing_list"]}
    return result


def _unexpected_mask(kind: str, kwargs: dict, batch: pd.DataFrame) -> pd.Series | None:
    """Recompute which rows a failed column-map expectation rejected (GE's SUMMARY format only
    returns the first 20 indices, too few to name every affected day)."""
    col = batch.get(kwargs.get("column", ""))
    if col is None:
        return None
    try:
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


def _sample_where(kind: str, kwargs: dict, sample: Sample, batch: pd.DataFrame, window: str) -> str:
    """Name the day(s) of the sampled rows a failed expectation rejected, and the sample they come from."""
    of = (f"in a seeded sample of {len(sample.frame)} of {sum(sample.population.values())} rows, "
          f"seed {sample.seed}")
    mask = _unexpected_mask(kind, kwargs, batch)
    if mask is not None and len(mask) == len(sample.part_dates) and mask.any():
        days, counts = np.unique(sample.part_dates[mask.to_numpy(dtype=bool)], return_counts=True)
        return f"{days_label(days.tolist(), counts.tolist())} {of}"
    return f"{window} {of}"


def _play_rule_pairs(kwargs: dict, batch: pd.DataFrame) -> dict | None:
    """For a failed play-time rule, the offending (long_view, play_time_ms) pairs rather than the flag 0."""
    if kwargs.get("column") == PLAY_RULE and PLAY_RULE in batch:
        bad = batch.loc[batch[PLAY_RULE] == 0, ["long_view", "play_time_ms"]].drop_duplicates().head(10)
        return {"sample": [f"long_view={lv} play_time_ms={p}" for lv, p in bad.itertuples(index=False)]}
    return None


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
        entry = {"expectation_type": cfg.type, "column": column, "kwargs": jsonable(kwargs),
                 "success": bool(r.success), "observed": jsonable(obs)}
        if not r.success:
            extra = sample_fn(kwargs) if sample_fn is not None else None
            if extra and isinstance(obs, dict):
                obs = {**obs, **extra}
                entry["observed"] = jsonable(obs)
            where = where_fn(cfg.type, kwargs, result, obs)
            entry["where"] = where
            rule = {k: v for k, v in kwargs.items() if k != "column"}
            f = failure(name, where, column, cfg.type, obs, rule)
            f["message"] = (f"{name} ({where}): column {column}: {cfg.type} failed: observed "
                            f"{observed_text(jsonable(obs))} (rule: {fmt_kwargs(rule)})")
            failures.append(f)
        expectations.append(entry)
    stats = res.statistics
    counts = {
        "evaluated": int(stats.get("evaluated_expectations", 0)),
        "successful": int(stats.get("successful_expectations", 0)),
        "unsuccessful": int(stats.get("unsuccessful_expectations", 0)),
        "success_percent": jsonable(stats.get("success_percent")),
    }
    return {"success": bool(res.success), "counts": counts, "expectations": expectations}, failures


def _suite_notes(sample: Sample, full: FullChecks) -> list[str]:
    """What the interactions page of the Data Docs says besides the sampled expectations."""
    pop = ", ".join(f"{s}: {n}" for s, n in sample.population.items()) or "none"
    drawn = ", ".join(f"{s}: {n}" for s, n in sample.drawn.items()) or "none"
    lines = [f"**Sample.** Up to {sample.rows_per_scenario} rows per scenario, seed {sample.seed}: "
             f"{len(sample.frame)} of {sum(sample.population.values())} rows. Population per scenario: {pop}. "
             f"Drawn per scenario: {drawn}.",
             f"**Full checks on all {full.rows} rows (DuckDB).**"]
    for c in full.checks:
        lines.append(f"- {c['column']}: {c['rule']}: {'passed' if c['success'] else 'FAILED'} "
                     f"(observed {observed_text(c['observed'])})")
    return lines


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


def _run_suite(ctx, name: str, batch: pd.DataFrame, expectations: list, run_name: str,
               notes: list[str] | None = None, meta: dict | None = None):
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    source = ctx.data_sources.get("store")
    batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(f"{name}_all")
    # Pass the expectations at construction: suite.add_expectation() on a stored suite re-serialises
    # the whole suite into the store on every call (quadratic in the number of expectations).
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations, notes=notes, meta=meta))
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
                   report_dir: Path, memory_limit_mib: int | None = None, threads: int | None = None) -> dict:
    """Validate interactions of the given days plus the users and items tables.

    ``memory_limit_mib`` bounds DuckDB (default: ``data.memory_limit_mib``'s default). Writes
    ``report_dir/summary.json`` (the sample, the full checks and per suite: success, counts, each expectation
    with its observed value) and GE Data Docs under ``report_dir/data_docs/`` (``index.html``). Returns the
    summary; raises :class:`ValidationFailed` after writing the report if anything failed.
    """
    t0 = time.perf_counter()
    store, report_dir = Path(store), Path(report_dir)
    dates = sorted({int(d) for d in dates})
    if not dates:
        raise ValueError("validate_store: no dates to validate")
    window = f"days {dates[0]}..{dates[-1]}" if len(dates) > 1 else f"day {dates[0]}"
    limit = memory_limit_mib if memory_limit_mib is not None else Data.model_fields["memory_limit_mib"].default

    users_path, items_path = table_path(store, USERS.name), table_path(store, ITEMS.name)
    users, users_fails = _read_file(users_path, USERS)
    items, items_fails = _read_file(items_path, ITEMS)

    # 1. every row: the cheap aggregate checks; 2. the seeded sample, drawn on the same connection
    con = connect(limit, threads)
    try:
        full = full_checks(con, store, dates, known_scenarios, rules, users_path, items_path)
        sample = empty_sample(rules.sample_rows, rules.sample_seed)
        if full.rows:
            try:
                sample = draw_sample(con, rules.sample_rows, rules.sample_seed)
            except duckdb.Error as exc:
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                full.failures.append(failure(INTERACTIONS.name, window, "*", "sample_drawn",
                                             f"{type(exc).__name__}: {text}", "the seeded sample must be drawn"))
    finally:
        con.close()
    t_full = time.perf_counter() - t0
    batch = derive(sample.frame)
    batches = {
        INTERACTIONS.name: batch,
        USERS.name: users if users is not None else pd.DataFrame(),
        ITEMS.name: items if items is not None else pd.DataFrame(),
    }
    pre_failures = {INTERACTIONS.name: full.failures, USERS.name: users_fails, ITEMS.name: items_fails}

    # 3. the GE suites: the interactions sample, the users and items tables
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / "data_docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    run_name = f"{dates[0]}-{dates[-1]}_{sample.run_name_part}"
    with _quiet_ge():
        import great_expectations.expectations as gxe

        ctx = _make_context(docs_dir)
        suite_exps = {
            INTERACTIONS.name: sample_suite(gxe, rules, sample),
            USERS.name: _table_suite(gxe, USERS, batches[USERS.name]),
            ITEMS.name: _table_suite(gxe, ITEMS, batches[ITEMS.name]),
        }
        notes = {INTERACTIONS.name: _suite_notes(sample, full)}
        meta = {INTERACTIONS.name: {"sample": jsonable(sample.describe())}}
        wheres = {
            INTERACTIONS.name: lambda kind, kw, res, obs: _sample_where(kind, kw, sample, batch, window),
            USERS.name: lambda *_: str(users_path),
            ITEMS.name: lambda *_: str(items_path),
        }
        suites, failures = {}, []
        for name in SUITE_NAMES:
            res = _run_suite(ctx, name, batches[name], suite_exps[name], run_name=run_name,
                             notes=notes.get(name), meta=meta.get(name))
            sample_fn = (lambda kw: _play_rule_pairs(kw, batch)) if name == INTERACTIONS.name else None
            entry, fails = _summarise_suite(name, res, wheres[name], sample_fn)
            entry["file_checks"] = pre_failures[name]
            entry["success"] = entry["success"] and not pre_failures[name]
            entry["rows"] = int(len(batches[name]))
            suites[name] = entry
            failures += pre_failures[name] + fails
        ctx.build_data_docs(site_names=[SITE_NAME])
    _localize_docs(docs_dir)

    inter = suites[INTERACTIONS.name]
    inter["rows"] = sum(full.day_rows.values())
    inter["sample"] = sample.describe()
    inter["full_checks"] = full.checks
    inter["days"] = {str(d): n for d, n in full.day_rows.items()}
    inter["median_rows_per_day"] = jsonable(full.median)
    inter["files"] = [{"date": pf.date, "path": str(pf.path), "rows": pf.rows, "ok": pf.ok} for pf in full.files]
    inter["derived_columns"] = DERIVED_COLUMNS
    summary = {
        "success": not failures,
        "store": str(store),
        "dates": dates,
        "known_scenarios": sorted(map(str, known_scenarios)),
        "rules": rules.model_dump(),
        "sample": sample.describe(),
        "suites": suites,
        "failures": failures,
        "data_docs": str(docs_dir / "index.html"),
        "seconds": round(time.perf_counter() - t0, 3),
        "seconds_full_checks_and_sample": round(t_full, 3),
    }
    (report_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    log.info("validation of %s (%s; sample %d of %d rows, seed %d): %s in %.1fs, %d failure(s)", store, window,
             len(sample.frame), sum(sample.population.values()), sample.seed,
             "passed" if not failures else "FAILED", summary["seconds"], len(failures))
    if failures:
        raise ValidationFailed(failures, report_dir)
    return summary
