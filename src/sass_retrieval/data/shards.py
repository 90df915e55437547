"""The streamed training input's shards: every trained scenario's positives in one seeded random order.

The split writes each scenario's ``positives.parquet`` sorted by (user_id, time_ms, video_id) (the in-memory
feature bank relies on that order), so one of its row groups is a contiguous range of the users of one
scenario. A stream of those row groups (train.stream, ``train.input: stream``) then fills its shuffle buffer
with few users of one scenario at a time, and its batches are unlike the in-memory plan's (a uniform
permutation of each day's rows over every scenario). Here the rows of every trained scenario, with a
``scenario`` column, are put in one random order once, so any row group is a uniform sample of the window's
positives: a batch drawn from a buffer of a few row groups mixes users and scenarios as the in-memory one does.

The order is ``ORDER BY hash(seed, scenario, row number in the scenario's file)`` (ties, which a 64-bit hash
makes all but impossible, by scenario and row number): a pure function of the seed and the split's files.
DuckDB's ``hash`` is stable for one DuckDB version, not across versions; meta.json records the version, and a
stream only needs the order to be random, not to be the same after an upgrade. DuckDB sorts within
``data.memory_limit_mib`` and spills beyond it (at a hundred million rows a day the window's positives are far
larger than a worker's memory); the sorted rows leave DuckDB as Arrow record batches, and pyarrow's writer cuts
them into row groups of exactly ``row_group_rows`` (DuckDB's own ``COPY ... ROW_GROUP_SIZE`` rounds the size up
to a multiple of its 2048-row vectors) and files of at most ``file_row_groups`` row groups. Nothing the size of
the rows enters pandas. A window of fewer than ``min_row_groups`` x ``row_group_rows`` rows gets smaller row
groups, ``min_row_groups`` of them: the stream deals row groups out to the ranks of a distributed run, and one
row group holding a small window whole would leave every other rank without a row (and, as every rank takes the
fewest rank's steps, the run without a step).

``meta.json`` says what the shards were written from (scenarios, training days, the source files' row counts)
and how (seed, hash, row groups): the stream checks it against its feature bank (:func:`check_shards`) and
fails with one line if the shards belong to another split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BadInputError, MissingPrerequisiteError
from .features import _write_json

SHARD_ROWS = 65536        # rows per row group: the unit the stream reads and deals out to the ranks
FILE_ROW_GROUPS = 256     # row groups per shard file: files of at most SHARD_ROWS * FILE_ROW_GROUPS rows
MIN_ROW_GROUPS = 64       # a small window gets smaller row groups, so its rows still deal out over the ranks
META = "meta.json"
SCENARIO = "scenario"     # the column naming each row's run scenario
HASH = "duckdb hash(seed, scenario, row number in the scenario's positives.parquet)"


def positives_path(features_dir: Path, scenario: str) -> Path:
    return Path(features_dir) / scenario / "positives.parquet"


def trained_scenarios(features_dir: Path, names: Sequence[str]) -> list[str]:
    """The run's scenarios with a positives table (a scenario skipped today has a marker and no tables)."""
    return [s for s in names if positives_path(features_dir, s).exists()]


def shard_file(i: int) -> str:
    return f"positives-{i:04d}.parquet"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def shuffled_query(features_dir: Path, scenarios: Sequence[str], seed: int) -> str:
    """The SQL of every scenario's positives rows with their ``scenario``, in the seeded random order."""
    parts = [f"SELECT {_lit(s)} AS {SCENARIO}, * FROM read_parquet({_lit(str(positives_path(features_dir, s)))}, "
             f"file_row_number = true)" for s in scenarios]
    union = " UNION ALL BY NAME ".join(parts)
    return (f"SELECT * EXCLUDE (file_row_number) FROM ({union}) "
            f"ORDER BY hash({int(seed)}::BIGINT, {SCENARIO}, file_row_number), {SCENARIO}, file_row_number")


def _check_same_columns(features_dir: Path, scenarios: Sequence[str]) -> None:
    """Every positives file must hold the same columns: a shard row group mixes them all."""
    first = positives_path(features_dir, scenarios[0])
    names = set(pq.read_schema(first).names)
    for s in scenarios[1:]:
        path = positives_path(features_dir, s)
        other = set(pq.read_schema(path).names)
        if other != names:
            raise BadInputError(f"{path}: columns {sorted(other ^ names)} differ from {first}'s: every scenario's "
                                f"positives must have the same columns (re-run the split of every scenario)")
    if SCENARIO in names:
        raise BadInputError(f"{first}: has a column {SCENARIO!r}, which the shards add")


