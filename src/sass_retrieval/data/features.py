"""Per-scenario feature split: the same feature names, computed from each scenario's data alone.

SASS treats one user (or item) seen in two scenarios as two "views" of one object, so every
behavioural feature exists once per scenario. Two snapshots matter:

* as-of-day features for training samples: a click on day d only sees data from days < d, so the
  label of day d never leaks into its own features (and items drawn as negatives for that sample use
  the same day's snapshot, otherwise "newer counts" would be a shortcut to tell negatives apart);
* the serving snapshot (all training days), used for pretraining views, the index and evaluation.
Test-window rows never enter this module: the caller passes training rows only.

Positives are per objective (``schema.OBJECTIVES``: click, long view, like): ``positives.parquet`` holds every
training row positive for ANY objective, with each objective's label, so one table serves the click-only
rows (filter ``is_click == 1``: exactly the clicked rows, in the same order) and multi-objective training.
Whatever the objective, the features stay CLICK features: a row's history is its user's clicks before the
row's day, and the counts are exposures and clicks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import OBJECTIVES, SchemaError

OTHER = "other"
PAD = -1  # padding id in click sequences


@dataclass(frozen=True)
class ScenarioMap:
    """Raw scenario name -> run scenario; reported scenarios keep their name, the rest become 'other'.

    ``rows`` (training rows per raw scenario) and ``min_rows`` are what the map was decided on, kept so
    that a declared scenario left out today can say why (:func:`skipped_scenarios`).
    """

    reported: tuple[str, ...]
    mapping: dict[str, str]
    rows: dict[str, int] = field(default_factory=dict)
    min_rows: int = 0

    @property
    def names(self) -> list[str]:
        """All run scenarios, reported first, 'other' last when something maps to it."""
        names = list(self.reported)
        if OTHER in self.mapping.values():
            names.append(OTHER)
        return names

    def apply(self, raw: pd.Series) -> pd.Series:
        """Run scenario names of raw ones (missing and unknown: 'other'); one lookup per distinct name, not per row:
        a test window holds tens of millions of rows and a handful of scenarios."""
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        names = np.array([self.mapping.get(str(u), OTHER) for u in uniques] + [OTHER], dtype=object)
        return pd.Series(names[codes], index=raw.index, dtype="string")   # code -1 (missing) takes the last: 'other'



def scenario_map(train_counts: pd.Series, declared: list[str], min_rows: int) -> ScenarioMap:
    """Map raw scenarios: declared ones with at least min_rows training rows stay, the rest go to 'other'.

    A declared scenario that is too small is not reported: a metric over a handful of pairs is noise.
    One with no training rows at all is never reported, even with min_rows 0: it would have no
    candidate pool, hence no index.
    """
    counts = {str(k): int(v) for k, v in train_counts.items()}
    reported = tuple(s for s in declared if counts.get(str(s), 0) >= max(min_rows, 1) and s != OTHER)
    mapping = {raw: (raw if raw in reported else OTHER) for raw in counts}
    return ScenarioMap(reported=reported, mapping=mapping, rows=counts, min_rows=int(min_rows))


# ---- declared scenarios that a day leaves out -----------------------------------------------------------

SKIPPED_FILE = "skipped.json"  # written instead of a scenario's features / index on a day it is skipped


@dataclass(frozen=True)
class SkippedScenario:
    """A declared scenario (params scenarios.names) that is not trained or indexed today, and what serves it.

    Scenarios come and go: a tab launched yesterday, or one whose traffic dried up, has too few training
    rows in the window to get a scenario of its own. Its stages still succeed (a marker stands where the
    features and the index would be), its traffic is served by ``served_by`` (:func:`serving_scenario`),
    and evaluation, the run report and publishing say so instead of failing or staying silent.
    """

    scenario: str
    reason: str
    rows: int                 # training rows of the scenario in this run's window
    min_scenario_rows: int
    served_by: str            # the run scenario whose index (and user tower) serves its requests

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> Path:
        """``<folder>/skipped.json`` (the folder is created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / SKIPPED_FILE, self.to_json())
        return folder / SKIPPED_FILE

    @classmethod
    def read(cls, folder: Path) -> SkippedScenario | None:
        """The marker in ``folder``, or None when the scenario was not skipped there."""
        path = Path(folder) / SKIPPED_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return cls(scenario=str(d["scenario"]), reason=str(d["reason"]), rows=int(d["rows"]),
                   min_scenario_rows=int(d["min_scenario_rows"]), served_by=str(d["served_by"]))


