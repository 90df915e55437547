"""The cheap half of data validation: aggregate checks over every row of the run window, in DuckDB.

Rules that a sample cannot answer -- a day's row count, the duplicated keys, the share of ids unknown
to the feature tables -- and the hard per-row rules whose every violation matters (a null id, a label of
2, a negative watch time, an unknown scenario) are counted here over all rows. Each is an aggregate that
DuckDB computes streaming over the Parquet row groups within ``data.memory_limit_mib`` (spilling beyond
it), so no day is ever held in pandas; only counts per day and at most ten offending values per failed
rule come back to Python. The rules keep the names of the Great Expectations expectations they replace
(``expect_column_values_to_not_be_null`` ...), so a failure line reads as it did when GE checked them.

Every part file is inspected first: unreadable, missing a canonical column or holding one with another
type, it is reported by name and left out of the row rules and of the sample (its rows still count
towards its day's size, read from the Parquet footer).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ..params_schema import Validation
from .engine import interaction_files, parquet_list
from .schema import FEEDBACK_COLUMNS, INTERACTIONS, Table
from .validation_format import days_label, failure, jsonable, row_counts

TABLE = INTERACTIONS.name
LABELS = ("is_click", *FEEDBACK_COLUMNS)   # every 0/1 label column
NOT_NULL = tuple(c.name for c in INTERACTIONS.columns if not c.nullable)
DUPLICATE_KEY = ("user_id", "video_id", "time_ms", "scenario")
VIEW = "window_rows"   # the canonical columns of the valid part files plus ``part_date`` (the day folder)

# canonical dtype -> the DuckDB type its Parquet column reads as (and back, to name a wrong type)
DUCK_TYPE = {"int64": "BIGINT", "int32": "INTEGER", "int8": "TINYINT", "float64": "DOUBLE", "string": "VARCHAR"}
CANONICAL_OF = {"BIGINT": "int64", "INTEGER": "int32", "SMALLINT": "int16", "TINYINT": "int8", "UBIGINT": "uint64",
                "UINTEGER": "uint32", "USMALLINT": "uint16", "UTINYINT": "uint8", "DOUBLE": "float64",
                "FLOAT": "float32", "VARCHAR": "string", "BOOLEAN": "bool"}

DERIVED = {
    "day_row_count": "rows stored in the day's folder",
    "day_row_ratio": "rows of the day / median rows per day of the run window",
    "is_duplicate": f"1 for every copy of a {list(DUPLICATE_KEY)} key beyond its first",
    "user_known": "1 when user_id is in the users table",
    "video_known": "1 when video_id is in the items table",
}


@dataclass
class PartFile:
    path: Path
    date: int                                            # the day folder the file sits in
    rows: int | None = None                              # from the Parquet footer; None when unreadable
    types: dict[str, str] = field(default_factory=dict)  # column -> DuckDB type
    problems: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class FullChecks:
    failures: list[dict]
    checks: list[dict]          # every rule evaluated: rule, column, success, observed (and where, if failed)
    files: list[PartFile]
    day_rows: dict[int, int]
    median: float
    rows: int                   # rows of the valid part files: what the row rules and the sample see


# ---- part files -------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def inspect_files(con: duckdb.DuckDBPyConnection, store: Path, dates: list[int], table: Table = INTERACTIONS
                  ) -> list[PartFile]:
    """Every part file of the window with its schema problems (readable, canonical columns and types)."""
    files = [PartFile(path, d) for d in dates for path in interaction_files(store, [d])]
    for pf in files:
        where = f"day {pf.date}, {pf.path}"
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM read_parquet({parquet_list([pf.path])}, "
                               "hive_partitioning = false)").fetchall()
        except duckdb.Error as exc:
            pf.problems.append(failure(table.name, where, "*", "file_readable", _first_line(exc),
                                       "the file must be a readable parquet file"))
            continue
        pf.types = {str(name): str(kind) for name, kind, *_ in desc}
        for col in table.columns:
            got = pf.types.get(col.name)
            if got is None:
                pf.problems.append(failure(table.name, where, col.name, "expect_column_to_exist", "column missing",
                                           f"column {col.name!r} of the canonical {table.name} table must exist"))
            elif got != DUCK_TYPE[col.dtype]:
                pf.problems.append(failure(table.name, where, col.name, "expect_column_values_to_be_of_type",
                                           f"{CANONICAL_OF.get(got, got)} (parquet {got})",
                                           {"type_": col.dtype}))
    readable = [pf for pf in files if pf.types]
    if readable:
        rows = dict(con.execute(f"SELECT file_name, SUM(num_rows) FROM parquet_file_metadata("
                                f"{parquet_list(pf.path for pf in readable)}) GROUP BY file_name").fetchall())
        for pf in readable:
            pf.rows = int(rows.get(str(pf.path), 0))
    return files


def _file_failures(files: list[PartFile], table: Table, window: str) -> list[dict]:
    """The files' problems; a column missing from every readable file is one table-level line, not one per file."""
    readable = [pf for pf in files if pf.types]
    everywhere = {c for c in table.names if readable and all(c not in pf.types for pf in readable)}
    out = []
    if everywhere:
        cols = ", ".join(c for c in table.names if c in everywhere)
        out.append(failure(table.name, window, cols, "expect_table_columns_to_match_set",
                           {"missing": [c for c in table.names if c in everywhere]},
                           {"column_set": table.names, "exact_match": False}))
    for pf in files:
        out += [p for p in pf.problems
                if not (p["expectation_type"] == "expect_column_to_exist" and p["column"] in everywhere)]
    return out


