"""Fine-tuning's positives streamed from the training shards' Parquet row groups (``train.input: stream``).

At a hundred million interactions a day the positives, with their seq_len history columns, do not fit a
worker's memory, so the feature bank keeps only the held-out validation days (models.bank.stream_memory_days)
and training reads the rest as a stream of row groups, each read with only the columns a batch needs.

The row groups are the shards stage's (data.shards, data/shards): every trained scenario's positives with a
``scenario`` column, in one seeded random order, so each row group is a uniform sample of the window's rows
(all scenarios, days and users), as the in-memory plan's batches are. The split's own positives files are sorted
by user: a row group of theirs is a few users of one scenario, and a shuffle buffer of a few of them gives
batches of few users and one scenario. The stream checks the shards' meta.json against its bank (the same
scenarios, training days and split rows) and fails with one line when they belong to another split.

An epoch, on one rank:

1. Shard order: every row group of the shard files, shuffled by (seed, epoch); the same order on every rank.
   Row group i of that order goes to rank i % world: each rank reads a disjoint share, a different one every
   epoch.
2. Each row group is filtered to the phase's scenarios, days and objective, and each scenario's rows of it are
   encoded by the bank's own functions (models.bank.positive_arrays, then models.bank.select_positives: the
   one selection the in-memory input applies), so a streamed row is bit-identical to the in-memory one.
3. Shuffle buffer: rows accumulate per day (a batch never mixes days: the item features are as-of-day
   snapshots). Whenever ``shuffle_buffer`` rows are buffered, a batch of ``batch_size`` rows drawn at random
   (the rank's seeded rng) leaves the fullest day, if that day holds a full batch (else reading goes on: every
   batch before the end is full). At the end of the epoch every day's remaining rows leave in batches (the last
   of each day may be short), in a seeded random order.

So a rank yields exactly sum over days of ceil(rows of the day / batch_size) batches, whatever the buffer did.

Step counts across ranks (DDP all-reduces every step, so every rank must take the same number): before the
epoch each rank counts its row groups' rows per day after the filter (a read of the date, scenario and label
columns, cached across epochs), which gives every rank's batch count by the formula above; every rank stops at the
minimum over ranks. The rows of the batches a rank drops at the end of an epoch are that epoch's loss only: the
next epoch deals the row groups out anew. One process has nothing to drop.

Resume: the order is a pure function of (seed, epoch, rank), so a resumed epoch replays the stream and skips the
batches already done (``start``; train.loop.run_epochs skips them by step index the same way): only the reading
is repeated, not the training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ..data.features import seq_columns
from ..data.schema import OBJECTIVES
from ..data.shards import SCENARIO, check_shards, split_rows
from ..errors import MissingPrerequisiteError
from ..models.bank import FeatureBank, PositiveFiles, positive_arrays, select_positives, with_labels

# what positive_arrays reads besides the history columns
ROW_COLUMNS = ("user_id", "video_id", "date", "exp_count", "click_count", "ctr")


def positive_files(bank: FeatureBank) -> PositiveFiles:
    if bank.positive_files is None:
        raise ValueError("the streamed input needs a feature bank loaded from the split's folder (load_bank)")
    bank.require_training_samples("the streamed input")
    return bank.positive_files


def shard_paths(bank: FeatureBank) -> list[Path]:
    """The bank's shard files (data.shards), once their meta.json matches the bank's split (else one line)."""
    files = positive_files(bank)
    if files.shards_dir is None:
        raise MissingPrerequisiteError("the streamed input reads the training shards: load the feature bank with "
                                       "shards_dir (models.bank.load_bank; the train stages' --shards data/shards)")
    meta = check_shards(files.shards_dir, bank.scenarios, bank.train_dates,
                        split_rows(files.features_dir, bank.scenarios))
    return [files.shards_dir / f for f in meta["files"]]


def objective_column(objective: str, labels: bool) -> str | None:
    """The label column a row must have set to be a positive of the phase (None: every multi-objective row)."""
    return None if labels else OBJECTIVES[objective]


@dataclass(frozen=True)
class Shard:
    """One row group of one shard file (its index in the shards' meta.json ``files``)."""

    file: int
    group: int


class RowFilter:
    """The phase's rows in a table read from a positives or shard file: its days, its scenarios (``scenarios``,
    for a shard file's ``scenario`` column; None: a scenario's own file) and, but for the multi-task loss, its
    objective (a split without label columns holds clicks only)."""

    def __init__(self, bank: FeatureBank, days: set[int], objective: str, labels: bool,
                 scenarios: list[str] | None = None) -> None:
        self.dates = pa.array([bank.train_dates[d] for d in sorted(days)], pa.int64())
        self.label = objective_column(objective, labels)
        self.scenarios = None if scenarios is None else pa.array(scenarios, pa.string())

    def columns(self, have: set[str]) -> list[str]:
        """What the filter reads of a file with columns ``have``."""
        return ["date", *([SCENARIO] if self.scenarios is not None else []),
                *([self.label] if self.label in have else [])]

    def mask(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        keep = pc.is_in(table.column("date").cast(pa.int64()), value_set=self.dates)
        if self.scenarios is not None:
            keep = pc.and_(keep, pc.is_in(table.column(SCENARIO).cast(pa.string()), value_set=self.scenarios))
        if self.label is None:
            return keep
        if self.label in table.column_names:
            return pc.and_(keep, pc.equal(table.column(self.label), 1))
        return keep if self.label == "is_click" else pc.and_(keep, pa.scalar(False))


class PositiveStream(torch.utils.data.IterableDataset):
    """The phase's positives as single-day batches in the layout of train.finetune._positives (``scen``, ``user``,
    ``item``, ``day``, ``seq``, ``stats`` and, for the multi-task loss, ``labels``): ``step_loss(..., pos=batch,
    idx=arange(len(batch["user"])))`` trains on one. Iterating yields ``(k, batch)``, k the rank's batch index in
    the epoch (:meth:`set_epoch`); the module docstring has the order, the rank split and the step-count rule."""

    def __init__(self, bank: FeatureBank, scenarios: list[str], days: set[int], objective: str = "click",
                 labels: bool = False, batch_size: int = 1024, shuffle_buffer: int = 65536, seed: int = 0,
                 rank: int = 0, world: int = 1, equalise: bool = True) -> None:
        super().__init__()
        if batch_size < 1 or shuffle_buffer < 1:
            raise ValueError(f"the streamed input needs batch_size and train.shuffle_buffer >= 1, got "
                             f"{batch_size} and {shuffle_buffer}")
        self.bank, self.files, self.paths = bank, positive_files(bank), shard_paths(bank)
        self.scenarios, self.days = list(scenarios), set(days)
        self.objective, self.labels = objective, labels
        self.batch_size, self.shuffle_buffer, self.seed = batch_size, shuffle_buffer, seed
        self.rank, self.world, self.equalise = rank, world, equalise
        self.filter = RowFilter(bank, self.days, objective, labels, self.scenarios)
        self.have = set(pq.read_schema(self.paths[0]).names)
        self.shards = [Shard(i, g) for i, p in enumerate(self.paths) for g in range(pq.ParquetFile(p).num_row_groups)]
        self.epoch, self.start = 0, 0
        self._day_counts: dict[Shard, np.ndarray] | None = None

    # ---- the plan ----------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch the next iteration streams, from its batch ``start`` (a resumed epoch)."""
        self.epoch, self.start = epoch, start

    def shard_order(self, epoch: int) -> list[Shard]:
        """Every row group, shuffled by (seed, epoch): the same order on every rank."""
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.shards))
        return [self.shards[i] for i in order]

    def rank_shards(self, epoch: int, rank: int) -> list[Shard]:
        return self.shard_order(epoch)[rank::self.world]

    def day_counts(self) -> dict[Shard, np.ndarray]:
        """Per row group, its rows of the phase per day (index into train_dates): read once, from the date and
        label columns only."""
        if self._day_counts is None:
            self._day_counts = {}
            n_days = len(self.bank.train_dates)
            cols = self.filter.columns(self.have)
            for i, path in enumerate(self.paths):
                f = pq.ParquetFile(path)
                for g in range(f.num_row_groups):
                    t = f.read_row_group(g, columns=cols)
                    dates = t.filter(self.filter.mask(t)).column("date").to_numpy().astype(np.int64)
                    day = np.searchsorted(np.asarray(self.bank.train_dates), dates)
                    self._day_counts[Shard(i, g)] = np.bincount(day, minlength=n_days)
        return self._day_counts

    def rank_batches(self, epoch: int, rank: int) -> int:
        """How many batches ``rank`` streams in ``epoch`` before equalising: per day, ceil(rows / batch_size)."""
        counts = self.day_counts()
        per_day = sum((counts[sh] for sh in self.rank_shards(epoch, rank)), np.zeros(len(self.bank.train_dates), int))
        return int(np.ceil(per_day / self.batch_size).sum())

    def batches_per_rank(self, epoch: int) -> int:
        """The batches every rank yields in ``epoch``: the minimum over ranks (module docstring)."""
        counts = [self.rank_batches(epoch, r) for r in range(self.world)]
        return min(counts) if self.equalise else counts[self.rank]

    def steps(self, epoch: int) -> int:
        """The epoch's optimiser steps summed over ranks: train.loop.run_epochs' ``n_batches``."""
        return self.batches_per_rank(epoch) * self.world

    # ---- reading -----------------------------------------------------------------------------------------
    def read_shard(self, shard: Shard) -> dict[str, np.ndarray] | None:
        """One row group's rows of the phase, each scenario's encoded as the bank encodes its positives (None:
        the group holds none)."""
        hist = seq_columns(self.files.seq_len)
        labels = [c for c in OBJECTIVES.values() if c in self.have]
        t = pq.ParquetFile(self.paths[shard.file]).read_row_group(
            shard.group, columns=[SCENARIO, *ROW_COLUMNS, *labels, *hist])
        t = t.filter(self.filter.mask(t))
        scen = t.column(SCENARIO).cast(pa.string())
        parts = []
        for s in self.scenarios:
            rows = t.filter(pc.equal(scen, s)).drop_columns([SCENARIO])
            if rows.num_rows == 0:
                continue
            arrays = positive_arrays(with_labels(rows.to_pandas()), self.bank, hist, self.files.video_buckets)
            parts.append(select_positives(arrays, self.bank.scen_index(s), self.days, self.objective, self.labels))
        if not parts:
            return None
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError("the streamed input reads its row groups in one process (DataLoader num_workers 0 or 1):"
                             " more workers would split its shuffle buffer")
        limit = self.batches_per_rank(self.epoch)
        for k, batch in enumerate(self._batches(self.epoch)):
            if k >= limit:
                return
            if k >= self.start:
                yield k, batch

    def _batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch, 1, self.rank])
        buffer = DayBuffer()
        for shard in self.rank_shards(epoch, self.rank):
            rows = self.read_shard(shard)
            if rows is not None:
                buffer.add(rows)
            while buffer.rows >= self.shuffle_buffer:
                batch = buffer.draw(rng, self.batch_size)
                if batch is None:
                    break
                yield batch
        yield from buffer.flush(rng, self.batch_size)


