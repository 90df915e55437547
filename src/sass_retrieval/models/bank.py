"""The encoded feature bank: everything a model batch is gathered from, as dense numpy arrays.

Raw ids are hashed once here (see models.hashing) and every per-scenario feature is laid out in a
dense array indexed by (user row) or (day, item row), so building a batch is a handful of numpy
gathers instead of dataframe joins. Users and items unknown to the static tables still get a row:
their static fields hash the "unknown" value, which is how a new user on serving day is handled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from ..data.features import PAD, seq_columns
from ..data.schema import ITEM_CATEGORICAL, OBJECTIVES, USER_CATEGORICAL, USER_PROFILE_CODES
from .hashing import hash_ids, hash_strings
from .retrieval import N_ITEM_STATS, ModelConfig

if TYPE_CHECKING:
    from ..params_schema import Params
    from ..run import Run

USER_FIELDS = (*USER_CATEGORICAL, "is_live_streamer", "is_video_author", *USER_PROFILE_CODES)
ITEM_FIELDS = ("author_id", "tag", *ITEM_CATEGORICAL, "duration_bucket")


LOG_COUNT_SCALE = 5.0   # a count feature is log1p(count) / LOG_COUNT_SCALE: roughly unit range
CLICKS_COLUMN = 1       # the window's click count in a stats row (stats_matrix's column order)


def stats_matrix(exp: np.ndarray, clk: np.ndarray, ctr: np.ndarray) -> np.ndarray:
    """The user's numeric behaviour features in a scenario, scaled to roughly unit range."""
    return np.stack([np.log1p(exp) / LOG_COUNT_SCALE, np.log1p(clk) / LOG_COUNT_SCALE, ctr], axis=1).astype(np.float32)


def click_prior(stats: np.ndarray) -> np.ndarray:
    """log1p(the item's clicks in the scenario over the training window), read back from its stats rows
    (``item_stats`` or one day of ``item_daily``): the popularity the serving prior adds (train.finetune)."""
    return (LOG_COUNT_SCALE * np.asarray(stats)[..., CLICKS_COLUMN]).astype(np.float32)


def item_stats_matrix(df: pd.DataFrame) -> np.ndarray:
    """The item's numeric features in a scenario: window counts, click rate, and the previous day's counts."""
    base = stats_matrix(df["exp_count"].to_numpy(), df["click_count"].to_numpy(), df["ctr"].to_numpy())
    recent = np.stack([np.log1p(df["exp_recent"].to_numpy()) / LOG_COUNT_SCALE,
                       np.log1p(df["clk_recent"].to_numpy()) / LOG_COUNT_SCALE], axis=1).astype(np.float32)
    return np.concatenate([base, recent], axis=1)


def encode_user_fields(users: pd.DataFrame, buckets: int) -> np.ndarray:
    cols = []
    for f in USER_FIELDS:
        v = users[f]
        cols.append(hash_strings(v.astype(str).to_numpy(), f, buckets) if v.dtype.kind in "OSU" or
                    str(v.dtype) == "string" else hash_ids(v.fillna(-1).to_numpy(np.int64), f, buckets))
    return np.stack(cols, axis=1)


def encode_item_fields(items: pd.DataFrame, buckets: int) -> np.ndarray:
    dur = items["video_duration_ms"].fillna(-1).to_numpy()
    dur_bucket = np.where(dur < 0, -1, np.floor(np.log2(np.maximum(dur, 1000) / 1000.0) * 2)).astype(np.int64)
    cols = [
        hash_ids(items["author_id"].to_numpy(np.int64), "author_id", buckets),
        hash_ids(items["tag"].to_numpy(np.int64), "tag", buckets),
        *(hash_strings(items[c].astype(str).to_numpy(), c, buckets) for c in ITEM_CATEGORICAL),
        hash_ids(dur_bucket, "duration_bucket", buckets),
    ]
    return np.stack(cols, axis=1)


def recent_days(n_days: int, recent: int) -> set[int]:
    """Day indexes an incremental update trains on: yesterday's weights already hold the older days."""
    if n_days < 1:
        raise ValueError("the training window has no days")
    return set(range(max(n_days - recent, 0) if recent > 0 else 0, n_days))


def seq_dtype(video_buckets: int) -> type:
    """Histories are the bank's largest arrays (positives x seq_len); int32 buckets halve them."""
    return np.int32 if video_buckets < 2**31 else np.int64