def register_rows(con: duckdb.DuckDBPyConnection, files: list[PartFile], table: Table = INTERACTIONS) -> None:
    """The view ``VIEW``: the canonical columns of the valid part files and each row's day folder (``part_date``).

    One read per day, its day a constant column: cheaper than joining every row to its file name."""
    cols = ", ".join(f'"{c}"' for c in table.names)
    by_day: dict[int, list[Path]] = {}
    for pf in files:
        if pf.ok:
            by_day.setdefault(pf.date, []).append(pf.path)
    reads = [f"SELECT {cols}, {int(d)} AS part_date FROM read_parquet({parquet_list(paths)}, "
             "hive_partitioning = false, union_by_name = true)" for d, paths in sorted(by_day.items())]
    if not reads:   # no valid file: an empty view of the canonical types
        typed = ", ".join(f'NULL::{DUCK_TYPE[c.dtype]} AS "{c.name}"' for c in table.columns)
        reads = [f"SELECT {typed}, NULL::INTEGER AS part_date WHERE false"]
    con.execute(f"CREATE OR REPLACE TEMP VIEW {VIEW} AS " + " UNION ALL ".join(reads))


# ---- row rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRule:
    """A rule every row must obey: ``bad`` is the SQL condition of a violating row."""
    column: str
    name: str
    bad: str
    kwargs: dict
    show_values: bool = True    # a failure lists up to ten offending values


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def row_rules(dates: list[int], known_scenarios: list[str]) -> list[RowRule]:
    lo, hi = min(dates), max(dates)
    known = sorted(map(str, known_scenarios))
    unknown_scenario = (f"scenario NOT IN ({', '.join(map(_sql_str, known))})" if known
                        else "scenario IS NOT NULL")
    return [
        *(RowRule(c, "expect_column_values_to_not_be_null", f'"{c}" IS NULL', {}, show_values=False)
          for c in NOT_NULL),
        RowRule("user_id", "expect_column_values_to_be_between", "user_id < 0", {"min_value": 0}),
        RowRule("video_id", "expect_column_values_to_be_between", "video_id < 0", {"min_value": 0}),
        RowRule("date", "expect_column_values_to_be_between", f"date < {lo} OR date > {hi}",
                {"min_value": lo, "max_value": hi}),
        *(RowRule(c, "expect_column_values_to_be_in_set", f'"{c}" NOT IN (0, 1)', {"value_set": [0, 1]})
          for c in LABELS),
        RowRule("play_time_ms", "expect_column_values_to_be_between", "play_time_ms < 0", {"min_value": 0}),
        RowRule("scenario", "expect_column_values_to_be_in_set", unknown_scenario, {"value_set": known}),
    ]


