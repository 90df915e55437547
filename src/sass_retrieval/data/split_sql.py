"""The split stage in DuckDB: one scenario's feature tables, or the pretraining pairs, from the store's part files.

The tables are exactly those of the pandas reference (``features.split_scenario`` and ``features.pretrain_pairs``,
the spec that tests/data/test_split_sql.py compares with): the same columns, dtypes once read back with pandas,
values and row order. Nothing the size of the window's rows passes through pandas: DuckDB reads the Parquet
part files, aggregates, and writes each table with ``COPY ... TO`` itself.

Why DuckDB: it streams the part files row group by row group (and skips the row groups of other scenarios by
their statistics), it spills its sorts, aggregates and window functions to disk beyond ``data.memory_limit_mib``
instead of growing until the machine kills the stage, the as-of-day click histories are SQL window functions
over per-(user, day) click lists, and it is one dependency (no pandas/numpy re-implementation of group-bys
and joins that only fit in memory). bench/engines.py measures it against Polars' streaming engine.

Row order (what models/bank.py relies on: the positives' click rows in the split's order): the reference sorts
a scenario's rows stably by (user_id, time_ms, video_id) after reading the part files in
``engine.interaction_files`` order; here the sort key carries the file's position in that list and the row's
number in its file, so even rows equal on the three keys come out in the reference's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from .engine import parquet_list
from .features import OTHER, PAD, SPLIT_TABLES, _write_json, seq_columns
from .schema import INTERACTIONS, ITEMS, OBJECTIVES, USERS, table_path
from .store import missing_columns

PRIOR_CLICKS, PRIOR_EXPOSURES = 2.0, 5.0   # features.add_rates: 0.4 * 5 smoothed clicks over 5 exposures
ROW_GROUP = 65536


def _lit(value: object) -> str:
    """A SQL literal of a string or an int."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))  # type: ignore[call-overload]


def _in_list(values: Iterable[object]) -> str:
    vals = [_lit(v) for v in values]
    return "(" + ", ".join(vals) + ")" if vals else "(NULL)"


def raw_filter(mapping: Mapping[str, str], scenarios: Sequence[str]) -> str:
    """A predicate on the raw ``scenario`` column: the rows whose run scenario (``ScenarioMap.apply``: unknown
    raw names map to 'other') is one of ``scenarios``. Written on the raw column so DuckDB prunes row groups."""
    wanted = set(scenarios)
    raws = [r for r, m in mapping.items() if m in wanted]
    cond = f"scenario IN {_in_list(sorted(raws))}"
    if OTHER in wanted:
        cond = f"({cond} OR scenario NOT IN {_in_list(sorted(mapping))})"
    return cond


def mapped_expr(mapping: Mapping[str, str]) -> str:
    """The run scenario of a row (``ScenarioMap.apply`` in SQL)."""
    if not mapping:
        return _lit(OTHER)
    cases = " ".join(f"WHEN {_lit(r)} THEN {_lit(m)}" for r, m in sorted(mapping.items()))
    return f"CASE scenario {cases} ELSE {_lit(OTHER)} END"


def _check_columns(files: Sequence[Path], columns: Sequence[str]) -> None:
    from .schema import SchemaError

    for f in files:
        missing = missing_columns(f, columns)
        if missing:
            raise SchemaError(f"{f}: table 'interactions' is missing column(s) {missing} (written before "
                              f"they joined the schema? re-ingest the store: the ingest stage regenerates it)")


def _rows_view(con: duckdb.DuckDBPyConnection, files: Sequence[Path], where: str, mapping: Mapping[str, str]) -> None:
    """``rows``: the selected interactions with their run scenario and their position in the reference's read
    order (``fidx``: the file's index in ``files``, ``rn``: the row's number in its file)."""
    con.execute("DROP TABLE IF EXISTS part_files")
    con.execute("CREATE TEMP TABLE part_files (filename VARCHAR, fidx INTEGER)")
    if files:
        con.executemany("INSERT INTO part_files VALUES (?, ?)", [[str(f), i] for i, f in enumerate(files)])
        src = (f"read_parquet({parquet_list(files)}, hive_partitioning = false, filename = true, "
               f"file_row_number = true)")
    else:  # no file: an empty relation of the canonical columns
        cols = ", ".join(f"NULL::{_duck_type(INTERACTIONS.dtypes[c])} AS {c}" for c in INTERACTIONS.names)
        src = f"(SELECT {cols}, NULL::VARCHAR AS filename, NULL::BIGINT AS file_row_number WHERE false)"
    con.execute(f"""CREATE OR REPLACE TEMP VIEW rows AS
        SELECT r.* EXCLUDE (filename, file_row_number), {mapped_expr(mapping)} AS run_scenario,
               f.fidx, r.file_row_number AS rn
        FROM {src} r JOIN part_files f USING (filename)
        WHERE {where}""")


