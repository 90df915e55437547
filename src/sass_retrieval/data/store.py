"""Reading and writing the canonical store.

Writes go to a temporary sibling and are renamed into place, so an interrupted ingest never leaves
a half-written partition that a later stage could mistake for a complete day. A whole ingest works the
same way (``staged_store``): the new store is built aside and replaces the previous one only once it
holds rows for every requested day (``require_days``), so an empty or truncated source leaves yesterday's
store as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_path, staged_dir, swap_dir, temp_path
from ..errors import BadInputError
from .schema import (
    INTERACTIONS,
    ITEMS,
    USERS,
    SchemaError,
    Table,
    conform,
    day_dir,
    interactions_dir,
    stored_dates,
    table_path,
)

log = logging.getLogger(__name__)


class MissingDays(BadInputError, ValueError):
    """An import produced no rows for days the run needs; the message names the source and the days."""


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_table(df: pd.DataFrame, store: Path, table: Table) -> Path:
    path = table_path(store, table.name)
    atomic_write_parquet(conform(df, table, source=str(path)), path)
    return path


def scenario_folder(scenario: str) -> str:
    """The partition folder of a raw scenario below its day, ``scenario=S`` (S percent-encoded, so any name
    is one safe folder name)."""
    return f"scenario={quote(str(scenario), safe='')}"


class DayWriter:
    """Appends chunks to daily partitions, one folder per (day, raw scenario), then swaps each finished day
    into place.

    Chunks of one day may arrive in several pieces (streaming import); each piece of each scenario becomes
    one part file ``date=D/scenario=S/part-NNNNN.parquet`` in a staging folder. The scenario level lets the
    split of one scenario read that scenario's files (and their row groups) only, not the whole day; the
    files keep the ``scenario`` column, so readers never depend on the folder names. ``commit`` replaces any
    previous copy of the day, which is what makes re-ingesting a day idempotent rather than a source of
    duplicate rows.
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self.staging = temp_path(interactions_dir(self.store) / "staging", "")
        self.parts: dict[tuple[int, str], int] = {}

    def write(self, chunk: pd.DataFrame, source: str = "<chunk>") -> None:
        chunk = conform(chunk, INTERACTIONS, source=source)
        for (date, scenario), part in chunk.groupby(["date", "scenario"], sort=True, dropna=False):
            key = (int(date), str(scenario))
            n = self.parts.get(key, 0)
            folder = self.staging / f"date={key[0]}" / scenario_folder(key[1])
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
            pq.write_table(table, folder / f"part-{n:05d}.parquet")
            self.parts[key] = n + 1

    def commit(self) -> list[int]:
        dates = sorted({date for date, _ in self.parts})
        for date in dates:
            swap_dir(self.staging / f"date={date}", day_dir(self.store, date))
        shutil.rmtree(self.staging, ignore_errors=True)
        return dates

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def missing_columns(path: Path, columns: Iterable[str] | None = None) -> list[str]:
    """The interaction columns (default: all canonical ones) a part file lacks, from its footer alone.

    A part written before a column joined the schema (e.g. a store from before the feedback labels) lacks it;
    naming it here beats pyarrow's bare "No match for FieldRef" deep inside a later stage."""
    have = set(pq.read_schema(path).names)
    return [c for c in (INTERACTIONS.names if columns is None else columns) if c not in have]