def write_shards(con: duckdb.DuckDBPyConnection, features_dir: Path, scenarios: Sequence[str], seed: int,
                 out: Path, row_group_rows: int = SHARD_ROWS, file_row_groups: int = FILE_ROW_GROUPS,
                 min_row_groups: int = MIN_ROW_GROUPS) -> dict[str, Any]:
    """Write the positives of ``scenarios`` (each ``features_dir/<s>/positives.parquet``) into the new folder
    ``out`` as ``positives-NNNN.parquet`` files in one random order (module docstring) and ``meta.json``;
    returns the meta. ``con``: a memory-bounded connection (data.engine.connect) that spills its sort.
    Row groups hold ``row_group_rows`` rows, fewer if that would make fewer than ``min_row_groups``."""
    if row_group_rows < 1 or file_row_groups < 1 or min_row_groups < 1:
        raise ValueError(f"shards need row_group_rows, file_row_groups and min_row_groups >= 1, got "
                         f"{row_group_rows}, {file_row_groups}, {min_row_groups}")
    features_dir, out = Path(features_dir), Path(out)
    scenarios = list(scenarios)
    if not scenarios:
        raise MissingPrerequisiteError(f"{features_dir}: no scenario has a positives.parquet: run the split stage")
    split_meta = json.loads((positives_path(features_dir, scenarios[0]).parent / "meta.json").read_text())
    _check_same_columns(features_dir, scenarios)
    source_rows = split_rows(features_dir, scenarios)
    row_group_rows = max(1, min(row_group_rows, -(-sum(source_rows.values()) // min_row_groups)))
    out.mkdir(parents=True, exist_ok=True)
    # a relation's reader streams the sorted rows (a con.execute() result's would copy them all first); no other
    # query may run on ``con`` until it is read to the end
    reader = con.sql(shuffled_query(features_dir, scenarios, seed)).to_arrow_reader(row_group_rows)
    files: list[str] = []
    groups: list[int] = []       # rows of each row group, in file order
    counts: dict[tuple[str, int], int] = {}
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(rows: int) -> None:
        """One row group of the first ``rows`` pending rows into the current file (a new one when it is full)."""
        nonlocal writer, pending, pending_rows
        table = pa.Table.from_batches(pending, schema=reader.schema)
        group, rest = table.slice(0, rows), table.slice(rows)
        if writer is None or len(groups) % file_row_groups == 0:
            if writer is not None:
                writer.close()
            files.append(shard_file(len(files)))
            writer = pq.ParquetWriter(out / files[-1], reader.schema)
        writer.write_table(group, row_group_size=rows)
        groups.append(rows)
        by = group.group_by([SCENARIO, "date"]).aggregate([([], "count_all")])
        for s, d, n in zip(*(by.column(c).to_pylist() for c in (SCENARIO, "date", "count_all")), strict=True):
            counts[(s, int(d))] = counts.get((s, int(d)), 0) + int(n)
        pending, pending_rows = rest.to_batches(), rest.num_rows

    try:
        for batch in reader:
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= row_group_rows:
                flush(row_group_rows)
        if pending_rows:
            flush(pending_rows)
        if writer is None:   # no positive at all: one empty file keeps the schema
            files.append(shard_file(0))
            pq.ParquetWriter(out / files[-1], reader.schema).close()
    finally:
        if writer is not None:
            writer.close()
    meta = {"scenarios": scenarios, "train_dates": [int(d) for d in split_meta["train_dates"]],
            "seed": int(seed), "hash": HASH, "duckdb": duckdb.__version__,
            "source_rows": source_rows,
            "rows": {s: {str(d): n for (t, d), n in sorted(counts.items()) if t == s} for s in scenarios},
            "row_group_rows": int(row_group_rows), "row_groups": groups, "files": files}
    _write_json(out / META, meta)
    return meta


def read_shards_meta(shards_dir: Path) -> dict[str, Any]:
    path = Path(shards_dir) / META
    if not path.exists():
        raise MissingPrerequisiteError(f"{path}: no training shards (the streamed input reads them): run the shards "
                                       f"stage (python -m pipelines.shards) after the split")
    return json.loads(path.read_text())


def check_shards(shards_dir: Path, scenarios: Sequence[str], train_dates: Sequence[int],
                 source_rows: dict[str, int]) -> dict[str, Any]:
    """The shards' meta, if they were written from the split a feature bank reads (the same scenarios, training
    days and rows per scenario's positives file); else one line saying what differs."""
    meta = read_shards_meta(shards_dir)
    path = Path(shards_dir) / META
    hint = "the shards are older than the split: re-run the shards stage (python -m pipelines.shards)"
    if sorted(meta["scenarios"]) != sorted(scenarios):
        raise MissingPrerequisiteError(f"{path}: scenarios: written for {meta['scenarios']}, the feature bank's are "
                                       f"{list(scenarios)}", hint=hint)
    if [int(d) for d in meta["train_dates"]] != [int(d) for d in train_dates]:
        raise MissingPrerequisiteError(f"{path}: train_dates: written for {meta['train_dates']}, the feature bank's "
                                       f"are {list(train_dates)}", hint=hint)
    differ = {s: (meta["source_rows"].get(s), n) for s, n in source_rows.items() if meta["source_rows"].get(s) != n}
    if differ:
        raise MissingPrerequisiteError(f"{path}: source_rows: (shards, split) rows per positives file differ: {differ}",
                                       hint=hint)
    return meta


def split_rows(features_dir: Path, scenarios: Sequence[str]) -> dict[str, int]:
    """Rows of each scenario's positives file, from its footer."""
    return {s: pq.ParquetFile(positives_path(features_dir, s)).metadata.num_rows for s in scenarios}
