"""Distillation from the pre-ranker: the teacher's softened scores on exposed candidates teach the two-tower.

The two-tower's user and item meet only in the final inner product; the pre-ranker (rank/) sees cross features
and orders a user's exposures better. Distillation adds to a step's retrieval loss

    lambda x T^2 x mean over groups of KL(softmax(teacher / T) || softmax(student / T))

where a group is one (day, scenario, user)'s exposures, the teacher's logits come from the teacher-score table
(the training window's exposures scored by the rank stage) and the student's are the retrieval loss's own
scaled inner product (scenario vectors / finetune.temperature). Why groups of one request: the teacher is
trusted on the order among what one user was shown, not on a scale across users; a group of one carries no
order and is dropped. The sampled-softmax loss on the clicks and their sampled negatives is unchanged: the
unexposed negatives keep their hard labels, as the issue asks. The T^2 factor keeps the term's gradient
on the scale of the hard loss's whatever T (Hinton et al.).

Each step samples ``groups_per_step`` groups of the batch's own day (batches are single-day, in memory and
streamed alike), so the item statistics are that day's snapshot, as for the batch's positives.

User features: a group's user is embedded with the as-of-day history and statistics the split stage wrote
for the user's positive rows of that day and scenario (models.bank: the in-memory rows through
``select_positives``, a streaming bank's through ``positive_arrays`` on the positives file, the same functions
fine-tuning's positives go through). Those features depend on (user, scenario, day) only, not on the item, so
any positive row of the group's key carries them. A group whose user had no positive row that day in that
scenario has no such features in the split's output and is dropped (counted in :attr:`DistillInput.dropped`):
a second feature path would have to recompute the histories from the raw log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ..data.features import seq_columns
from ..data.schema import OBJECTIVES
from ..errors import BadInputError, MissingPrerequisiteError
from ..models.bank import FeatureBank, positive_arrays, select_positives, with_labels
from ..params_schema import Distill, Finetune
from .stream import ROW_COLUMNS

TEACHER_COLUMNS = ("date", "scenario", "user_id", "video_id", "is_click", "teacher_logit")
MASKED = -1e9   # a padded slot's logit: exp() of it is 0 in float32, and 0 x it stays finite (no NaN gradient)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x the mean over groups (rows) of KL(softmax(teacher / T) || softmax(student / T)) over each row's
    valid slots (``mask``); padded slots take no probability on either side. Zero when the student equals the
    teacher up to a constant shift per row (the softmax does not see it)."""
    t = temperature
    s_logp = torch.log_softmax((student / t).masked_fill(~mask, MASKED), dim=1)
    t_logp = torch.log_softmax((teacher / t).masked_fill(~mask, MASKED), dim=1)
    kl = (t_logp.exp() * (t_logp - s_logp) * mask).sum(1)
    return t * t * kl.mean()


@dataclass
class DayGroups:
    """One training day's groups, padded to the longest: slot j of group g is item ``items[g, j]`` when
    ``mask[g, j]``."""

    scen: np.ndarray      # (G,) scenario index
    user: np.ndarray      # (G,) user row
    seq: np.ndarray       # (G, seq_len) the user's hashed history before the day, in the scenario
    stats: np.ndarray     # (G, 3) the user's statistics before the day, in the scenario
    items: np.ndarray     # (G, M) item rows (0 where padded)
    teacher: np.ndarray   # (G, M) float32 teacher logits (0 where padded)
    mask: np.ndarray      # (G, M) bool

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> DayGroups:
        return DayGroups(*(a[idx] for a in (self.scen, self.user, self.seq, self.stats, self.items, self.teacher,
                                            self.mask)))