class DayBuffer:
    """Buffered rows, one block of arrays per day."""

    def __init__(self) -> None:
        self.days: dict[int, dict[str, np.ndarray]] = {}
        self.rows = 0

    def add(self, rows: dict[str, np.ndarray]) -> None:
        for d in np.unique(rows["day"]):
            m = rows["day"] == d
            part = {k: v[m] for k, v in rows.items()}
            held = self.days.get(int(d))
            self.days[int(d)] = part if held is None else {k: np.concatenate([held[k], part[k]]) for k in part}
            self.rows += int(m.sum())

    def size(self, day: int) -> int:
        return len(self.days[day]["day"])

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray] | None:
        """``n`` rows at random from the fullest day (the smallest day index on a tie), or None if no day holds
        ``n`` rows."""
        day = max(sorted(self.days), key=self.size)
        size = self.size(day)
        if size < n:
            return None
        pick = rng.choice(size, n, replace=False)
        keep = np.ones(size, bool)
        keep[pick] = False
        held = self.days[day]
        batch = {k: v[pick] for k, v in held.items()}
        self.days[day] = {k: v[keep] for k, v in held.items()}
        self.rows -= n
        return batch

    def flush(self, rng: np.random.Generator, n: int) -> list[dict[str, np.ndarray]]:
        """Every remaining row, in batches of ``n`` of one day (each day's last may be short), in a random order."""
        out = []
        for day in sorted(self.days):
            held = self.days[day]
            order = rng.permutation(len(held["day"]))
            out.extend({k: v[order[i:i + n]] for k, v in held.items()} for i in range(0, len(order), n))
        self.days, self.rows = {}, 0
        return [out[i] for i in rng.permutation(len(out))]