def serving_scenario(scenario: str, trained: Sequence[str], rows: Mapping[str, int]) -> str:
    """The run scenario whose index serves requests of ``scenario``: the one rule of the fallback.

    - ``scenario`` itself when it was trained today;
    - else ``other`` when the run trains it (params list 'other'): a skipped scenario's training rows were
      mapped to 'other' (:func:`scenario_map`), so that is the scenario the model learnt them as;
    - else the trained scenario with the most training rows (``rows``; ties: the first in ``trained``).
      Its index has the broadest candidate pool and its towers saw the most users; a model-wide (global)
      index does not exist, and building one per day for a rare fallback would double the index stage.
    """
    trained = list(trained)
    if scenario in trained:
        return scenario
    if OTHER in trained:
        return OTHER
    if not trained:
        raise ValueError(f"no scenario is trained in this run: nothing can serve {scenario!r}")
    return max(trained, key=lambda s: (rows.get(s, 0), -trained.index(s)))


def skipped_scenarios(declared: Sequence[str], smap: ScenarioMap, trained: Sequence[str]) -> dict[str, SkippedScenario]:
    """Declared scenarios (params scenarios.names) that are not among today's ``trained`` ones, with the reason.

    ``trained`` is the run's scenario list (``sass_retrieval.run.Run.names``). A declared 'other' is skipped when
    nothing maps to it; its row count is then 0.
    """
    out: dict[str, SkippedScenario] = {}
    for s in (str(x) for x in declared):
        if s in trained:
            continue
        n = (sum(c for raw, c in smap.rows.items() if smap.mapping.get(raw) == OTHER) if s == OTHER
             else smap.rows.get(s, 0))
        reason = ("no training rows in the window" if n == 0 else
                  f"{n} training rows in the window, fewer than scenarios.min_scenario_rows ({smap.min_rows})")
        out[s] = SkippedScenario(scenario=s, reason=reason, rows=int(n), min_scenario_rows=smap.min_rows,
                                 served_by=serving_scenario(s, trained, smap.rows))
    return out


def skipped_markers(root: Path) -> dict[str, SkippedScenario]:
    """Every ``<root>/<scenario>/skipped.json`` (a features folder, or an index folder of one row)."""
    root = Path(root)
    found = (SkippedScenario.read(p.parent) for p in sorted(root.glob(f"*/{SKIPPED_FILE}")))
    return {m.scenario: m for m in found if m is not None}


def _counts_before(df: pd.DataFrame, key: str, dates: list[int]) -> pd.DataFrame:
    """Exposure and click counts of each key over days strictly before each date in ``dates``."""
    daily = df.groupby([key, "date"], sort=True).agg(exp=("is_click", "size"), clk=("is_click", "sum"))
    daily = daily.reset_index()
    frames = []
    for d in dates:
        before = daily[daily["date"] < d].groupby(key)[["exp", "clk"]].sum()
        before = before.reset_index()
        before["date"] = np.int32(d)
        frames.append(before)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[key, "exp", "clk", "date"])
    return out.rename(columns={"exp": "exp_count", "clk": "click_count"}).astype(
        {key: "int64", "exp_count": "int64", "click_count": "int64", "date": "int32"}
    )


def _counts_on_previous_day(df: pd.DataFrame, key: str, dates: list[int]) -> pd.DataFrame:
    """Exposures and clicks of each key on the training day just before each date (0 on the first).

    Popularity moves fast on a short-video platform; yesterday's counts carry the trend that the
    cumulative counts of the whole window average away.
    """
    daily = df.groupby([key, "date"], sort=True).agg(exp_recent=("is_click", "size"), clk_recent=("is_click", "sum"))
    daily = daily.reset_index()
    frames = []
    for prev, d in zip(dates[:-1], dates[1:], strict=True):
        day = daily[daily["date"] == prev].drop(columns="date")
        day["date"] = np.int32(d)
        frames.append(day)
    if not frames:
        return pd.DataFrame({key: pd.Series(dtype="int64"), "exp_recent": pd.Series(dtype="int64"),
                             "clk_recent": pd.Series(dtype="int64"), "date": pd.Series(dtype="int32")})
    return pd.concat(frames, ignore_index=True).astype({key: "int64", "exp_recent": "int64", "clk_recent": "int64",
                                                        "date": "int32"})


