"""Reading and writing the canonical store.

Writes go to a temporary sibling and are renamed into place, so an interrupted ingest never leaves
a half-written partition that a later stage could mistake for a complete day.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import INTERACTIONS, ITEMS, USERS, Table, conform, day_dir, interactions_dir, stored_dates, table_path


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def write_table(df: pd.DataFrame, store: Path, table: Table) -> Path:
    path = table_path(store, table.name)
    atomic_write_parquet(conform(df, table, source=str(path)), path)
    return path


class DayWriter:
    """Appends chunks to daily partitions, then swaps each finished day into place.

    Chunks of one day may arrive in several pieces (streaming import); each piece becomes one part
    file in a staging folder. ``commit`` replaces any previous copy of the day, which is what makes
    re-ingesting a day idempotent rather than a source of duplicate rows.
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self.staging = interactions_dir(self.store) / f".staging-{uuid.uuid4().hex}"
        self.parts: dict[int, int] = {}

    def write(self, chunk: pd.DataFrame, source: str = "<chunk>") -> None:
        chunk = conform(chunk, INTERACTIONS, source=source)
        for date, part in chunk.groupby("date", sort=True):
            n = self.parts.get(int(date), 0)
            folder = self.staging / f"date={int(date)}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
            pq.write_table(table, folder / f"part-{n:05d}.parquet")
            self.parts[int(date)] = n + 1

    def commit(self) -> list[int]:
        dates = sorted(self.parts)
        for date in dates:
            target = day_dir(self.store, date)
            old = target.with_name(target.name + f".old-{uuid.uuid4().hex}")
            if target.exists():
                target.rename(old)
            (self.staging / f"date={date}").rename(target)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        return dates

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def read_interactions(store: Path, start: int | None = None, end: int | None = None,
                      columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Read the days in [start, end] (inclusive, YYYYMMDD) in canonical dtypes."""
    dates = [d for d in stored_dates(store) if (start is None or d >= start) and (end is None or d <= end)]
    cols = list(columns) if columns is not None else INTERACTIONS.names
    frames = []
    for d in dates:
        for f in sorted(day_dir(store, d).glob("*.parquet")):
            frames.append(pd.read_parquet(f, columns=cols))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=INTERACTIONS.dtypes[c]) for c in cols})
    df = pd.concat(frames, ignore_index=True)
    return df.astype({c: INTERACTIONS.dtypes[c] for c in cols})


def read_users(store: Path) -> pd.DataFrame:
    return pd.read_parquet(table_path(store, USERS.name)).astype(USERS.dtypes)


def read_items(store: Path) -> pd.DataFrame:
    return pd.read_parquet(table_path(store, ITEMS.name)).astype(ITEMS.dtypes)