def keep_numpy(batch: tuple[int, dict[str, np.ndarray]]) -> tuple[int, dict[str, np.ndarray]]:
    """The DataLoader's collate: batches stay numpy arrays (step_loss gathers with numpy)."""
    return batch


def stream_loader(stream: PositiveStream, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """The stream through a DataLoader: it batches already (batch_size=None), and its arrays stay numpy."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=keep_numpy)


def positive_ids(bank: FeatureBank, scenarios: list[str], days: set[int], objective: str = "click",
                 users: bool = True) -> dict[str, np.ndarray]:
    """``scen``, ``item``, ``day`` (and ``user``) of the phase's positives, from a narrow read of the files (the id,
    date and label columns, row group by row group, of the split's per-scenario files: the order does not matter
    here): what the in-batch negatives' proposal (the click share of every training positive) and the clicks
    before a held-out day need, without the rows' histories."""
    files = positive_files(bank)
    flt = RowFilter(bank, days, objective, False)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("scen", "user", "item", "day")}
    for s in scenarios:
        f = pq.ParquetFile(files.path(s))
        cols = [*(["user_id"] if users else []), "video_id", *flt.columns(set(f.schema_arrow.names))]
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=cols)
            t = t.filter(flt.mask(t))
            out["item"].append(bank.item_rows(t.column("video_id").to_numpy().astype(np.int64)))
            out["day"].append(np.searchsorted(np.asarray(bank.train_dates),
                                              t.column("date").to_numpy().astype(np.int64)))
            out["scen"].append(np.full(t.num_rows, bank.scen_index(s)))
            if users:
                out["user"].append(bank.user_rows(t.column("user_id").to_numpy().astype(np.int64)))
    if not users:
        del out["user"]
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in out.items()}