def _known_ids(con: duckdb.DuckDBPyConnection, name: str, path: Path, column: str) -> bool:
    """A temp table of the distinct ids of a readable users/items file; False when there is none to compare."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT DISTINCT {column} AS id FROM "
                    f"read_parquet({parquet_list([path])}) WHERE {column} IS NOT NULL")
    except duckdb.Error:
        return False   # the users/items suite reports the file
    return True


def _per_day(con: duckdb.DuckDBPyConnection, rules: list[RowRule], known: dict[str, bool]) -> dict[int, dict]:
    """One pass over every row: per day folder, the row count and each rule's violations."""
    aggs = [f"count_if({r.bad}) AS r{i}" for i, r in enumerate(rules)]
    joins = []
    if known.get("user_id"):
        joins.append("LEFT JOIN known_users ku ON w.user_id = ku.id")
        aggs.append("count_if(w.user_id IS NOT NULL AND ku.id IS NULL) AS unknown_user_id")
    if known.get("video_id"):
        joins.append("LEFT JOIN known_videos kv ON w.video_id = kv.id")
        aggs.append("count_if(w.video_id IS NOT NULL AND kv.id IS NULL) AS unknown_video_id")
    sql = (f"SELECT w.part_date, count(*) AS n_rows, {', '.join(aggs)} FROM {VIEW} w {' '.join(joins)} "
           "GROUP BY w.part_date")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return {int(row[0]): dict(zip(names[1:], row[1:], strict=True)) for row in cur.fetchall()}


