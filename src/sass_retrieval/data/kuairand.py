"""Importer for the official KuaiRand-Pure release layout.

Reads ``log_standard_*.csv`` (one file or several, as in the full release), ``user_features_pure.csv``
and ``video_features_basic_pure.csv`` with their official column names, maps them onto the canonical
schema and writes the store. Every feedback label the canonical table keeps (``schema.FEEDBACK_COLUMNS``:
``long_view``, ``is_like``, ...) is a required log column, read under its official name: a release without
one fails with the file and the column named rather than a store whose labels silently default to 0. The
logs are read in chunks so the full release (millions of rows) ingests with bounded memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..errors import BadInputError
from .schema import (
    FEEDBACK_COLUMNS,
    INTERACTIONS,
    ITEMS,
    USER_CATEGORICAL,
    USER_PROFILE_CODES,
    USERS,
    SchemaError,
)
from .store import DayWriter, write_table

log = logging.getLogger(__name__)

LOG_GLOB = "log_standard_*.csv"
USER_FILE = "user_features_pure.csv"
ITEM_FILE = "video_features_basic_pure.csv"

LOG_COLUMNS = {
    "user_id": "int64",
    "video_id": "int64",
    "date": "int64",
    "time_ms": "int64",
    "is_click": "int64",
    **{c: "int64" for c in FEEDBACK_COLUMNS},
    "play_time_ms": "float64",
    "duration_ms": "float64",
    "is_rand": "float64",
    "tab": "int64",
}
USER_RENAME = {
    "user_active_degree": "active_degree",
    "follow_user_num_range": "follow_range",
    "fans_user_num_range": "fans_range",
    "friend_user_num_range": "friend_range",
}


class SourceError(BadInputError, FileNotFoundError):
    """The source directory does not hold the official files; the message names what is missing."""


def find_files(src: Path) -> tuple[list[Path], Path, Path]:
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src.resolve()}: KuaiRand release folder (data.kuairand_dir, --kuairand-dir): not found")
    logs = sorted(src.glob(LOG_GLOB))
    missing = [n for n in (USER_FILE, ITEM_FILE) if not (src / n).is_file()]
    if not logs:
        missing.insert(0, LOG_GLOB)
    if missing:
        raise SourceError(f"{src}: missing KuaiRand file(s) {missing}")
    return logs, src / USER_FILE, src / ITEM_FILE


def _read_csv(path: Path, usecols: list[str], **kw) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError as exc:
        raise SourceError(f"{path}: header: a CSV header and rows: empty file (0 bytes)") from exc
    missing = [c for c in usecols if c not in header]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}")
    return pd.read_csv(path, usecols=usecols, **kw)


def _require_rows(rows: int, path: Path) -> None:
    """A file of the release with a header and no rows is a broken export, not an empty day: stop the import
    (the previous store stays) rather than let a store without that file's rows replace it."""
    if rows == 0:
        raise SourceError(f"{path}: rows: at least one data row: 0 rows (header-only file)")


def log_chunk_to_canonical(chunk: pd.DataFrame) -> pd.DataFrame:
    """Official log columns -> canonical interactions (scenario = the tab number as text)."""
    out = pd.DataFrame(
        {
            "user_id": chunk["user_id"].astype("int64"),
            "video_id": chunk["video_id"].astype("int64"),
            "date": chunk["date"].astype("int32"),
            "time_ms": chunk["time_ms"].astype("int64"),
            "scenario": chunk["tab"].astype("int64").astype(str).astype("string"),
            "is_click": chunk["is_click"].astype("int8"),
            **{c: chunk[c].astype("int8") for c in FEEDBACK_COLUMNS},
            "play_time_ms": chunk["play_time_ms"].fillna(0).astype("int64"),
            "duration_ms": chunk["duration_ms"].fillna(0).astype("int64"),
            "is_rand": chunk["is_rand"].fillna(0).astype("int8"),
        }
    )
    return out[INTERACTIONS.names]


