"""The pre-ranker's features: what each one is and why, the counts behind them, and training rows.

Every feature is computed from exposures (rows of the interaction table, clicked or not) of the training
window only. user x tag and user x author counts are pooled over all scenarios, because a user's taste is
shared and the small scenarios alone are too sparse to say anything; the item's click rate and exposures
and the user's share of the scenario are per scenario, because that is where tabs differ.

Serving computes these for ~200 candidates per request in a few milliseconds, so :class:`RankStats` keeps
every count table as sorted int64 composite keys (dense user / tag / author / video codes combined) with
aligned count arrays; a lookup is one ``np.searchsorted`` per table, no pandas indexing per request.
Unknown users, items, tags and scenarios fall back to zero counts and the scenario's prior click rate.

:func:`training_rows` builds the training set day by day: the features of day d's exposures come from the
frame's rows of days before d only, so a click never explains itself (no leakage).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import BadInputError


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, whether it is a number or a category, and why it should help."""

    name: str
    kind: Literal["numeric", "categorical"]
    why: str
    log: bool = False   # a count: log1p before standardising (heavy-tailed)


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("user_tag_clicks", "numeric", "the user's clicks on the item's tag, any scenario: taste", log=True),
    FeatureSpec("user_tag_exposures", "numeric", "how often the user saw the tag: confidence of the click count",
                log=True),
    FeatureSpec("user_tag_ctr", "numeric", "the user's smoothed click rate on the tag"),
    FeatureSpec("user_author_clicks", "numeric", "the user's clicks on the item's author: a followed creator",
                log=True),
    FeatureSpec("user_author_exposures", "numeric", "how often the user saw the author", log=True),
    FeatureSpec("user_author_ctr", "numeric", "the user's smoothed click rate on the author"),
    FeatureSpec("user_scenario_share", "numeric", "the user's exposures in this scenario / all of theirs: how "
                                                  "much the user lives in this tab"),
    FeatureSpec("item_scenario_ctr", "numeric", "the item's click rate in this scenario, smoothed toward the "
                                                "scenario's mean: popularity where it is served"),
    FeatureSpec("item_scenario_exposures", "numeric", "the item's exposures in this scenario: how sure the rate is",
                log=True),
    FeatureSpec("duration_bucket", "categorical", "video length (log-spaced buckets, unknown its own): short videos "
                                                  "are clicked differently"),
    FeatureSpec("video_type", "categorical", "the video's type"),
    FeatureSpec("upload_type", "categorical", "how the video was uploaded"),
    FeatureSpec("retrieval_score", "numeric", "the retrieval model's inner product: everything the towers know"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
SPECS: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}

SMOOTHING = 20.0
"""Pseudo-exposures at the prior rate added to every click rate: a rate from a handful of exposures stays
near the scenario's mean instead of jumping to 0 or 1."""

DURATION_EDGES_MS = np.geomspace(3_000.0, 1_200_000.0, 10)
"""Log-spaced video-length edges (3 s .. 20 min): bucket 0 is unknown, 1 shorter than the first edge, ..."""

UNKNOWN_CODE = -1   # categorical code of an item not in the items table
LABEL = "is_click"
ROW_COLUMNS = ("scenario", "user_id", "video_id", "date", LABEL)


def validate_names(names: Sequence[str], source: str = "rank features") -> list[str]:
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise BadInputError(f"{source}: unknown feature(s) {', '.join(unknown)}: must be among "
                            f"{', '.join(FEATURE_NAMES)}")
    return list(names)


def _string_codes(values: pd.Series) -> np.ndarray:
    """Strings -> stable int64 codes (crc32; missing is the empty string)."""
    text = values.astype("string").fillna("").to_numpy(dtype=object)
    uniq, inv = np.unique(text.astype(str), return_inverse=True)
    return np.array([zlib.crc32(u.encode()) for u in uniq], dtype=np.int64)[inv]


def duration_bucket(duration_ms: np.ndarray) -> np.ndarray:
    d = np.asarray(duration_ms, dtype=np.float64)
    out = np.searchsorted(DURATION_EDGES_MS, np.nan_to_num(d, nan=0.0)).astype(np.int64) + 1
    out[~np.isfinite(d) | (d <= 0)] = 0
    return out