def read_interactions(store: Path, start: int | None = None, end: int | None = None,
                      columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Read the days in [start, end] (inclusive, YYYYMMDD) in canonical dtypes.

    A part file without a requested column raises :class:`SchemaError` naming the file and the columns."""
    dates = [d for d in stored_dates(store) if (start is None or d >= start) and (end is None or d <= end)]
    cols = list(columns) if columns is not None else INTERACTIONS.names
    frames = []
    for d in dates:
        for f in sorted(day_dir(store, d).rglob("*.parquet")):
            missing = missing_columns(f, cols)
            if missing:
                raise SchemaError(f"{f}: table 'interactions' is missing column(s) {missing} (written before "
                                  f"they joined the schema? re-ingest the store: the ingest stage regenerates it)")
            frames.append(pd.read_parquet(f, columns=cols))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=INTERACTIONS.dtypes[c]) for c in cols})
    df = pd.concat(frames, ignore_index=True)
    return df.astype({c: INTERACTIONS.dtypes[c] for c in cols})


def scenario_counts(store: Path, start: int | None = None, end: int | None = None) -> pd.Series:
    """Rows per raw scenario over the days in [start, end], one part file at a time: the scenario map of every
    stage (``run.load_run``) is decided on these counts, and a window of 10^8 rows must not become 10^8 Python
    strings to count them."""
    counts: dict[str, int] = {}
    dates = [d for d in stored_dates(store) if (start is None or d >= start) and (end is None or d <= end)]
    for d in dates:
        for f in sorted(day_dir(store, d).rglob("*.parquet")):
            if missing_columns(f, ["scenario"]):
                raise SchemaError(f"{f}: table 'interactions' is missing column(s) ['scenario'] (re-ingest the store)")
            vc = pc.value_counts(pq.read_table(f, columns=["scenario"])["scenario"])
            for item in vc.to_pylist():
                if item["values"] is not None:
                    counts[str(item["values"])] = counts.get(str(item["values"]), 0) + int(item["counts"])
    return pd.Series(counts, dtype="int64")


def read_users(store: Path) -> pd.DataFrame:
    return pd.read_parquet(table_path(store, USERS.name)).astype(USERS.dtypes)


def read_items(store: Path) -> pd.DataFrame:
    return pd.read_parquet(table_path(store, ITEMS.name)).astype(ITEMS.dtypes)


# ---- a whole store, built aside and swapped in

@contextlib.contextmanager
def staged_store(store: Path) -> Iterator[Path]:
    """A new, empty store folder beside ``store``; it replaces ``store`` when the block ends normally and
    is deleted when the block raises, so a failed ingest leaves the previous store byte for byte."""
    with staged_dir(store, suffix=".new") as new:
        yield new


def current_days(store: Path, dates: Iterable[int]) -> list[int]:
    """Those of ``dates`` that ``store`` holds in the current schema (every part has every canonical column)."""
    have = set(stored_dates(store)) if Path(store).is_dir() else set()
    found = sorted(set(int(d) for d in dates) & have)
    stale = [d for d in found if any(missing_columns(f) for f in day_dir(store, d).rglob("*.parquet"))]
    if stale:
        log.warning("%s: %d day(s) (%s..%s) lack canonical interaction column(s) (written before they joined "
                    "the schema): not kept", store, len(stale), stale[0], stale[-1])
    return [d for d in found if d not in stale]


def carry_days(old: Path, new: Path, dates: Iterable[int]) -> list[int]:
    """Copy the partitions of ``dates`` that the store ``old`` holds into ``new``; returns the days carried.

    Part files are never modified after they are written, so a hard link is a copy (a copy where the
    file system can not link). A day written in an older schema is not carried (:func:`current_days`): the
    caller sees it missing and writes it anew, rather than validation rejecting it later."""
    carried = current_days(old, dates)
    for date in carried:
        src, dst = day_dir(old, date), day_dir(new, date)
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.rglob("*")):          # the scenario folders below the day too
            if f.is_file():
                target = dst / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copy2(f, target)
    return carried


def require_days(store: Path, dates: Iterable[int] | None, source: str) -> list[int]:
    """The days ``store`` holds rows for; :class:`MissingDays` naming ``source`` when a requested day (or,
    with ``dates=None``, any day at all) has none."""
    have = [d for d in stored_dates(store) if any(day_dir(store, d).rglob("*.parquet"))]
    wanted = None if dates is None else sorted(set(int(d) for d in dates))
    missing = [d for d in wanted if d not in have] if wanted is not None else []
    if missing or not have:
        shown = ", ".join(str(d) for d in missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise MissingDays(f"{source}: date: rows for every requested day: no rows for {shown or 'any day'}",
                          hint="the previous store is kept")
    return have