@dataclass
class DistillInput:
    """The teacher's groups of every loaded training day, and the knobs of the term. Built by :meth:`load`."""

    knobs: Distill
    days: dict[int, DayGroups]
    dropped: dict[str, int] = field(default_factory=dict)   # rows/groups left out, by reason (the training report)

    @classmethod
    def load(cls, path: str | Path, bank: FeatureBank, days: set[int], knobs: Distill | None = None,
             seed: int = 0) -> DistillInput:
        """The groups of the teacher table at ``path`` on ``days`` (indexes into ``bank.train_dates``) in the
        bank's scenarios: exposures deduplicated per (date, scenario, user, video), items outside the
        scenario's pool dropped, groups of fewer than two exposures dropped, at most ``max_group`` exposures
        per group (a choice seeded by ``seed``), users mapped to their as-of-day features (module docstring)."""
        knobs = knobs or Distill()
        path = Path(path)
        frame = read_teacher(path, [bank.train_dates[d] for d in sorted(days)], bank.scenarios)
        dropped: dict[str, int] = {}
        frame = _known_rows(frame, bank, dropped)
        frame = _capped_groups(frame, knobs.max_group, seed, dropped)
        groups = _with_user_features(frame, bank, days, dropped)
        return cls(knobs, groups, dropped)

    def groups_on(self, day: int) -> int:
        g = self.days.get(int(day))
        return 0 if g is None else len(g)

    def sample(self, day: int, rng: np.random.Generator) -> DayGroups | None:
        """``groups_per_step`` of the day's groups drawn without replacement (all of them when fewer); None
        when the day has none."""
        g = self.days.get(int(day))
        if g is None or not len(g):
            return None
        k = min(int(self.knobs.groups_per_step), len(g))
        return g.take(np.sort(rng.choice(len(g), size=k, replace=False)))

    def term(self, model: Any, bank: FeatureBank, day: int, s: Finetune, rng: np.random.Generator) -> torch.Tensor | None:
        """lambda x T^2 x KL on groups sampled from ``day`` (None: the day has no group), the student's logits
        being the retrieval loss's scaled inner product of the scenario vectors (``finetune.temperature``)."""
        g = self.sample(day, rng)
        if g is None or not self.knobs.weight:
            return None
        return self.knobs.weight * distill_kl(student_logits(model, bank, g, day, s.temperature),
                                              torch.from_numpy(g.teacher), torch.from_numpy(g.mask),
                                              float(self.knobs.temperature))


def student_logits(model: Any, bank: FeatureBank, g: DayGroups, day: int, temperature: float) -> torch.Tensor:
    """(G, M) scenario-vector inner products / ``temperature`` of each group's user with its items, with the item
    statistics of ``day``; padded slots are 0 (the KL masks them). Only the valid slots go through the item tower."""
    u_s, _ = model.user_vectors(bank.user_batch(g.user, g.scen, g.seq, g.stats))
    rows, cols = np.nonzero(g.mask)
    items, scen = g.items[rows, cols], g.scen[rows]
    first = bank.per[bank.scenarios[int(scen[0])]].item_daily
    stats = np.empty((len(items), first.shape[-1]), dtype=first.dtype)
    for k in np.unique(scen):                    # each item's statistics in its own scenario, that day
        m = scen == k
        stats[m] = bank.per[bank.scenarios[int(k)]].item_daily[day, items[m]]
    i_s, _ = model.item_vectors(bank.item_batch(items, scen, stats))
    dots = (u_s[torch.from_numpy(rows)] * i_s).sum(-1) / temperature
    out = dots.new_zeros(g.mask.shape)
    return out.index_put((torch.from_numpy(rows), torch.from_numpy(cols)), dots)


# ---------------------------------------------------------------- loading