def _chunks(reader, path: Path):
    """Chunks of a log file; a file pandas can not parse (truncated, binary) is named in the error."""
    try:
        yield from reader
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError) as exc:
        raise SchemaError(f"{path}: cannot parse the CSV (truncated or corrupt?): {exc}") from exc


def _convert(chunk: pd.DataFrame, path: Path, first_row: int) -> pd.DataFrame:
    """Canonical rows of one chunk; a missing or non-numeric value names the file, column and line."""
    for col in LOG_COLUMNS:
        values = pd.to_numeric(chunk[col], errors="coerce")
        bad = values.isna() if col not in ("play_time_ms", "duration_ms", "is_rand") else (
            values.isna() & chunk[col].notna())
        if bad.any():
            line = first_row + int(np.argmax(bad.to_numpy())) + 2  # +1 header, +1 one-based
            raise SchemaError(f"{path}: column {col!r}: {int(bad.sum())} missing or non-numeric value(s), "
                              f"first at line {line} (rule: required numeric column; truncated file?)")
    return log_chunk_to_canonical(chunk)


def users_to_canonical(raw: pd.DataFrame) -> pd.DataFrame:
    df = raw.rename(columns=USER_RENAME)
    out = pd.DataFrame({"user_id": df["user_id"].astype("int64")})
    for c in USER_CATEGORICAL:
        out[c] = df[c].fillna("UNKNOWN").astype(str)
    # The release stores -124 as a "missing" marker in some flags; only 1 means yes.
    out["is_live_streamer"] = (df["is_live_streamer"] == 1).astype("int8")
    out["is_video_author"] = (df["is_video_author"] == 1).astype("int8")
    for i, c in enumerate(USER_PROFILE_CODES):
        out[c] = df[f"onehot_feat{i}"].fillna(-1).astype("int64")
    return out


def _first_tag(value: object) -> int:
    s = str(value)
    head = s.split(",", 1)[0].strip()
    try:
        return int(float(head))
    except ValueError:
        return -1


def items_to_canonical(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": raw["video_id"].astype("int64"),
            "author_id": raw["author_id"].fillna(-1).astype("int64"),
            "tag": raw["tag"].map(_first_tag).astype("int64"),
            "video_type": raw["video_type"].fillna("UNKNOWN").astype(str),
            "upload_type": raw["upload_type"].fillna("UNKNOWN").astype(str),
            "video_duration_ms": raw["video_duration"].astype("float64"),
        }
    )


def import_kuairand(src: Path, store: Path, chunk_rows: int = 1_000_000, progress: bool = True) -> dict:
    """Import the release in ``src`` into ``store``; returns row counts for the log."""
    logs, user_file, item_file = find_files(src)
    users = users_to_canonical(
        _read_csv(user_file, ["user_id", "user_active_degree", "is_live_streamer", "is_video_author",
                              "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
                              "register_days_range", *[f"onehot_feat{i}" for i in range(18)]])
    )
    items = items_to_canonical(
        _read_csv(item_file, ["video_id", "author_id", "video_type", "upload_type", "video_duration", "tag"])
    )
    for table, path in ((users, user_file), (items, item_file)):
        _require_rows(len(table), path)
    write_table(users, store, USERS)
    write_table(items, store, ITEMS)

    writer = DayWriter(store)
    rows = 0
    try:
        for path in logs:
            reader = _read_csv(path, list(LOG_COLUMNS), chunksize=chunk_rows)
            first = 0
            for chunk in tqdm(_chunks(reader, path), desc=f"import {path.name}", unit="chunk", disable=not progress):
                canon = _convert(chunk, path, first)
                writer.write(canon, source=str(path))
                rows += len(canon)
                first += len(chunk)
            _require_rows(first, path)
        dates = writer.commit()
    except BaseException:
        writer.abort()
        raise
    log.info("imported %d log rows over %d days, %d users, %d items", rows, len(dates), len(users), len(items))
    return {"rows": rows, "days": dates, "users": int(len(users)), "items": int(len(items)),
            "files": [str(p) for p in logs]}