def _duck_type(dtype: str) -> str:
    return {"int64": "BIGINT", "int32": "INTEGER", "int8": "TINYINT", "string": "VARCHAR",
            "float64": "DOUBLE"}[dtype]


def _pandas_metadata(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The ``pandas`` Parquet metadata that makes pandas read the file back with the reference's dtypes
    (text columns as the ``string`` dtype, as the canonical schema and the pandas-written split have them)."""
    empty = con.sql(f"SELECT * FROM ({query}) LIMIT 0").arrow().read_all().to_pandas()
    for name, col in empty.items():
        if str(col.dtype) in ("str", "object") or isinstance(col.dtype, pd.StringDtype):
            empty[name] = col.astype("string")
    return pa.Schema.from_pandas(empty, preserve_index=False).metadata[b"pandas"].decode()


def copy_parquet(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """``query``'s rows into the Parquet file ``path``, written by DuckDB (row groups of ``ROW_GROUP`` rows)."""
    meta = _pandas_metadata(con, query).replace("'", "''")
    target = str(path).replace("'", "''")
    con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP}, "
                f"KV_METADATA {{pandas: '{meta}'}})")


def _ctr(clicks: str, exposures: str) -> str:
    """features.add_rates in SQL: computed in double, stored as float32."""
    return f"CAST(({clicks} + {PRIOR_CLICKS}::DOUBLE) / ({exposures} + {PRIOR_EXPOSURES}::DOUBLE) AS FLOAT)"


def _padded(hist: str, seq_len: int) -> str:
    """seq_0..seq_{L-1} from a list of at most L video ids, left-padded with PAD (features.sequence_matrix)."""
    return ", ".join(f"CASE WHEN len({hist}) >= {seq_len - j} THEN {hist}[len({hist}) - {seq_len - j - 1}] "
                     f"ELSE {PAD} END::BIGINT AS {c}" for j, c in enumerate(seq_columns(seq_len)))


def _last(lst: str, seq_len: int) -> str:
    return f"list_slice({lst}, -{seq_len}, -1)"


def _static_columns(table_cols: list[str], key: str) -> str:
    return ", ".join(f"s.{c}" for c in table_cols if c != key)