def read_teacher(path: Path, dates: list[int], scenarios: list[str]) -> pd.DataFrame:
    """The teacher table's rows of ``dates`` and ``scenarios``, one per (date, scenario, user, video) (a
    repeated exposure keeps its mean logit and any click), sorted by those keys: a fixed order, so the seeded
    choice of :func:`_capped_groups` is reproducible."""
    if not path.exists():
        raise MissingPrerequisiteError(f"{path}: no teacher-score table (distill.teacher)",
                                       hint="run the rank stage first, or set distill.enabled: false")
    names = pq.read_schema(path).names
    missing = [c for c in TEACHER_COLUMNS if c not in names]
    if missing:
        raise BadInputError(f"{path}: column(s) {', '.join(missing)}: required in the teacher-score table "
                            f"({', '.join(TEACHER_COLUMNS)})")
    table = pq.read_table(path, columns=list(TEACHER_COLUMNS))
    keep = pc.and_(pc.is_in(table["date"].cast(pa.int64()), value_set=pa.array(dates, pa.int64())),
                   pc.is_in(table["scenario"].cast(pa.string()), value_set=pa.array(scenarios, pa.string())))
    df = table.filter(keep).to_pandas()
    df["scenario"] = df["scenario"].astype(str)
    if df["teacher_logit"].isna().any() or not np.isfinite(df["teacher_logit"].to_numpy(np.float64)).all():
        raise BadInputError(f"{path}: column teacher_logit: every value must be a finite number")
    df = (df.astype({"date": "int64", "user_id": "int64", "video_id": "int64", "is_click": "int8",
                     "teacher_logit": "float32"})
            .groupby(["date", "scenario", "user_id", "video_id"], sort=True, as_index=False)
            .agg(is_click=("is_click", "max"), teacher_logit=("teacher_logit", "mean")))
    df["teacher_logit"] = df["teacher_logit"].astype(np.float32)
    return df


def _known_rows(df: pd.DataFrame, bank: FeatureBank, dropped: dict[str, int]) -> pd.DataFrame:
    """The rows with bank coordinates (scen, user, item rows; day index): a user or video outside the bank's
    universe, or a video outside the scenario's pool, is dropped."""
    known = df["user_id"].isin(bank.user_ids) & df["video_id"].isin(bank.item_ids)
    dropped["rows_unknown_id"] = int((~known).sum())
    df = df[known].copy()
    df["scen"] = df["scenario"].map({n: i for i, n in enumerate(bank.scenarios)}).astype(np.int64)
    df["user"] = bank.user_rows(df["user_id"].to_numpy())
    df["item"] = bank.item_rows(df["video_id"].to_numpy())
    df["day"] = np.searchsorted(np.asarray(bank.train_dates), df["date"].to_numpy())
    in_pool = np.zeros(len(df), dtype=bool)
    for k, name in enumerate(bank.scenarios):
        m = (df["scen"] == k).to_numpy()
        in_pool[m] = np.isin(df["item"].to_numpy()[m], bank.per[name].pool)
    dropped["rows_outside_pool"] = int((~in_pool).sum())
    return df[in_pool]


def _capped_groups(df: pd.DataFrame, max_group: int, seed: int, dropped: dict[str, int]) -> pd.DataFrame:
    """Groups of two exposures or more, each cut to ``max_group`` of them chosen at random (``seed``); sorted by
    group. Why cap: a few heavy users' long lists would otherwise set the padded width of every group."""
    key = ["day", "scen", "user"]
    size = df.groupby(key, sort=False)["item"].transform("size").to_numpy()
    dropped["groups_of_one"] = int((size == 1).sum())
    df = df[size >= 2]
    draw = np.random.default_rng(seed).random(len(df))
    df = df.assign(_draw=draw).sort_values([*key, "_draw"], kind="stable")
    rank = df.groupby(key, sort=False).cumcount().to_numpy()
    dropped["rows_over_max_group"] = int((rank >= max_group).sum())
    return df[rank < max_group].drop(columns="_draw")