def add_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Click rate smoothed towards the scenario mean so that 1/1 does not outrank 40/50."""
    prior = 0.4
    df["ctr"] = ((df["click_count"] + prior * 5.0) / (df["exp_count"] + 5.0)).astype("float32")
    return df


def sequence_matrix(clicks: pd.DataFrame, seq_len: int, before_day: bool) -> tuple[np.ndarray, np.ndarray]:
    """Last ``seq_len`` clicked videos per click row (before_day) or per user (serving).

    ``clicks`` must be one scenario's clicks sorted by (user_id, time_ms). With before_day=True the
    history of a click on day d is every earlier click of the same user on days < d, which is exactly
    the clicks before the first click of that (user, day) in the sorted order. Returns (keys, matrix):
    keys are row positions (before_day) or user ids (serving); the matrix is left-padded with PAD.
    """
    users = clicks["user_id"].to_numpy()
    videos = clicks["video_id"].to_numpy()
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.full((0, seq_len), PAD, dtype=np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]]
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    if before_day:
        days = clicks["date"].to_numpy()
        new_day = new_user | np.r_[True, days[1:] != days[:-1]]
        end = np.maximum.accumulate(np.where(new_day, np.arange(n), 0))  # first click of (user, day)
        keys = np.arange(n)
        start = user_start
    else:
        last = np.r_[users[1:] != users[:-1], True]
        end = np.nonzero(last)[0] + 1
        start = user_start[end - 1]
        keys = users[end - 1]
    offsets = np.arange(-seq_len, 0)
    idx = end[:, None] + offsets[None, :]
    valid = idx >= start[:, None]
    mat = np.where(valid, videos[np.clip(idx, 0, n - 1)], PAD).astype(np.int64)
    return keys.astype(np.int64), mat


def seq_columns(seq_len: int) -> list[str]:
    return [f"seq_{i}" for i in range(seq_len)]


def history_before_day(clicks: pd.DataFrame, rows: pd.DataFrame, seq_len: int) -> np.ndarray:
    """Last ``seq_len`` clicked videos of each row's user on days strictly before the row's ``date``.

    For the positives that are not clicks (a long view or a like without a click); a click row keeps the
    history :func:`sequence_matrix` gives it, which this equals whenever a user's dates follow time order.
    The cut is by ``date`` alone (clicks ordered by user, date, time), so no click of the row's day or later
    can enter even where they do not (KuaiRand dates some 23:xx rows on the next day). Left-padded with PAD.
    """
    out = np.full((len(rows), seq_len), PAD, dtype=np.int64)
    if len(clicks) == 0 or len(rows) == 0:
        return out
    cu, cd = clicks["user_id"].to_numpy(np.int64), clicks["date"].to_numpy(np.int64)
    order = np.lexsort((clicks["video_id"].to_numpy(), clicks["time_ms"].to_numpy(), cd, cu))
    users, rank = np.unique(cu[order], return_inverse=True)
    key = rank.astype(np.int64) * 10**8 + cd[order]              # (user, date) sorted; dates are YYYYMMDD
    ru = rows["user_id"].to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(users, ru), len(users) - 1)
    known = users[pos] == ru
    row_key = pos.astype(np.int64) * 10**8
    start = np.searchsorted(key, row_key, side="left")
    end = np.searchsorted(key, row_key + rows["date"].to_numpy(np.int64), side="left")
    end = np.where(known, end, start)                             # a user without clicks: no history
    idx = end[:, None] + np.arange(-seq_len, 0)[None, :]
    videos = clicks["video_id"].to_numpy(np.int64)[order]
    return np.where(idx >= start[:, None], videos[np.clip(idx, 0, len(videos) - 1)], PAD).astype(np.int64)


def _require_labels(train: pd.DataFrame) -> list[str]:
    """The objectives' label columns (OBJECTIVES order); a frame without one fails rather than defaulting to 0."""
    labels = list(OBJECTIVES.values())
    missing = [c for c in labels if c not in train.columns]
    if missing:
        raise SchemaError(f"training rows: missing objective label column(s) {missing} (schema.OBJECTIVES)")
    return labels