def scenario_tables(con: duckdb.DuckDBPyConnection, store: Path, train_dates: Sequence[int], seq_len: int) -> dict[str, str]:
    """The SQL of each of ``SPLIT_TABLES`` over the ``rows`` view (one scenario's training rows).

    Builds the temp tables the queries share: per (user, day) and (item, day) counts, the clicks with their
    run of consecutive days, and the click histories. A click's history (features.sequence_matrix) is its user's
    last L clicks before the first click of its run of same-day clicks in time order; a non-click positive's
    (features.history_before_day) the last L clicks, ordered by (day, time), of days before its day. Both come
    from per-group click lists: the last L of the concatenated lists of at most L groups before (each group has
    at least one click), a window function over groups instead of a scan over rows.
    """
    L = int(seq_len)
    labels = list(OBJECTIVES.values())
    dates = [int(d) for d in train_dates]
    order = "time_ms, video_id, fidx, rn"
    con.execute("""CREATE OR REPLACE TEMP TABLE daily_u AS SELECT user_id, date, count(*) AS exp,
                   sum(is_click)::BIGINT AS clk FROM rows GROUP BY user_id, date""")
    con.execute("""CREATE OR REPLACE TEMP TABLE daily_v AS SELECT video_id, date, count(*) AS exp,
                   sum(is_click)::BIGINT AS clk FROM rows GROUP BY video_id, date""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE clicks AS
        SELECT user_id, video_id, date, time_ms, fidx, rn, {", ".join(labels)},
               sum(new_run) OVER (PARTITION BY user_id ORDER BY {order}
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
        FROM (SELECT *, (date IS DISTINCT FROM lag(date) OVER (PARTITION BY user_id ORDER BY {order}))::INTEGER
                        AS new_run
              FROM rows WHERE is_click = 1)""")
    # the history before each run of a user's same-day clicks (in time order)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE run_hist AS
        SELECT user_id, run, {_last(f"flatten(list(lst) OVER (PARTITION BY user_id ORDER BY run ROWS BETWEEN {L} "
                                    f"PRECEDING AND 1 PRECEDING))", L)} AS h
        FROM (SELECT user_id, run, list(video_id ORDER BY {order}) AS lst FROM clicks GROUP BY user_id, run)""")
    # the history up to and including each day with clicks (clicks by day, then time)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE day_hist AS
        SELECT user_id, date, {_last(f"flatten(list(lst) OVER (PARTITION BY user_id ORDER BY date ROWS BETWEEN "
                                     f"{L - 1} PRECEDING AND CURRENT ROW))", L)} AS h
        FROM (SELECT user_id, date, list(video_id ORDER BY {order}) AS lst FROM clicks GROUP BY user_id, date)""")

    users_cols = _static_columns(USERS.names, "user_id")
    items_cols = _static_columns(ITEMS.names, "video_id")
    users_src, items_src = (f"read_parquet('{str(table_path(store, t.name)).replace(chr(39), chr(39) * 2)}')"
                            for t in (USERS, ITEMS))
    users = f"""
        WITH cnt AS (SELECT user_id, sum(exp)::BIGINT AS exp_count, sum(clk)::BIGINT AS click_count
                     FROM daily_u GROUP BY user_id),
             last AS (SELECT user_id, list(video_id ORDER BY {order}) AS h FROM
                        (SELECT * FROM clicks QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY
                         time_ms DESC, video_id DESC, fidx DESC, rn DESC) <= {L}) GROUP BY user_id)
        SELECT cnt.user_id, exp_count, click_count, {_padded("last.h", L)},
               {_ctr("click_count", "exp_count")} AS ctr{", " + users_cols if users_cols else ""}
        FROM cnt LEFT JOIN last USING (user_id) LEFT JOIN {users_src} s ON s.user_id = cnt.user_id
        ORDER BY cnt.user_id"""
    last_day = max(dates) if dates else None
    recent = ("0::BIGINT AS exp_recent, 0::BIGINT AS clk_recent" if last_day is None else
              f"coalesce(sum(exp) FILTER (WHERE date = {last_day}), 0)::BIGINT AS exp_recent, "
              f"coalesce(sum(clk) FILTER (WHERE date = {last_day}), 0)::BIGINT AS clk_recent")
    items = f"""
        WITH cnt AS (SELECT video_id, sum(exp)::BIGINT AS exp_count, sum(clk)::BIGINT AS click_count, {recent}
                     FROM daily_v GROUP BY video_id)
        SELECT cnt.video_id, exp_count, click_count, {_ctr("click_count", "exp_count")} AS ctr,
               exp_recent, clk_recent{", " + items_cols if items_cols else ""}
        FROM cnt LEFT JOIN {items_src} s ON s.video_id = cnt.video_id
        ORDER BY cnt.video_id"""
    day_values = ", ".join(f"({i}, {d})" for i, d in enumerate(dates)) or "(NULL, NULL)"
    item_daily = f"""
        WITH d AS (SELECT * FROM (VALUES {day_values}) t(i, date) WHERE i IS NOT NULL),
             grid AS (SELECT v.video_id, d.date::INTEGER AS date, d.i FROM (SELECT DISTINCT video_id FROM daily_v) v
                      CROSS JOIN d),
             u AS (SELECT video_id, date, exp, clk, false AS g FROM daily_v
                   UNION ALL SELECT video_id, date, 0, 0, true FROM grid),
             cum AS (SELECT video_id, date, g, sum(exp) OVER w AS exp_count, sum(clk) OVER w AS click_count FROM u
                     WINDOW w AS (PARTITION BY video_id ORDER BY date
                                  RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
        SELECT grid.video_id, grid.date, coalesce(cum.exp_count, 0)::BIGINT AS exp_count,
               coalesce(cum.click_count, 0)::BIGINT AS click_count, coalesce(prev.exp, 0)::BIGINT AS exp_recent,
               coalesce(prev.clk, 0)::BIGINT AS clk_recent,
               {_ctr("coalesce(cum.click_count, 0)", "coalesce(cum.exp_count, 0)")} AS ctr
        FROM grid JOIN cum ON cum.g AND cum.video_id = grid.video_id AND cum.date = grid.date
        LEFT JOIN d AS dp ON dp.i = grid.i - 1
        LEFT JOIN daily_v prev ON prev.video_id = grid.video_id AND prev.date = dp.date
        ORDER BY grid.video_id, grid.i"""
    label_cols = ", ".join(labels)
    any_label = " OR ".join(f"{c} = 1" for c in labels)
    positives = f"""
        WITH ub AS (SELECT user_id, date,
                           coalesce(sum(exp) OVER w, 0)::BIGINT AS exp_count,
                           coalesce(sum(clk) OVER w, 0)::BIGINT AS click_count
                    FROM daily_u WINDOW w AS (PARTITION BY user_id ORDER BY date
                                              RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
             clicked AS (SELECT c.user_id, c.video_id, c.date, c.time_ms, c.fidx, c.rn, {label_cols}, r.h
                         FROM clicks c LEFT JOIN run_hist r USING (user_id, run)),
             other AS (SELECT p.user_id, p.video_id, p.date, p.time_ms, p.fidx, p.rn, {label_cols}, g.h
                       FROM (SELECT * FROM rows WHERE is_click <> 1 AND ({any_label})) p
                       ASOF LEFT JOIN day_hist g ON p.user_id = g.user_id AND p.date > g.date),
             pos AS (SELECT * FROM clicked UNION ALL SELECT * FROM other)
        SELECT pos.user_id, pos.video_id, pos.date, {", ".join(f"pos.{c}" for c in labels)}, {_padded("pos.h", L)},
               coalesce(ub.exp_count, 0)::BIGINT AS exp_count, coalesce(ub.click_count, 0)::BIGINT AS click_count,
               {_ctr("coalesce(ub.click_count, 0)", "coalesce(ub.exp_count, 0)")} AS ctr
        FROM pos LEFT JOIN ub ON ub.user_id = pos.user_id AND ub.date = pos.date
        ORDER BY pos.user_id, pos.time_ms, pos.video_id, pos.fidx, pos.rn"""
    exposure_dist = """
        SELECT video_id, exposures, exposures / sum(exposures) OVER () AS prob
        FROM (SELECT video_id, sum(exp)::BIGINT AS exposures FROM daily_v GROUP BY video_id)
        ORDER BY video_id"""
    return {"users": users, "items": items, "item_daily": item_daily, "positives": positives,
            "exposure_dist": exposure_dist}


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def write_scenario_split_sql(con: duckdb.DuckDBPyConnection, files: Sequence[Path], store: Path, out: Path,
                             scenario: str, mapping: Mapping[str, str], meta: dict) -> dict:
    """One scenario's feature tables, stats.json and meta.json into the (new) folder ``out``; returns the stats
    (the same files as ``features.write_scenario_split``). ``files``: the training days' part files in
    ``engine.interaction_files`` order; ``mapping``: raw scenario -> run scenario (``ScenarioMap.mapping``)."""
    files = list(files)
    _check_columns(files, INTERACTIONS.names)
    _rows_view(con, files, raw_filter(mapping, [scenario]), mapping)
    queries = scenario_tables(con, store, meta["train_dates"], meta["seq_len"])
    out.mkdir(parents=True, exist_ok=True)
    for key in SPLIT_TABLES:
        copy_parquet(con, queries[key], out / f"{key}.parquet")

    def n(table: str, where: str = "true") -> int:
        path = str(out / f"{table}.parquet").replace("'", "''")
        return _count(con, f"SELECT count(*) FROM read_parquet('{path}') WHERE {where}")

    stats = {"rows": _count(con, "SELECT sum(exp) FROM daily_u"), "users": n("users"), "items": n("items"),
             "positives": n("positives", "is_click = 1"),
             "objective_positives": {name: n("positives", f"{col} = 1") for name, col in OBJECTIVES.items()},
             "positive_rows": n("positives"),
             "reported": scenario in meta["reported"]}
    _write_json(out / "stats.json", stats)
    _write_json(out / "meta.json", meta)
    return stats