def _user_rows(bank: FeatureBank, name: str, days: set[int], users: np.ndarray) -> dict[str, np.ndarray]:
    """Every positive row (any objective) of ``users`` in scenario ``name`` on ``days``: user, day, seq, stats.
    From the bank's memory when it holds those days, else read from the split's positives file one row group
    at a time and encoded by the same functions (models.bank.positive_arrays, select_positives)."""
    k = bank.scen_index(name)
    files = bank.positive_files
    if files is None or files.holds(days):
        return select_positives(vars(bank.per[name]), k, days, labels=True)
    dates = pa.array([bank.train_dates[d] for d in sorted(days)], pa.int64())
    wanted = pa.array(bank.user_ids[np.unique(users)], pa.int64())
    cols = seq_columns(files.seq_len)
    f = pq.ParquetFile(files.path(name))
    have = set(f.schema_arrow.names)
    read = [*ROW_COLUMNS, *cols, *(c for c in OBJECTIVES.values() if c in have)]   # what positive_arrays reads
    parts = []
    for rg in range(f.num_row_groups):
        t = f.read_row_group(rg, columns=read)
        t = t.filter(pc.and_(pc.is_in(t["date"].cast(pa.int64()), value_set=dates),
                             pc.is_in(t["user_id"].cast(pa.int64()), value_set=wanted)))
        if t.num_rows:
            arrays = positive_arrays(with_labels(t.to_pandas()), bank, cols, files.video_buckets)
            part = select_positives(arrays, k, days, labels=True)
            _, first = np.unique(part["user"].astype(np.int64) * len(bank.train_dates) + part["day"],
                                 return_index=True)   # one row per (user, day) is all a group needs
            parts.append({key: part[key][first] for key in ("user", "day", "seq", "stats")})
    if not parts:
        width = (0, files.seq_len)
        return {"user": np.zeros(0, np.int64), "day": np.zeros(0, np.int64), "seq": np.zeros(width, np.int32),
                "stats": np.zeros((0, 3), np.float32)}
    return {key: np.concatenate([p[key] for p in parts]) for key in ("user", "day", "seq", "stats")}


def _with_user_features(df: pd.DataFrame, bank: FeatureBank, days: set[int],
                        dropped: dict[str, int]) -> dict[int, DayGroups]:
    """Per day, the padded groups whose (user, scenario, day) has as-of-day user features (module docstring)."""
    n_days = len(bank.train_dates)
    out: dict[int, list[DayGroups]] = {}
    dropped["groups_without_user_features"] = 0
    for k, name in enumerate(bank.scenarios):
        part = df[df["scen"] == k]
        if part.empty:
            continue
        user, day = part["user"].to_numpy(np.int64), part["day"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, (user[1:] != user[:-1]) | (day[1:] != day[:-1])])
        g_user, g_day = user[starts], day[starts]
        rows = _user_rows(bank, name, days, g_user)
        row_key = rows["user"].astype(np.int64) * n_days + rows["day"]
        known, first = np.unique(row_key, return_index=True)   # one row per key: the features are the key's
        g_key = g_user * n_days + g_day
        pos = np.minimum(np.searchsorted(known, g_key), max(len(known) - 1, 0))
        has = (known[pos] == g_key) if len(known) else np.zeros(len(g_key), dtype=bool)
        dropped["groups_without_user_features"] += int((~has).sum())
        sizes = np.diff(np.r_[starts, len(part)])
        width = int(sizes.max())
        slot = np.arange(len(part)) - np.repeat(starts, sizes)
        group = np.repeat(np.arange(len(starts)), sizes)
        items = np.zeros((len(starts), width), dtype=np.int64)
        teacher = np.zeros((len(starts), width), dtype=np.float32)
        mask = np.zeros((len(starts), width), dtype=bool)
        items[group, slot] = part["item"].to_numpy()
        teacher[group, slot] = part["teacher_logit"].to_numpy(np.float32)
        mask[group, slot] = True
        src = first[pos]
        for d in np.unique(g_day[has]):
            m = has & (g_day == d)
            out.setdefault(int(d), []).append(DayGroups(
                scen=np.full(int(m.sum()), k, dtype=np.int64), user=g_user[m], seq=rows["seq"][src[m]],
                stats=rows["stats"][src[m]], items=items[m], teacher=teacher[m], mask=mask[m]))
    return {d: _concat(parts) for d, parts in sorted(out.items())}


def _concat(parts: list[DayGroups]) -> DayGroups:
    """Groups of several scenarios of one day in one padded set (the widest group sets the width)."""
    width = max(p.items.shape[1] for p in parts)

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

    return DayGroups(scen=np.concatenate([p.scen for p in parts]), user=np.concatenate([p.user for p in parts]),
                     seq=np.concatenate([p.seq for p in parts]), stats=np.concatenate([p.stats for p in parts]),
                     items=np.concatenate([pad(p.items, 0) for p in parts]),
                     teacher=np.concatenate([pad(p.teacher, 0.0) for p in parts]),
                     mask=np.concatenate([pad(p.mask, False) for p in parts]))