def _find(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``vocab``, -1 where absent."""
    if len(vocab) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    i = np.searchsorted(vocab, values)
    i = np.minimum(i, len(vocab) - 1)
    return np.where(vocab[i] == values, i, -1).astype(np.int64)


def _pair_keys(a: np.ndarray, b: np.ndarray, b_size: int) -> np.ndarray:
    """Composite key of two dense codes; -1 when either is absent (never a stored key)."""
    return np.where((a >= 0) & (b >= 0), a * b_size + b, -1)


@dataclass
class KeyedCounts:
    """Clicks and exposures per int64 key; keys sorted and unique, so a lookup is a binary search."""

    keys: np.ndarray
    clicks: np.ndarray
    exposures: np.ndarray

    @classmethod
    def count(cls, keys: np.ndarray, clicks: np.ndarray) -> KeyedCounts:
        keep = keys >= 0
        uniq, inv = np.unique(keys[keep], return_inverse=True)
        return cls(uniq.astype(np.int64), np.bincount(inv, weights=clicks[keep], minlength=len(uniq)),
                   np.bincount(inv, minlength=len(uniq)).astype(np.float64))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = _find(self.keys, keys)
        hit = i >= 0
        return np.where(hit, self.clicks[i], 0.0), np.where(hit, self.exposures[i], 0.0)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"key": self.keys, "clicks": self.clicks, "exposures": self.exposures})

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> KeyedCounts:
        return cls(df["key"].to_numpy(np.int64), df["clicks"].to_numpy(np.float64),
                   df["exposures"].to_numpy(np.float64))


@dataclass
class ItemTable:
    """The items' attributes by sorted video id: author, tag and the categorical codes the model embeds."""

    video_id: np.ndarray
    author_id: np.ndarray
    tag: np.ndarray
    duration_bucket: np.ndarray
    video_type: np.ndarray
    upload_type: np.ndarray

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> ItemTable:
        missing = [c for c in ("video_id", "author_id", "tag", "video_type", "upload_type", "video_duration_ms")
                   if c not in items.columns]
        if missing:
            raise BadInputError(f"items: missing column(s) {', '.join(missing)}")
        items = items.drop_duplicates("video_id").sort_values("video_id")
        return cls(items["video_id"].to_numpy(np.int64), items["author_id"].to_numpy(np.int64),
                   items["tag"].to_numpy(np.int64), duration_bucket(items["video_duration_ms"].to_numpy(np.float64)),
                   _string_codes(items["video_type"]), _string_codes(items["upload_type"]))

    def attributes(self, videos: np.ndarray) -> dict[str, np.ndarray]:
        """Each video's attributes; unknown videos get author/tag -1 and the unknown categorical codes."""
        i = _find(self.video_id, videos)
        hit = i >= 0
        out = {}
        for name, unknown in (("author_id", -1), ("tag", -1), ("duration_bucket", 0), ("video_type", UNKNOWN_CODE),
                              ("upload_type", UNKNOWN_CODE)):
            out[name] = np.where(hit, getattr(self, name)[i], unknown).astype(np.int64)
        return out

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> ItemTable:
        return cls(**{k: df[k].to_numpy(np.int64) for k in cls.__dataclass_fields__})


@dataclass
class RankStats:
    """Everything the features read, counted from a window's exposures; saved as parquet + json.

    Dense codes: users, tags, authors and videos index their sorted vocabularies; the pair tables key
    ``code_a * size_b + code_b``. Tag and author -1 (unknown) are never counted."""

    scenarios: list[str]
    scenario_ctr: dict[str, float]
    global_ctr: float
    users: np.ndarray
    user_exposures: np.ndarray
    tags: np.ndarray
    authors: np.ndarray
    videos: np.ndarray
    user_tag: KeyedCounts
    user_author: KeyedCounts
    user_scenario: KeyedCounts
    item_scenario: KeyedCounts
    items: ItemTable
    smoothing: float = SMOOTHING
    _scenario_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._scenario_index = {s: i for i, s in enumerate(self.scenarios)}

    # ---- building

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, items: pd.DataFrame | ItemTable) -> RankStats:
        """Count the exposures of ``frame`` (columns user_id, video_id, scenario, is_click)."""
        missing = [c for c in ("user_id", "video_id", "scenario", LABEL) if c not in frame.columns]
        if missing:
            raise BadInputError(f"interactions: missing column(s) {', '.join(missing)}")
        table = items if isinstance(items, ItemTable) else ItemTable.from_items(items)
        user = frame["user_id"].to_numpy(np.int64)
        video = frame["video_id"].to_numpy(np.int64)
        click = frame[LABEL].to_numpy(np.float64)
        scen_codes, scen_names = pd.factorize(frame["scenario"].astype("string"), sort=True)
        scenarios = [str(s) for s in scen_names]
        n_s = max(len(scenarios), 1)
        scen = scen_codes.astype(np.int64)
        attrs = table.attributes(video)
        users, u = np.unique(user, return_inverse=True)
        videos, v = np.unique(video, return_inverse=True)
        tag_seen = attrs["tag"][attrs["tag"] != -1]
        author_seen = attrs["author_id"][attrs["author_id"] != -1]
        tags, authors = np.unique(tag_seen), np.unique(author_seen)
        t, a = _find(tags, attrs["tag"]), _find(authors, attrs["author_id"])
        clicks_s = np.bincount(scen, weights=click, minlength=n_s)
        rows_s = np.bincount(scen, minlength=n_s)
        scenario_ctr = {s: float(clicks_s[i] / rows_s[i]) for i, s in enumerate(scenarios) if rows_s[i] > 0}
        return cls(
            scenarios=scenarios, scenario_ctr=scenario_ctr,
            global_ctr=float(click.mean()) if len(click) else 0.0,
            users=users.astype(np.int64), user_exposures=np.bincount(u, minlength=len(users)).astype(np.float64),
            tags=tags.astype(np.int64), authors=authors.astype(np.int64), videos=videos.astype(np.int64),
            user_tag=KeyedCounts.count(_pair_keys(u, t, len(tags)), click),
            user_author=KeyedCounts.count(_pair_keys(u, a, len(authors)), click),
            user_scenario=KeyedCounts.count(u * n_s + scen, click),
            item_scenario=KeyedCounts.count(v * n_s + scen, click),
            items=table,
        )

    # ---- lookups

    def prior(self, scenario: str) -> float:
        return self.scenario_ctr.get(scenario, self.global_ctr)

    def smoothed(self, clicks: np.ndarray, exposures: np.ndarray, prior: float) -> np.ndarray:
        return (clicks + self.smoothing * prior) / (exposures + self.smoothing)

    # ---- files

    _TABLES = ("user_tag", "user_author", "user_scenario", "item_scenario")

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in self._TABLES:
            getattr(self, name).frame().to_parquet(folder / f"{name}.parquet", index=False)
        self.items.frame().to_parquet(folder / "items.parquet", index=False)
        pd.DataFrame({"user_id": self.users, "exposures": self.user_exposures}).to_parquet(
            folder / "users.parquet", index=False)
        for name in ("tags", "authors", "videos"):
            pd.DataFrame({"id": getattr(self, name)}).to_parquet(folder / f"{name}.parquet", index=False)
        meta = {"scenarios": self.scenarios, "scenario_ctr": self.scenario_ctr, "global_ctr": self.global_ctr,
                "smoothing": self.smoothing}
        (folder / "rank_stats.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> RankStats:
        folder = Path(folder)
        meta_path = folder / "rank_stats.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing (the rank stage writes it)")
        meta = json.loads(meta_path.read_text())
        users = pd.read_parquet(folder / "users.parquet")
        ids = {n: pd.read_parquet(folder / f"{n}.parquet")["id"].to_numpy(np.int64) for n in ("tags", "authors",
                                                                                            "videos")}
        tables = {n: KeyedCounts.from_frame(pd.read_parquet(folder / f"{n}.parquet")) for n in cls._TABLES}
        return cls(scenarios=list(meta["scenarios"]), scenario_ctr={k: float(v) for k, v in meta["scenario_ctr"].items()},
                   global_ctr=float(meta["global_ctr"]), users=users["user_id"].to_numpy(np.int64),
                   user_exposures=users["exposures"].to_numpy(np.float64), **ids, **tables,
                   items=ItemTable.from_frame(pd.read_parquet(folder / "items.parquet")),
                   smoothing=float(meta["smoothing"]))