def pairs_query(key: str) -> str:
    """features.pretrain_pairs over the ``rows`` view: (id, scenario a < scenario b, last_date)."""
    return f"""
        WITH seen AS (SELECT {key} AS id, run_scenario AS scenario, max(date) AS d FROM rows GROUP BY {key}, run_scenario)
        SELECT a.id, a.scenario AS scenario_a, b.scenario AS scenario_b, least(a.d, b.d)::BIGINT AS last_date
        FROM seen a JOIN seen b ON a.id = b.id AND a.scenario < b.scenario
        ORDER BY a.id, scenario_a, scenario_b"""


def write_pairs_split_sql(con: duckdb.DuckDBPyConnection, files: Sequence[Path], out: Path, names: Sequence[str],
                          mapping: Mapping[str, str], meta: dict) -> dict:
    """The cross-scenario pretraining pairs of the rows of the run scenarios ``names`` into ``out`` (the same
    files as ``features.write_pairs_split``)."""
    files = list(files)
    _check_columns(files, ["user_id", "video_id", "date", "scenario"])
    _rows_view(con, files, raw_filter(mapping, names), mapping)
    out.mkdir(parents=True, exist_ok=True)
    copy_parquet(con, pairs_query("user_id"), out / "users.parquet")
    copy_parquet(con, pairs_query("video_id"), out / "items.parquet")
    counts = {k: _count(con, f"SELECT count(*) FROM read_parquet('{str(out / f)}')")
              for k, f in (("user_pairs", "users.parquet"), ("item_pairs", "items.parquet"))}
    _write_json(out / "stats.json", counts)
    _write_json(out / "meta.json", meta)
    return counts


__all__ = ["copy_parquet", "mapped_expr", "pairs_query", "raw_filter", "scenario_tables", "write_pairs_split_sql",
           "write_scenario_split_sql"]
