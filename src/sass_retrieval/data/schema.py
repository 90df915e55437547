"""The canonical data store: the one definition of the interaction, user and item tables.

Every source (the KuaiRand importer, the synthetic generator) writes exactly these columns and
dtypes, so that validation, the feature split and the models never need to know where data came
from. Interactions are stored partitioned by day and raw scenario,
``interactions/date=YYYYMMDD/scenario=S/part-*.parquet``: a daily run reads only its window, a scenario's
split reads only its own files, and a re-ingested day replaces its folder as a whole. The files keep the
``scenario`` column; readers list part files (``engine.interaction_files``) rather than rely on the folder names.

Besides the click, an exposure carries KuaiRand's other 0/1 feedback labels (``FEEDBACK_COLUMNS``: long
view, like, follow, comment, forward, hate, profile enter) and its watch time; ``OBJECTIVES`` names the
labels the retrieval models may be trained and evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import BadInputError


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    meaning: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def dtypes(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


INTERACTIONS = Table(
    name="interactions",
    key=("user_id", "video_id", "time_ms"),
    columns=(
        Column("user_id", "int64", "user id as in the source"),
        Column("video_id", "int64", "video (item) id as in the source"),
        Column("date", "int32", "calendar day of the exposure, YYYYMMDD (UTC+8 for KuaiRand)"),
        Column("time_ms", "int64", "exposure timestamp, milliseconds since the epoch"),
        Column("scenario", "string", "raw scenario name (KuaiRand: the tab number as text)"),
        Column("is_click", "int8", "label: 1 clicked, 0 exposed and not clicked"),
        Column("long_view", "int8", "label: 1 watched >= 18 s or to the end (see validation's play-time rule)"),
        Column("is_like", "int8", "label: 1 liked"),
        Column("is_follow", "int8", "label: 1 followed the author from this exposure"),
        Column("is_comment", "int8", "label: 1 commented"),
        Column("is_forward", "int8", "label: 1 forwarded (shared)"),
        Column("is_hate", "int8", "label: 1 marked 'not interested' (negative feedback)"),
        Column("is_profile_enter", "int8", "label: 1 entered the author's profile"),
        Column("play_time_ms", "int64", "watch time of the exposure in ms (0 when not played)"),
        Column("duration_ms", "int64", "video length in ms at exposure time"),
        Column("is_rand", "int8", "1 when the exposure was randomly inserted by the platform"),
    ),
)

FEEDBACK_COLUMNS = ("long_view", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "is_profile_enter")
"""The 0/1 feedback labels logged besides the click (KuaiRand's names); every label column is ``is_click`` plus these."""

LONG_VIEW_MS = 18_000
"""KuaiRand's long view: at least this much watched, or the whole video when it is shorter. The play-time rule
that validation checks and the synthetic generator obeys is stated in ``data.validation``'s docstring."""

OBJECTIVES: dict[str, str] = {"click": "is_click", "long_view": "long_view", "like": "is_like"}
"""The retrieval objectives, objective name -> its 0/1 label column of INTERACTIONS, in the order of every
per-objective array (the bank's ``mt_labels`` columns, the split's positives' label columns).

Click stays first and stays the objective the existing rows train on; a long view (>= 18 s watched) and a
like are the engagement signals a click alone misses (a click on a clickbait thumbnail followed by a swipe
counts as much as a video watched to its end). The one place these are named: the split, the bank and
evaluation read the list from here, so adding an objective is one line."""

USER_CATEGORICAL = (
    "active_degree",
    "follow_range",
    "fans_range",
    "friend_range",
    "register_days_range",
)
USER_PROFILE_CODES = tuple(f"profile_{i}" for i in range(18))
USERS = Table(
    name="users",
    key=("user_id",),
    columns=(
        Column("user_id", "int64", "user id"),
        *(Column(n, "string", "bucketed profile attribute") for n in USER_CATEGORICAL),
        Column("is_live_streamer", "int8", "1 when the user streams live"),
        Column("is_video_author", "int8", "1 when the user uploads videos"),
        *(Column(n, "int64", "anonymised categorical profile code (-1 unknown)") for n in USER_PROFILE_CODES),
    ),
)

ITEM_CATEGORICAL = ("video_type", "upload_type")
ITEMS = Table(
    name="items",
    key=("video_id",),
    columns=(
        Column("video_id", "int64", "video id"),
        Column("author_id", "int64", "uploader id (-1 unknown)"),
        Column("tag", "int64", "first content tag (-1 unknown)"),
        *(Column(n, "string", "categorical video attribute") for n in ITEM_CATEGORICAL),
        Column("video_duration_ms", "float64", "video length in ms (NaN unknown)", nullable=True),
    ),
)

TABLES = {t.name: t for t in (INTERACTIONS, USERS, ITEMS)}


class SchemaError(BadInputError, ValueError):
    """Raised when a frame does not match the canonical schema; the message names table and column."""


def conform(df: pd.DataFrame, table: Table, source: str = "<frame>") -> pd.DataFrame:
    """Select and cast the table's columns in canonical order; fail loudly on what is missing."""
    missing = [c for c in table.names if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: table {table.name!r} is missing column(s) {missing}")
    out = df.loc[:, table.names].copy()
    for col in table.columns:
        try:
            out[col.name] = out[col.name].astype(col.dtype)
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"{source}: table {table.name!r} column {col.name!r} cannot be cast to {col.dtype}: {exc}"
            ) from exc
    return out


# ---- store layout -------------------------------------------------------------------------------


def interactions_dir(store: Path) -> Path:
    return Path(store) / "interactions"


def day_dir(store: Path, date: int) -> Path:
    return interactions_dir(store) / f"date={int(date)}"


def table_path(store: Path, name: str) -> Path:
    return Path(store) / f"{name}.parquet"


def stored_dates(store: Path) -> list[int]:
    root = interactions_dir(store)
    if not root.exists():
        return []
    return sorted(int(p.name.split("=", 1)[1]) for p in root.glob("date=*") if p.is_dir())