def feature_matrix(stats: RankStats, scenario: str, users: np.ndarray, videos: np.ndarray,
                   retrieval_score: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The features of n (user, video) candidates of one scenario (users may repeat): numeric ones float32,
    categorical ones int64 codes. ``names`` limits the work to a subset (serving computes only the chosen set)."""
    wanted = FEATURE_NAMES if names is None else tuple(validate_names(names))
    users = np.asarray(users, dtype=np.int64)
    videos = np.asarray(videos, dtype=np.int64)
    n = len(users)
    if len(videos) != n or len(retrieval_score) != n:
        raise BadInputError(f"feature_matrix: users, videos and retrieval_score must have one entry per candidate "
                            f"(got {n}, {len(videos)}, {len(retrieval_score)})")
    prior = stats.prior(scenario)
    s = stats._scenario_index.get(scenario, -1)
    n_s = max(len(stats.scenarios), 1)
    attrs = stats.items.attributes(videos)
    need_user = any(w.startswith("user_") for w in wanted)
    u = _find(stats.users, users) if need_user else None
    out: dict[str, np.ndarray] = {}

    def pair(prefix: str, table: KeyedCounts, vocab: np.ndarray, values: np.ndarray) -> None:
        if not any(f"{prefix}_{k}" in wanted for k in ("clicks", "exposures", "ctr")):
            return
        c, e = table.lookup(_pair_keys(u, _find(vocab, values), len(vocab)))
        out[f"{prefix}_clicks"], out[f"{prefix}_exposures"] = c, e
        out[f"{prefix}_ctr"] = stats.smoothed(c, e, prior)

    pair("user_tag", stats.user_tag, stats.tags, attrs["tag"])
    pair("user_author", stats.user_author, stats.authors, attrs["author_id"])
    if "user_scenario_share" in wanted:
        _, e = stats.user_scenario.lookup(np.where((u >= 0) & (s >= 0), u * n_s + s, -1))
        total = np.where(u >= 0, stats.user_exposures[np.maximum(u, 0)], 0.0)
        out["user_scenario_share"] = np.where(total > 0, e / np.maximum(total, 1.0), 0.0)
    if "item_scenario_ctr" in wanted or "item_scenario_exposures" in wanted:
        v = _find(stats.videos, videos)
        c, e = stats.item_scenario.lookup(np.where((v >= 0) & (s >= 0), v * n_s + s, -1))
        out["item_scenario_ctr"] = stats.smoothed(c, e, prior)
        out["item_scenario_exposures"] = e
    for name in ("duration_bucket", "video_type", "upload_type"):
        out[name] = attrs[name]
    out["retrieval_score"] = np.asarray(retrieval_score, dtype=np.float32)
    return {name: (out[name].astype(np.float32) if SPECS[name].kind == "numeric" else out[name].astype(np.int64))
            for name in wanted}


def training_rows(frame: pd.DataFrame, items: pd.DataFrame, days: Sequence[int],
                  score_fn: Callable[[str, np.ndarray, np.ndarray], np.ndarray]) -> pd.DataFrame:
    """Day d's exposures, for each d in ``days``, with features counted from the frame's rows of days < d only.

    The columns: every feature of FEATURES, ``is_click`` (the label), ``scenario``, ``user_id``, ``video_id``
    and ``date``. ``score_fn(scenario, users, videos)`` gives the retrieval score of each pair. A day with no
    earlier day in the frame (or no rows) is skipped. The frame is sorted by day once, so each day's history
    is a prefix slice rather than a fresh filter."""
    missing = [c for c in ("user_id", "video_id", "scenario", "date", LABEL) if c not in frame.columns]
    if missing:
        raise BadInputError(f"interactions: missing column(s) {', '.join(missing)}")
    table = ItemTable.from_items(items)
    ordered = frame.sort_values("date", kind="stable").reset_index(drop=True)
    dates = ordered["date"].to_numpy(np.int64)
    parts = []
    for d in sorted({int(x) for x in days}):
        start, stop = np.searchsorted(dates, d, side="left"), np.searchsorted(dates, d, side="right")
        if start == 0 or stop == start:
            continue
        stats = RankStats.from_frame(ordered.iloc[:start], table)
        day = ordered.iloc[start:stop]
        scen = day["scenario"].astype("string").to_numpy(dtype=object)
        for scenario in sorted(set(scen)):
            rows = day[scen == scenario]
            users = rows["user_id"].to_numpy(np.int64)
            videos = rows["video_id"].to_numpy(np.int64)
            score = np.asarray(score_fn(str(scenario), users, videos), dtype=np.float32)
            feats = feature_matrix(stats, str(scenario), users, videos, score)
            part = pd.DataFrame(feats)
            part["scenario"] = str(scenario)
            part["user_id"] = users
            part["video_id"] = videos
            part["date"] = d
            part[LABEL] = rows[LABEL].to_numpy(np.int8)
            parts.append(part)
    if not parts:
        return pd.DataFrame({**{f.name: pd.Series(dtype="float32" if f.kind == "numeric" else "int64")
                                for f in FEATURES},
                             "scenario": pd.Series(dtype="string"), "user_id": pd.Series(dtype="int64"),
                             "video_id": pd.Series(dtype="int64"), "date": pd.Series(dtype="int64"),
                             LABEL: pd.Series(dtype="int8")})
    out = pd.concat(parts, ignore_index=True)
    out["scenario"] = out["scenario"].astype("string")
    return out