def _duplicates_per_day(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    """Copies of a duplicated key beyond its first, counted on the newest day holding the key."""
    key = ", ".join(DUPLICATE_KEY)
    rows = con.execute(f"SELECT d, SUM(c - 1) FROM (SELECT count(*) AS c, max(part_date) AS d FROM {VIEW} "
                       f"GROUP BY {key} HAVING count(*) > 1) GROUP BY d").fetchall()
    return {int(d): int(n) for d, n in rows}


def _duplicated_keys(con: duckdb.DuckDBPyConnection, limit: int = 5) -> list[str]:
    key = ", ".join(DUPLICATE_KEY)
    rows = con.execute(f"SELECT {key}, count(*) FROM {VIEW} GROUP BY {key} HAVING count(*) > 1 "
                       f"ORDER BY {key} LIMIT {limit}").fetchall()
    return [", ".join(f"{k}={v}" for k, v in zip(DUPLICATE_KEY, r[:-1], strict=True)) + f" x{r[-1]}" for r in rows]


def _offending_values(con: duckdb.DuckDBPyConnection, column: str, bad: str) -> list:
    # the first offending rows only: a rule failed by millions of rows must not aggregate them all
    vals = con.execute(f'SELECT DISTINCT "{column}" FROM (SELECT "{column}" FROM {VIEW} WHERE {bad} LIMIT 10000) '
                       'LIMIT 10').fetchall()
    return sorted((v for (v,) in vals), key=str)


def _where(per_day: dict[int, int], window: str) -> str:
    days = [d for d, n in sorted(per_day.items()) if n]
    return days_label(days, [per_day[d] for d in days]) if days else window


# ---- entry point -----------------------------------------------------------------------------------------


def full_checks(con: duckdb.DuckDBPyConnection, store: Path, dates: list[int], known_scenarios: list[str],
                rules: Validation, users_path: Path, items_path: Path) -> FullChecks:
    """Every cheap rule over every row of the window; leaves the view ``VIEW`` registered for the sample."""
    window = f"days {dates[0]}..{dates[-1]}" if len(dates) > 1 else f"day {dates[0]}"
    files = inspect_files(con, store, dates)
    failures = _file_failures(files, INTERACTIONS, window)
    checks: list[dict] = [{"rule": "schema", "column": "*", "success": not failures,
                           "observed": {"files": len(files), "files_with_problems": sum(not pf.ok for pf in files)}}]

    def check(column: str, name: str, ok: bool, observed: Any, kwargs: dict, where: str) -> None:
        entry = {"rule": name, "column": column, "success": bool(ok), "observed": jsonable(observed),
                 "kwargs": jsonable(kwargs)}
        if not ok:
            entry["where"] = where
            failures.append(failure(TABLE, where, column, name, observed, kwargs))
        checks.append(entry)

    # day sizes, from the footers of every readable file (a file with a schema problem still holds rows)
    day_rows = {d: 0 for d in dates}
    for pf in files:
        day_rows[pf.date] += pf.rows or 0
    median = float(statistics.median(day_rows.values()))
    missing = [d for d, n in day_rows.items() if n == 0]
    check("date", "expect_column_distinct_values_to_contain_set", not missing, {"missing": missing},
          {"value_set": dates}, days_label(missing) if missing else window)
    small = {d: n for d, n in day_rows.items() if 0 < n < rules.min_rows_per_day}
    check("day_row_count", "expect_column_values_to_be_between", not small, small or day_rows,
          {"min_value": rules.min_rows_per_day}, days_label(list(small)) if small else window)
    ratios = {d: n / median for d, n in day_rows.items() if n > 0 and median > 0}
    low = {d: round(r, 4) for d, r in ratios.items() if r < rules.min_day_ratio}
    check("day_row_ratio", "expect_column_values_to_be_between", not low, low or {"median": median},
          {"min_value": rules.min_day_ratio}, days_label(list(low)) if low else window)

    register_rows(con, files)
    known = {"user_id": _known_ids(con, "known_users", users_path, "user_id"),
             "video_id": _known_ids(con, "known_videos", items_path, "video_id")}
    per_row = row_rules(dates, known_scenarios)
    try:
        per_day = _per_day(con, per_row, known)
        dups = _duplicates_per_day(con)
    except duckdb.Error as exc:   # a file whose footer reads but whose pages do not
        failures.append(failure(TABLE, window, "*", "file_readable", _first_line(exc),
                                "every part file must be a readable parquet file"))
        return FullChecks(failures, checks, files, day_rows, median, 0)
    n_rows = sum(int(v["n_rows"]) for v in per_day.values())

    for i, rule in enumerate(per_row):
        bad = {d: int(v[f"r{i}"]) for d, v in per_day.items()}
        total = sum(bad.values())
        sample = _offending_values(con, rule.column, rule.bad) if total and rule.show_values else []
        check(rule.column, rule.name, total == 0, row_counts(total, n_rows, sample), rule.kwargs,
              _where(bad, window))

    for col, flag, table_name in (("user_id", "user_known", "known_users"), ("video_id", "video_known",
                                                                             "known_videos")):
        if not known[col]:
            continue
        bad = {d: int(v[f"unknown_{col}"]) for d, v in per_day.items()}
        total = sum(bad.values())
        ok = total <= rules.max_unknown_id_rate * n_rows
        observed = row_counts(total, n_rows)
        if not ok:
            cond = f"{col} IS NOT NULL AND {col} NOT IN (SELECT id FROM {table_name})"
            distinct = con.execute(f"SELECT count(DISTINCT {col}) FROM {VIEW} WHERE {cond}").fetchone()[0]
            observed |= {f"unknown_{col}s": _offending_values(con, col, cond), "distinct_unknown": int(distinct)}
        check(flag, "expect_column_values_to_be_in_set", ok, observed,
              {"value_set": [1], "mostly": 1.0 - rules.max_unknown_id_rate}, _where(bad, window))

    total_dups = sum(dups.values())
    ok = total_dups <= rules.max_duplicate_rate * n_rows
    check("is_duplicate", "expect_column_values_to_be_in_set", ok,
          row_counts(total_dups, n_rows, [] if ok else _duplicated_keys(con)),
          {"value_set": [0], "mostly": 1.0 - rules.max_duplicate_rate}, _where(dups, window))
    return FullChecks(failures, checks, files, day_rows, median, n_rows)