def hash_histories(frame: pd.DataFrame, cols: list[str], buckets: int, chunk: int = 1 << 18,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Hash click-history columns block by block into one preallocated array (of ``frame``'s ``rows``, in
    that order, when given: reordering block by block never copies the whole frame).

    Hashing all rows at once holds several int64 temporaries of the whole matrix; at 30M interactions
    that transient alone was gigabytes, more than the result.
    """
    n = len(frame) if rows is None else len(rows)
    out = np.empty((n, len(cols)), dtype=seq_dtype(buckets))
    for start in range(0, n, chunk):
        part = frame.iloc[start:start + chunk] if rows is None else frame.iloc[rows[start:start + chunk]]
        block = part[cols].to_numpy(np.int64)  # copy one block, not all rows
        out[start:start + len(block)] = hash_ids(block, "video_id", buckets, pad=PAD)
    return out


def _index(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(universe, ids)
    pos = np.minimum(pos, len(universe) - 1)
    if len(ids) and not np.all(universe[pos] == ids):
        raise KeyError("id not in the feature bank's universe")
    return pos


@dataclass
class ScenarioArrays:
    user_seq: np.ndarray        # [n_users, N] hashed video buckets of the serving snapshot
    user_stats: np.ndarray      # [n_users, 3]
    item_stats: np.ndarray      # [n_items, N_ITEM_STATS] serving snapshot
    item_daily: np.ndarray      # [n_days, n_items, N_ITEM_STATS] as of before each training day
    pool: np.ndarray            # item rows of the candidate pool
    exposures: np.ndarray       # exposure counts aligned with pool
    pos_user: np.ndarray        # fine-tuning positives (the clicks): user rows
    pos_item: np.ndarray        #   item rows
    pos_day: np.ndarray         #   day index into train_dates
    pos_seq: np.ndarray         #   [n, N] hashed click history before that day
    pos_stats: np.ndarray       #   [n, 3] user stats before that day
    # Multi-objective positives: every row positive for any objective (schema.OBJECTIVES). The click rows come
    # first, in pos_* order, so pos_* are views of the head of mt_* (no second copy of the largest arrays);
    # then the rows positive for another objective only, in the split's order. Empty when serving_only.
    mt_user: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mt_item: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mt_day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mt_seq: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    mt_stats: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    mt_labels: np.ndarray = field(default_factory=lambda: np.zeros((0, len(OBJECTIVES)), np.int8))  # OBJECTIVES order


@dataclass(frozen=True)
class PositiveFiles:
    """Where the bank's training positives are read from and how they are encoded: what a stream of them
    (train.stream) needs besides the bank's id universe.

    ``memory_days``: the day indexes whose positives the bank holds in memory (``ScenarioArrays.pos_*/mt_*``);
    None: every day (``train.input: memory``). With ``train.input: stream`` only the held-out validation days
    (:func:`stream_memory_days`, one day by default) are in memory: the training rows are streamed from the
    shards (``shards_dir``, data.shards: every scenario's positives in one random order; None: none given, the
    stream then fails saying so)."""

    features_dir: Path
    seq_len: int
    video_buckets: int
    memory_days: frozenset[int] | None = None
    shards_dir: Path | None = None

    def path(self, scenario: str) -> Path:
        return self.features_dir / scenario / "positives.parquet"

    def holds(self, days: set[int] | frozenset[int]) -> bool:
        """Are the positives of every one of ``days`` in the bank's memory?"""
        return self.memory_days is None or set(days) <= self.memory_days


@dataclass
class FeatureBank:
    scenarios: list[str]
    reported: list[str]
    train_dates: list[int]
    user_ids: np.ndarray
    item_ids: np.ndarray
    uid: np.ndarray
    ufields: np.ndarray
    vid: np.ndarray
    ifields: np.ndarray
    per: dict[str, ScenarioArrays] = field(default_factory=dict)
    user_pairs: np.ndarray | None = None   # [n, 3]: user row, scenario idx a, scenario idx b
    item_pairs: np.ndarray | None = None
    user_pair_day: np.ndarray | None = None  # [n]: day index by which both views had been seen
    item_pair_day: np.ndarray | None = None
    serving_only: bool = False  # built for index/evaluate/recommend: no training samples loaded
    positive_files: PositiveFiles | None = None  # the split's positives files (None: a bank built elsewhere)

    def require_training_samples(self, what: str) -> None:
        if self.serving_only:
            raise ValueError(f"{what} needs the training samples; this feature bank was loaded serving_only")

    def scen_index(self, s: str) -> int:
        return self.scenarios.index(s)

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        return _index(np.asarray(user_ids, dtype=np.int64), self.user_ids)

    def item_rows(self, item_ids: np.ndarray) -> np.ndarray:
        return _index(np.asarray(item_ids, dtype=np.int64), self.item_ids)

    # ---- batches -------------------------------------------------------------------------------
    def user_batch(self, rows: np.ndarray, scen: np.ndarray, seq: np.ndarray, stats: np.ndarray,
                   mask_id: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        uid = self.uid[rows].copy()
        if mask_id is not None:
            uid[mask_id] = 0
        return {"uid": torch.from_numpy(uid), "ufields": torch.from_numpy(self.ufields[rows]),
                "seq": torch.from_numpy(seq), "ustats": torch.from_numpy(stats),
                "scen": torch.from_numpy(np.asarray(scen, dtype=np.int64))}

    def item_batch(self, rows: np.ndarray, scen: np.ndarray, stats: np.ndarray,
                   mask_id: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        vid = self.vid[rows].copy()
        if mask_id is not None:
            vid[mask_id] = 0
        return {"vid": torch.from_numpy(vid), "ifields": torch.from_numpy(self.ifields[rows]),
                "istats": torch.from_numpy(stats), "scen": torch.from_numpy(np.asarray(scen, dtype=np.int64))}

    def serving_user_batch(self, rows: np.ndarray, s: str) -> dict[str, torch.Tensor]:
        a = self.per[s]
        return self.user_batch(rows, np.full(len(rows), self.scen_index(s)), a.user_seq[rows], a.user_stats[rows])

    def serving_item_batch(self, rows: np.ndarray, s: str) -> dict[str, torch.Tensor]:
        a = self.per[s]
        return self.item_batch(rows, np.full(len(rows), self.scen_index(s)), a.item_stats[rows])

    def serving_user_views(self, rows: np.ndarray, scen_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Serving-snapshot seq and stats of each row in its own scenario (rows may mix scenarios)."""
        first = self.per[self.scenarios[0]].user_seq
        seq = np.zeros((len(rows), first.shape[1]), dtype=first.dtype)
        stats = np.zeros((len(rows), 3), dtype=np.float32)
        for k in np.unique(scen_idx):
            m = scen_idx == k
            a = self.per[self.scenarios[k]]
            seq[m], stats[m] = a.user_seq[rows[m]], a.user_stats[rows[m]]
        return seq, stats

    def serving_item_stats(self, rows: np.ndarray, scen_idx: np.ndarray) -> np.ndarray:
        stats = np.zeros((len(rows), N_ITEM_STATS), dtype=np.float32)
        for k in np.unique(scen_idx):
            m = scen_idx == k
            stats[m] = self.per[self.scenarios[k]].item_stats[rows[m]]
        return stats


def with_labels(p: pd.DataFrame) -> pd.DataFrame:
    """``p`` with every OBJECTIVES label column: a split written before the other objectives holds the click rows
    only, without label columns, and each of its rows is then a click and nothing else."""
    for c in OBJECTIVES.values():
        if c not in p:
            p[c] = np.int8(1 if c == "is_click" else 0)
    return p


def read_positives(path: Path, serving_only: bool = False, filters: list | None = None) -> pd.DataFrame:
    """A scenario's positives.parquet (rows positive for any objective) with every OBJECTIVES label column
    (:func:`with_labels`). ``serving_only`` reads the ids, the day and the labels only; ``filters`` (pyarrow's)
    keeps some rows (a streaming bank's held-out days)."""
    labels = list(OBJECTIVES.values())
    have = set(pq.read_schema(path).names)
    columns = ["user_id", "video_id", "date", *(c for c in labels if c in have)] if serving_only else None
    return with_labels(pd.read_parquet(path, columns=columns, filters=filters))


def positive_user_ids(path: Path) -> np.ndarray:
    """The distinct users of a positives file, one row group at a time: a streaming bank's id universe must hold
    every user a training row names, without reading the rows."""
    f = pq.ParquetFile(path)
    seen = [np.unique(f.read_row_group(g, columns=["user_id"]).column(0).to_numpy().astype(np.int64))
            for g in range(f.num_row_groups)]
    return np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.int64)


def stream_memory_days(params: Params, n_days: int) -> frozenset[int]:
    """The days a streaming bank (``train.input: stream``) keeps in memory: the held-out validation days early
    stopping scores after each epoch (the last ``finetune.holdout_days`` of the window; one day by default),
    none without early stopping. Whatever ``finetune.recent_days`` (an incremental day's), the held-out days
    are the window's newest, so this is a superset of what fine-tuning asks for."""
    f = params.finetune
    if not f.early_stopping or n_days < 2:
        return frozenset()
    return frozenset(range(max(n_days - int(f.holdout_days), 0), n_days))


def read_split_meta(features_dir: Path) -> dict:
    """The meta.json the split stage wrote (data.features.split_meta; every scenario folder holds the same one)."""
    metas = sorted(Path(features_dir).glob("*/meta.json"))
    if not metas:
        raise FileNotFoundError(f"{features_dir}: no split output (*/meta.json); run the split stage first")
    return json.loads(metas[0].read_text())


def split_scenarios(features_dir: Path) -> list[str]:
    """The scenarios the split stage wrote, in the bank's order (without loading the bank)."""
    return list(read_split_meta(features_dir)["scenarios"])


def load_bank(features_dir: Path, users: pd.DataFrame, items: pd.DataFrame, cfg: ModelConfig,
              scenarios: list[str] | None = None, serving_only: bool = False,
              memory_days: frozenset[int] | None = None, shards_dir: Path | None = None) -> FeatureBank:
    """Build the bank from the split's output folder and the store's static tables.

    ``serving_only`` skips what only training reads (the positives' as-of histories, the daily item
    snapshots, the pretraining pairs): the serving stages then hold a fraction of the memory, while
    the id universe, and so every serving vector, stays the same.

    ``memory_days`` (``train.input: stream``, :func:`stream_memory_days`): only these days' positives are read
    into memory (the held-out validation days); fine-tuning streams the others from the files
    (train.stream) in the shards folder ``shards_dir`` (the shards stage's data/shards). The id universe is the
    same: the positives' users are read as one column.
    """
    features_dir = Path(features_dir)
    meta = read_split_meta(features_dir)
    scenarios = scenarios or meta["scenarios"]
    train_dates = [int(d) for d in meta["train_dates"]]
    seq_len = int(meta["seq_len"])
    skipped = {"item_daily"} if serving_only else set()
    streamed = memory_days is not None and not serving_only
    kept = [train_dates[d] for d in sorted(memory_days or ())]
    frames = {s: {k: pd.DataFrame() if k in skipped else
                  read_positives(features_dir / s / "positives.parquet", serving_only,
                                 [("date", "in", kept or [-1])] if streamed else None) if k == "positives" else
                  pd.read_parquet(features_dir / s / f"{k}.parquet")
                  for k in ("users", "items", "item_daily", "positives", "exposure_dist")} for s in scenarios}
    positive_users = ([positive_user_ids(features_dir / s / "positives.parquet") for s in scenarios] if streamed
                      else [f["positives"]["user_id"].to_numpy(np.int64) for f in frames.values()])

    user_ids = np.unique(np.concatenate([users["user_id"].to_numpy(np.int64)] +
                                        [f["users"]["user_id"].to_numpy(np.int64) for f in frames.values()] +
                                        positive_users))
    item_ids = np.unique(np.concatenate([items["video_id"].to_numpy(np.int64)] +
                                        [f["items"]["video_id"].to_numpy(np.int64) for f in frames.values()]))
    u_static = pd.DataFrame({"user_id": user_ids}).merge(users, on="user_id", how="left")
    i_static = pd.DataFrame({"video_id": item_ids}).merge(items, on="video_id", how="left")
    for c in USER_CATEGORICAL + ITEM_CATEGORICAL:
        for df in (u_static, i_static):
            if c in df:
                df[c] = df[c].astype("string").fillna("UNKNOWN")
    bank = FeatureBank(
        scenarios=list(scenarios), reported=[s for s in meta["reported"] if s in scenarios],
        train_dates=train_dates, user_ids=user_ids, item_ids=item_ids,
        uid=hash_ids(user_ids, "user_id", cfg.user_buckets),
        ufields=encode_user_fields(u_static, cfg.field_buckets),
        vid=hash_ids(item_ids, "video_id", cfg.video_buckets),
        ifields=encode_item_fields(i_static, cfg.field_buckets),
        serving_only=serving_only,
        positive_files=PositiveFiles(features_dir, seq_len, cfg.video_buckets,
                                     frozenset(memory_days) if streamed else None,  # type: ignore[arg-type]
                                     Path(shards_dir) if shards_dir is not None else None),
    )
    cols = seq_columns(seq_len)
    n_u, n_i, n_d = len(user_ids), len(item_ids), len(train_dates)
    for s, f in frames.items():
        u = f["users"]
        urows = bank.user_rows(u["user_id"].to_numpy())
        user_seq = np.zeros((n_u, seq_len), dtype=seq_dtype(cfg.video_buckets))
        user_seq[urows] = hash_histories(u, cols, cfg.video_buckets)
        user_stats = np.zeros((n_u, 3), dtype=np.float32)
        user_stats[:, 2] = 0.4  # the smoothing prior: what add_rates gives a user with no history
        user_stats[urows] = stats_matrix(u["exp_count"].to_numpy(), u["click_count"].to_numpy(), u["ctr"].to_numpy())
        it = f["items"]
        irows = bank.item_rows(it["video_id"].to_numpy())
        item_stats = np.zeros((n_i, N_ITEM_STATS), dtype=np.float32)
        item_stats[:, 2] = 0.4
        item_stats[irows] = item_stats_matrix(it)
        daily = np.zeros((0 if serving_only else n_d, n_i, N_ITEM_STATS), dtype=np.float32)
        daily[:, :, 2] = 0.4
        d = f["item_daily"]
        if len(d):
            di = np.searchsorted(np.asarray(train_dates), d["date"].to_numpy())
            daily[di, bank.item_rows(d["video_id"].to_numpy())] = item_stats_matrix(d)
        e = f["exposure_dist"]
        bank.per[s] = ScenarioArrays(
            user_seq=user_seq, user_stats=user_stats, item_stats=item_stats, item_daily=daily,
            pool=bank.item_rows(e["video_id"].to_numpy()), exposures=e["exposures"].to_numpy(np.float64),
            **positive_arrays(f["positives"], bank, cols, cfg.video_buckets))
    pairs_dir = features_dir / "pairs"
    if not serving_only and (pairs_dir / "users.parquet").exists():
        bank.user_pairs, bank.user_pair_day = _pairs(pd.read_parquet(pairs_dir / "users.parquet"), bank,
                                                     bank.user_rows)
        bank.item_pairs, bank.item_pair_day = _pairs(pd.read_parquet(pairs_dir / "items.parquet"), bank,
                                                     bank.item_rows)
    return bank


def positive_arrays(p: pd.DataFrame, bank: FeatureBank, cols: list[str], buckets: int) -> dict[str, np.ndarray]:
    """pos_* (the click rows) and mt_* (every row) of positives read by :func:`read_positives` (or one row group
    of them: train.stream encodes its rows with this same function).

    mt_* put the click rows first, in the split's order (the filter ``is_click == 1`` of the split's sorted
    rows: exactly the click positives), then the other rows in the split's order; each pos_* array is the head
    slice (a view) of its mt_* array: bit-identical to the click positives, at no extra memory. A serving-only
    bank gets the ids and days of the clicks (popularity lists count them) and empty arrays for the rest."""
    clicked = (p["is_click"] == 1).to_numpy()
    n_click = int(clicked.sum())
    order = np.concatenate([np.flatnonzero(clicked), np.flatnonzero(~clicked)])
    user = bank.user_rows(p["user_id"].to_numpy()[order])
    item = bank.item_rows(p["video_id"].to_numpy()[order])
    day = np.searchsorted(np.asarray(bank.train_dates), p["date"].to_numpy()[order])
    if bank.serving_only:
        return {"pos_user": user[:n_click], "pos_item": item[:n_click], "pos_day": day[:n_click],
                "pos_seq": np.zeros((0, len(cols)), seq_dtype(buckets)), "pos_stats": np.zeros((0, 3), np.float32),
                "mt_seq": np.zeros((0, len(cols)), seq_dtype(buckets))}
    seq = hash_histories(p, cols, buckets, rows=None if n_click in (0, len(p)) else order)  # None: the same order
    stats = stats_matrix(*(p[c].to_numpy()[order] for c in ("exp_count", "click_count", "ctr")))
    labels = p[list(OBJECTIVES.values())].to_numpy(np.int8)[order]
    return {"pos_user": user[:n_click], "pos_item": item[:n_click], "pos_day": day[:n_click],
            "pos_seq": seq[:n_click], "pos_stats": stats[:n_click],
            "mt_user": user, "mt_item": item, "mt_day": day, "mt_seq": seq, "mt_stats": stats, "mt_labels": labels}


POSITIVE_KEYS = ("user", "item", "day", "seq", "stats")


def select_positives(a: dict[str, np.ndarray], scen: int, days: set[int], objective: str = "click",
                     labels: bool = False) -> dict[str, np.ndarray]:
    """The training positives of one scenario's arrays (``positive_arrays``'s keys) on ``days``, with ``scen`` (its
    scenario index) as a column: the one selection both the in-memory input (train.finetune._positives) and the
    streamed one (train.stream) apply.

    ``objective`` "click": the click positives every single-objective row trains on (``pos_*``). Another objective:
    the rows positive for it among the multi-objective rows (``mt_*``). ``labels``: every multi-objective row with
    its (n, K) labels (OBJECTIVES order), for the multi-task loss.
    """
    multi = labels or objective != "click"
    col = None if not multi or labels else list(OBJECTIVES).index(objective)
    src = [a[("mt_" if multi else "pos_") + k] for k in POSITIVE_KEYS]
    m = np.isin(src[2], list(days))
    if col is not None:
        m &= a["mt_labels"][:, col] == 1
    out = {"scen": np.full(int(m.sum()), scen), **{k: arr[m] for k, arr in zip(POSITIVE_KEYS, src, strict=True)}}
    if labels:
        out["labels"] = a["mt_labels"][m]
    return out


def _pairs(df: pd.DataFrame, bank: FeatureBank, rows_of) -> tuple[np.ndarray, np.ndarray]:
    df = df[df["scenario_a"].isin(bank.scenarios) & df["scenario_b"].isin(bank.scenarios)]
    idx = {s: i for i, s in enumerate(bank.scenarios)}
    pairs = np.stack([rows_of(df["id"].to_numpy()), df["scenario_a"].map(idx).to_numpy(np.int64),
                      df["scenario_b"].map(idx).to_numpy(np.int64)], axis=1).astype(np.int64)
    if "last_date" in df:
        day = np.searchsorted(np.asarray(bank.train_dates), df["last_date"].to_numpy(np.int64))
    else:  # pairs written before last_date existed: every pair counts as current
        day = np.full(len(df), len(bank.train_dates) - 1)
    return pairs, day.astype(np.int64)


def model_config(params: Params, scenarios: list[str], arch: str | None = None) -> ModelConfig:
    """The model's shape from params.yaml's model section (the one source of its values)."""
    m = params.model
    known = {k: getattr(m, k) for k in ModelConfig.__dataclass_fields__ if k in type(m).model_fields}
    cfg = ModelConfig(**{**known, "scenarios": list(scenarios), "n_user_fields": len(USER_FIELDS),
                         "n_item_fields": len(ITEM_FIELDS)})
    if arch is not None:
        cfg.arch = arch
    return cfg


def bank_for(run: Run, features_dir: str | Path = "data/features", serving_only: bool = False,
             shards_dir: str | Path = "data/shards") -> FeatureBank:
    """The encoded feature bank of this run's split features, whatever the tower (the bank hashes ids into the
    model section's tables). Serving stages (index, evaluate, recommend) pass ``serving_only``: they never read
    training samples. With ``train.input: stream`` the training positives stay in the files but for the held-out
    validation days (:func:`stream_memory_days`), and fine-tuning streams them from ``shards_dir`` (the shards
    stage's output)."""
    from ..data.store import read_items, read_users
    from ..run import safe_path

    cfg = model_config(run.params, run.names)
    memory_days, shards = None, None
    if run.params.train.input == "stream" and not serving_only:   # the training rows stay in the files
        memory_days = stream_memory_days(run.params, len(read_split_meta(safe_path(features_dir))["train_dates"]))
        shards = safe_path(shards_dir)
    return load_bank(safe_path(features_dir), read_users(run.store), read_items(run.store), cfg,
                     serving_only=serving_only, memory_days=memory_days, shards_dir=shards)