def objective_positives(train: pd.DataFrame, clicks: pd.DataFrame, seq_len: int) -> pd.DataFrame:
    """The rows positive for any objective, in ``train``'s order, with their labels and as-of-day click history.

    ``train`` is sorted by (user_id, time_ms, video_id) and ``clicks`` is its clicked rows; both are filters of
    that order, so the union's click rows are ``clicks`` in order and take ``sequence_matrix``'s histories
    unchanged (the click-only rows stay bit-identical); the other rows get :func:`history_before_day`.
    """
    labels = _require_labels(train)
    union = train[train[labels].eq(1).any(axis=1)].reset_index(drop=True)
    out = union[["user_id", "video_id", "date"]].copy()
    for c in labels:
        out[c] = union[c].astype("int8")
    seq = np.empty((len(union), seq_len), dtype=np.int64)
    clicked = (union["is_click"] == 1).to_numpy()
    _, seq[clicked] = sequence_matrix(clicks, seq_len, before_day=True)
    seq[~clicked] = history_before_day(clicks, union[~clicked], seq_len)
    out[seq_columns(seq_len)] = seq
    return out


@dataclass
class ScenarioFeatures:
    users: pd.DataFrame        # serving snapshot: user_id, statics, seq_*, exp_count, click_count, ctr
    items: pd.DataFrame        # serving snapshot (the scenario's candidate pool): video_id, statics, counts
    item_daily: pd.DataFrame   # video_id, date, exp/click counts before each train day, *_recent: the day before
    positives: pd.DataFrame    # rows positive for any objective: user_id, video_id, date, the OBJECTIVES labels,
    #                            seq_* (clicks), exp_count, click_count, ctr (as of before date)
    exposure_dist: pd.DataFrame  # video_id, exposures, prob (negative sampling space)


def split_scenario(train: pd.DataFrame, users_static: pd.DataFrame, items_static: pd.DataFrame,
                   train_dates: list[int], seq_len: int) -> ScenarioFeatures:
    """Features of one scenario from its training rows (already filtered to that scenario)."""
    train = train.sort_values(["user_id", "time_ms", "video_id"], kind="stable").reset_index(drop=True)
    clicks = train[train["is_click"] == 1].reset_index(drop=True)

    # serving snapshot -----------------------------------------------------------------------
    # int64 counts whatever the values (pandas keeps an int8 label's dtype for a sum when every sum fits in it)
    u_counts = train.groupby("user_id").agg(exp_count=("is_click", "size"), click_count=("is_click", "sum")).astype(
        "int64")
    keys, seq = sequence_matrix(clicks, seq_len, before_day=False)
    seq_df = pd.DataFrame(seq, columns=seq_columns(seq_len))
    seq_df.insert(0, "user_id", keys)
    users = u_counts.reset_index().merge(seq_df, on="user_id", how="left")
    users[seq_columns(seq_len)] = users[seq_columns(seq_len)].fillna(PAD).astype("int64")
    users = add_rates(users).merge(users_static, on="user_id", how="left")

    i_counts = train.groupby("video_id").agg(exp_count=("is_click", "size"), click_count=("is_click", "sum")).astype(
        "int64")
    items = add_rates(i_counts.reset_index())
    if train_dates:
        last = train[train["date"] == max(train_dates)].groupby("video_id").agg(
            exp_recent=("is_click", "size"), clk_recent=("is_click", "sum")).reset_index()
        items = items.merge(last, on="video_id", how="left")
    else:
        items["exp_recent"], items["clk_recent"] = 0, 0
    items[["exp_recent", "clk_recent"]] = items[["exp_recent", "clk_recent"]].fillna(0).astype("int64")
    items = items.merge(items_static, on="video_id", how="left")

    # as-of-day snapshots ----------------------------------------------------------------------
    pool = items["video_id"].to_numpy()
    grid = pd.DataFrame({"video_id": np.repeat(pool, len(train_dates)),
                         "date": np.tile(np.asarray(train_dates, dtype=np.int32), len(pool))})
    before = _counts_before(train, "video_id", train_dates)
    recent = _counts_on_previous_day(train, "video_id", train_dates)
    item_daily = grid.merge(before, on=["video_id", "date"], how="left").merge(recent, on=["video_id", "date"],
                                                                                how="left").fillna(0)
    item_daily = add_rates(item_daily.astype({"exp_count": "int64", "click_count": "int64", "exp_recent": "int64",
                                              "clk_recent": "int64", "date": "int32"}))

    positives = objective_positives(train, clicks, seq_len)
    u_before = _counts_before(train, "user_id", sorted(set(positives["date"].tolist())))
    positives = positives.merge(u_before, on=["user_id", "date"], how="left")
    positives[["exp_count", "click_count"]] = positives[["exp_count", "click_count"]].fillna(0).astype("int64")
    positives = add_rates(positives)

    exp = train.groupby("video_id").size().rename("exposures").reset_index()
    exp["prob"] = exp["exposures"] / exp["exposures"].sum()
    return ScenarioFeatures(users=users, items=items, item_daily=item_daily, positives=positives,
                            exposure_dist=exp)


def pretrain_pairs(train: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per (id, scenario a, scenario b) for ids seen in two or more scenarios (a < b).

    Uses every exposure, clicked or not: that is the unlabeled data pretraining exists to use.
    ``last_date`` is the newest day by which the id had been seen in both scenarios, so an incremental
    day can pretrain on the pairs its newest data touches.
    """
    seen = train.groupby([key, "scenario"], observed=True)["date"].max().reset_index()
    pairs = seen.merge(seen, on=key, suffixes=("_a", "_b"))
    pairs = pairs[pairs["scenario_a"] < pairs["scenario_b"]]
    pairs = pairs.assign(last_date=pairs[["date_a", "date_b"]].min(axis=1)).drop(columns=["date_a", "date_b"])
    return pairs.rename(columns={key: "id"}).sort_values(["id", "scenario_a", "scenario_b"]).reset_index(
        drop=True).astype({"id": "int64", "scenario_a": "string", "scenario_b": "string", "last_date": "int64"})


# ---- the split stage's folders: written by pipelines/split.py and by experiment.write_split alike -----------

SPLIT_TABLES = ("users", "items", "item_daily", "positives", "exposure_dist")


def split_meta(names: list[str], reported: list[str], mapping: dict, train_dates: list[int], test_dates: list[int],
               seq_len: int) -> dict:
    """meta.json of every split folder: what the feature bank needs to read the split back."""
    return {"scenarios": list(names), "reported": list(reported), "mapping": mapping, "train_dates": list(train_dates),
            "test_dates": list(test_dates), "seq_len": int(seq_len)}


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_scenario_split(out: Path, train: pd.DataFrame, scenario: str, users: pd.DataFrame, items: pd.DataFrame,
                         meta: dict) -> dict:
    """One scenario's feature tables, stats.json and meta.json into the (new) folder ``out``; returns the stats."""
    part = train[train["scenario"] == scenario]
    f = split_scenario(part, users, items, meta["train_dates"], meta["seq_len"])
    out.mkdir(parents=True, exist_ok=True)
    for key in SPLIT_TABLES:
        getattr(f, key).to_parquet(out / f"{key}.parquet", index=False)
    pos = f.positives
    stats = {"rows": len(part), "users": len(f.users), "items": len(f.items),
             "positives": int((pos["is_click"] == 1).sum()),      # the clicks, as before the other objectives
             "objective_positives": {name: int((pos[col] == 1).sum()) for name, col in OBJECTIVES.items()},
             "positive_rows": len(pos),                           # rows positive for any objective
             "reported": scenario in meta["reported"]}
    _write_json(out / "stats.json", stats)
    _write_json(out / "meta.json", meta)
    return stats


def write_skipped_split(out: Path, skipped: SkippedScenario) -> dict:
    """A skipped scenario's split folder: its marker and stats.json, no tables and no meta.json.

    No meta.json, so the feature bank (which reads the scenario list from a meta.json) never mistakes
    the folder for a trained scenario; stats.json keeps the run report's data table complete.
    """
    skipped.write(out)
    stats = {"rows": skipped.rows, "users": 0, "items": 0, "positives": 0, "reported": False, "skipped": True,
             "served_by": skipped.served_by}
    _write_json(Path(out) / "stats.json", stats)
    return stats


def write_pairs_split(out: Path, train: pd.DataFrame, meta: dict) -> dict:
    """The cross-scenario pretraining pairs (users and videos seen in two scenarios) into ``out``."""
    users, items = pretrain_pairs(train, "user_id"), pretrain_pairs(train, "video_id")
    out.mkdir(parents=True, exist_ok=True)
    users.to_parquet(out / "users.parquet", index=False)
    items.to_parquet(out / "items.parquet", index=False)
    stats = {"user_pairs": len(users), "item_pairs": len(items)}
    _write_json(out / "stats.json", stats)
    _write_json(out / "meta.json", meta)
    return stats
