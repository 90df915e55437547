"""The public peer: torch-rechub's DSSM, trained with its own trainer, scored through our protocol.

What comes from torch-rechub (0.9, ``pip install -e .[bench]``), unchanged:

- the model ``torch_rechub.models.matching.DSSM`` (two MLP towers, L2-normalised outputs, score =
  ``sigmoid(<u, i>)``; note that 0.9 ignores its ``temperature`` argument, the division is commented out);
- the feature classes ``SparseFeature`` / ``SequenceFeature`` (mean-pooled click history sharing the
  ``video_id`` table, exactly as in their example: padded with 0 and no ``padding_idx``, so the padding
  slots are averaged in too);
- the negative sampler ``torch_rechub.utils.match.negative_sample`` (``sample_method`` 0 = uniform over the
  clicked items, 1 = word2vec ``count**0.75``, 2 = ``log(count + 1)``), over the click counts of the
  rows given, as ``generate_seq_feature_match`` does;
- the dataset class ``TorchDataset`` and the trainer ``MatchTrainer`` (mode 0 = point-wise BCE, Adam).

Their MovieLens example (``examples/matching/run_ml_dssm.py``): point-wise mode 0, ``sample_method=1``,
``neg_ratio=3``, lr 1e-4, weight decay 1e-6, 10 epochs, batch 4096, 16-dim feature embeddings, towers
``[256, 128, 64]`` with PReLU, temperature 0.02 (a no-op), history length 50. ``EXAMPLE`` holds these.

What is ours (the project's data contract, not theirs):

- training rows = the frame passed in (the train window, ``scenario`` already mapped); positives = clicks;
- one sample per train click, in time order per user: the user's earlier clicks (any scenario, last
  ``seq_len``) are its history, as ``generate_seq_feature_match`` builds it. Unlike that helper we keep
  every click: it holds out each user's last click as its own test item and skips the first (empty
  history), which on KuaiRand (2.6 clicks per user) would drop most positives, and our test window is
  separate anyway;
- each positive is followed by ``n_neg`` rows with a sampled negative video and label 0 (their mode 0);
- user tower: ``user_id``, every profile field of the users table, the scenario id (one mixed model for all
  scenarios) and the history; item tower: ``video_id``, ``author_id``, ``tag``, ``video_type``;
- the loader feeds their ``TorchDataset`` whole index batches (``BatchSampler``) instead of collating one
  sample at a time, so samples/s measures the model and trainer rather than Python collation;
- serving: item tower over the scenario's pool (videos exposed there in the train rows), user tower with
  the scenario id and the user's last ``seq_len`` train clicks, exact inner-product top-k in numpy.

    python bench/peer_rechub.py                       # both variants on ../shared/data/kuairand_pure
    python bench/peer_rechub.py --variants uniform --epochs 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

SAMPLE_METHODS = {"uniform": 0, "popularity": 1, "log_popularity": 2}

# torch-rechub's examples/matching/run_ml_dssm.py (argparse defaults and the hard-coded model / data calls)
EXAMPLE: dict[str, Any] = {
    "mode": 0,  # point-wise, BCELoss on sigmoid(<u, i>)
    "sample_method": 1,  # word2vec-style count**0.75
    "neg_ratio": 3,
    "lr": 1e-4,
    "weight_decay": 1e-6,
    "epochs": 10,
    "batch_size": 4096,
    "embed_dim": 16,
    "tower_dims": (256, 128, 64),
    "activation": "prelu",
    "temperature": 0.02,
    "seq_max_len": 50,
}

USER_ID, ITEM_ID, SCENARIO, HIST = "user_id", "video_id", "scenario", "hist_video_id"
ITEM_FIELDS = ("author_id", "tag", "video_type")


def _import_rechub():
    try:
        from torch_rechub.basic.features import SequenceFeature, SparseFeature
        from torch_rechub.models.matching import DSSM
        from torch_rechub.trainers import MatchTrainer
        from torch_rechub.utils.data import TorchDataset
        from torch_rechub.utils.match import negative_sample
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("torch-rechub is not installed: pip install -e '.[bench]'") from exc
    return SparseFeature, SequenceFeature, DSSM, MatchTrainer, TorchDataset, negative_sample


# ---- encoding -------------------------------------------------------------------------------------


@dataclass
class Codes:
    """Raw value -> code 1..n (0 = unknown / padding), as their LabelEncoder(+1) does."""

    classes: np.ndarray

    @classmethod
    def fit(cls, *values: np.ndarray) -> Codes:
        return cls(np.unique(np.concatenate([np.asarray(v) for v in values])))

    @property
    def vocab(self) -> int:
        return int(self.classes.size) + 1

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if self.classes.size == 0:
            return np.zeros(values.shape, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.classes, values), 0, self.classes.size - 1)
        return np.where(self.classes[pos] == values, pos + 1, 0).astype(np.int64)


def _as_key(col: pd.Series) -> np.ndarray:
    """A column as a sortable numpy array: integers stay integers, everything else becomes text."""
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64)
    return col.astype(str).to_numpy(dtype=str)


def _table(ids: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    """Lookup array indexed by encoded id (0 and unseen ids -> 0)."""
    out = np.zeros(size, dtype=np.int64)
    out[ids] = codes
    return out


def _last_clicks(user_codes: np.ndarray, video_codes: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by (user, time). Per row: the user's previous ``seq_len`` clicks, pre-padded with 0.

    Returns (per-row history, per-row "full history" = the row's own click included, for serving).
    """
    n = user_codes.size
    if n == 0:
        empty = np.zeros((0, seq_len), dtype=np.int64)
        return empty, empty
    new_user = np.r_[True, user_codes[1:] != user_codes[:-1]]
    start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))
    offsets = np.arange(-seq_len, 0)

    def window(end: np.ndarray) -> np.ndarray:
        idx = end[:, None] + offsets[None, :]
        valid = idx >= start[:, None]
        return np.where(valid, video_codes[np.clip(idx, 0, n - 1)], 0).astype(np.int64)

    return window(np.arange(n)), window(np.arange(n) + 1)


# ---- the recommender ------------------------------------------------------------------------------


@dataclass
class RechubRecommender:
    model: torch.nn.Module
    user_codes: Codes
    video_codes: Codes
    scenario_codes: Codes
    user_fields: dict[str, np.ndarray]  # field -> code per encoded user id
    item_fields: dict[str, np.ndarray]  # field -> code per encoded video id
    history: np.ndarray  # (user vocab, seq_len) last train clicks per encoded user, 0-padded in front
    pools: dict[str, np.ndarray]  # scenario -> pool video ids (exposed there in the train rows)
    dim: int = 64  # tower output size
    stats: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 4096
    _item_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _run(self, tower: str, x: dict[str, np.ndarray]) -> np.ndarray:
        self.model.eval()
        n = len(next(iter(x.values())))
        out = []
        with torch.no_grad():
            for s in range(0, n, self.batch_size):
                batch = {k: torch.from_numpy(v[s : s + self.batch_size]) for k, v in x.items()}
                emb = getattr(self.model, tower)(batch)
                out.append(emb.numpy().astype(np.float32, copy=False))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def item_embeddings(self, video_ids: np.ndarray) -> np.ndarray:
        v = self.video_codes(np.asarray(video_ids, dtype=np.int64))
        x = {ITEM_ID: v, **{f: self.item_fields[f][v] for f in ITEM_FIELDS}}
        return self._run("item_tower", x)

    def user_embeddings(self, scenario: str, user_ids: np.ndarray) -> np.ndarray:
        u = self.user_codes(np.asarray(user_ids, dtype=np.int64))
        x = {USER_ID: u, **{f: t[u] for f, t in self.user_fields.items()}}
        x[SCENARIO] = np.full(u.size, self.scenario_codes(np.array([str(scenario)]))[0], dtype=np.int64)
        x[HIST] = self.history[u]
        return self._run("user_tower", x)

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int64 video ids from the scenario's pool, best first (exact inner product), -1 padded."""
        scenario = str(scenario)
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = np.full((user_ids.size, k), -1, dtype=np.int64)
        pool = self.pools.get(scenario, np.empty(0, dtype=np.int64))
        if pool.size == 0 or user_ids.size == 0 or k <= 0:
            return out
        if scenario not in self._item_cache:
            self._item_cache[scenario] = self.item_embeddings(pool)
        scores = self.user_embeddings(scenario, user_ids) @ self._item_cache[scenario].T
        kk = min(k, pool.size)
        if kk < pool.size:
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            # order the kept columns by score, ties by pool position (deterministic)
            order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
            best = np.take_along_axis(part, order, axis=1)
        else:
            best = np.argsort(-scores, axis=1, kind="stable")
        out[:, :kk] = pool[best]
        return out


def throughput(rec: RechubRecommender, cpu: bool = False) -> float:
    """Training rows (positives and sampled negatives) per second of ``MatchTrainer.fit``.

    ``cpu=True``: per second of process CPU time (all threads), which a busy shared machine distorts less.
    """
    return float(rec.stats["samples_per_cpu_s" if cpu else "samples_per_s"])


# ---- training -------------------------------------------------------------------------------------


def train_rechub_dssm(
    train: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    scenarios: list[str],
    negatives: str = "popularity",
    lr: float = EXAMPLE["lr"],
    epochs: int = EXAMPLE["epochs"],
    embed_dim: int = 32,
    batch_size: int = 512,
    seed: int = 0,
    n_neg: int = EXAMPLE["neg_ratio"],
    weight_decay: float = EXAMPLE["weight_decay"],
    seq_len: int = EXAMPLE["seq_max_len"],
    tower_dims: tuple[int, ...] = EXAMPLE["tower_dims"],
    activation: str = EXAMPLE["activation"],
    temperature: float = EXAMPLE["temperature"],
    threads: int = 2,
    progress: bool = False,
) -> RechubRecommender:
    """Train torch-rechub's DSSM (mode 0, their sampler and trainer) on the train rows; see module doc.

    ``scenarios`` = every run scenario (reported ones and ``other``); the model is one mixed model.
    Deterministic for a given ``seed`` (global torch / numpy / random states are restored afterwards).
    """
    SparseFeature, SequenceFeature, DSSM, MatchTrainer, TorchDataset, negative_sample = _import_rechub()
    if negatives not in SAMPLE_METHODS:
        raise ValueError(f"negatives must be one of {sorted(SAMPLE_METHODS)}, got {negatives!r}")
    if epochs < 1 or n_neg < 1 or batch_size < 2:
        raise ValueError("epochs >= 1, n_neg >= 1 and batch_size >= 2 required")
    t_prep = time.perf_counter()
    scenarios = [str(s) for s in scenarios]

    # vocabularies: static tables and the train rows only (never the test window)
    train = train.reset_index(drop=True)
    ucodes = Codes.fit(users[USER_ID].to_numpy(np.int64), train[USER_ID].to_numpy(np.int64))
    vcodes = Codes.fit(items[ITEM_ID].to_numpy(np.int64), train[ITEM_ID].to_numpy(np.int64))
    scodes = Codes.fit(np.array(scenarios, dtype=str), train[SCENARIO].astype(str).to_numpy(dtype=str))

    user_field_names = [c for c in users.columns if c != USER_ID]
    user_fields: dict[str, np.ndarray] = {}
    vocab: dict[str, int] = {USER_ID: ucodes.vocab, ITEM_ID: vcodes.vocab, SCENARIO: scodes.vocab}
    uid = ucodes(users[USER_ID].to_numpy(np.int64))
    for f in user_field_names:
        c = Codes.fit(_as_key(users[f]))
        user_fields[f] = _table(uid, c(_as_key(users[f])), ucodes.vocab)
        vocab[f] = c.vocab
    item_fields: dict[str, np.ndarray] = {}
    vid = vcodes(items[ITEM_ID].to_numpy(np.int64))
    for f in ITEM_FIELDS:
        c = Codes.fit(_as_key(items[f]))
        item_fields[f] = _table(vid, c(_as_key(items[f])), vcodes.vocab)
        vocab[f] = c.vocab

    # positives in time order per user, with their history (generate_seq_feature_match semantics)
    clicks = train[train["is_click"] == 1]
    order = np.lexsort((clicks[ITEM_ID].to_numpy(np.int64), clicks["time_ms"].to_numpy(np.int64),
                        clicks[USER_ID].to_numpy(np.int64)))
    cu = ucodes(clicks[USER_ID].to_numpy(np.int64)[order])
    cv = vcodes(clicks[ITEM_ID].to_numpy(np.int64)[order])
    cs = scodes(clicks[SCENARIO].astype(str).to_numpy(dtype=str)[order])
    hist, hist_incl = _last_clicks(cu, cv, seq_len)
    history = np.zeros((ucodes.vocab, seq_len), dtype=np.int64)
    if cu.size:
        last = np.r_[cu[1:] != cu[:-1], True]
        history[cu[last]] = hist_incl[last]

    rng_states = (random.getstate(), np.random.get_state())
    n_threads = torch.get_num_threads()
    try:
        random.seed(seed)
        np.random.seed(seed)
        torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # negatives: their sampler over the click counts (items sorted by count desc, then id)
            n_pos = cu.size
            cnt_v, cnt = np.unique(cv, return_counts=True)
            by_count = np.lexsort((cnt_v, -cnt))
            items_cnt_order = OrderedDict((int(cnt_v[i]), int(cnt[i])) for i in by_count)
            neg = (np.asarray(negative_sample(items_cnt_order, ratio=n_pos * n_neg,
                                              method_id=SAMPLE_METHODS[negatives]), dtype=np.int64)
                   if n_pos else np.zeros(0, dtype=np.int64))
            # mode 0 rows: each positive, then its n_neg negatives (same user side, label 0)
            rep = np.repeat(np.arange(n_pos), 1 + n_neg)
            item_col = np.empty((n_pos, 1 + n_neg), dtype=np.int64)
            item_col[:, 0] = cv
            item_col[:, 1:] = neg.reshape(n_pos, n_neg)
            item_col = item_col.reshape(-1)
            label = np.tile(np.r_[1.0, np.zeros(n_neg)], n_pos).astype(np.float32)
            u_rows = cu[rep]
            x = {USER_ID: u_rows, **{f: t[u_rows] for f, t in user_fields.items()},
                 SCENARIO: cs[rep], HIST: hist[rep],
                 ITEM_ID: item_col, **{f: t[item_col] for f, t in item_fields.items()}}

            user_features = [SparseFeature(USER_ID, vocab[USER_ID], embed_dim=embed_dim)]
            user_features += [SparseFeature(f, vocab[f], embed_dim=embed_dim) for f in user_field_names]
            user_features += [SparseFeature(SCENARIO, vocab[SCENARIO], embed_dim=embed_dim)]
            user_features += [SequenceFeature(HIST, vocab[ITEM_ID], embed_dim=embed_dim, pooling="mean",
                                              shared_with=ITEM_ID)]
            item_features = [SparseFeature(f, vocab[f], embed_dim=embed_dim) for f in (ITEM_ID, *ITEM_FIELDS)]
            tower = {"dims": list(tower_dims), "activation": activation}
            model = DSSM(user_features, item_features, temperature=temperature,
                         user_params=dict(tower), item_params=dict(tower))

            n_rows = label.size
            if n_rows < 2:
                raise ValueError(f"too few training rows ({n_rows}): need clicks in the train frame")
            dataset = TorchDataset(x, label)
            sampler = torch.utils.data.BatchSampler(
                torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)),
                batch_size=batch_size,
                drop_last=(n_rows % batch_size == 1),  # BatchNorm cannot train on a batch of one
            )
            loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)
            prep_s = time.perf_counter() - t_prep
            with tempfile.TemporaryDirectory() as tmp:
                trainer = MatchTrainer(model, mode=EXAMPLE["mode"], n_epoch=epochs, device="cpu", model_path=tmp,
                                       optimizer_params={"lr": lr, "weight_decay": weight_decay})
                quiet = contextlib.nullcontext() if progress else _silenced()
                t0, c0 = time.perf_counter(), time.process_time()
                with quiet:
                    trainer.fit(loader)
                train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    finally:
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        torch.set_num_threads(n_threads)
    model.eval()

    seen = (n_rows - 1 if n_rows % batch_size == 1 else n_rows) * epochs  # rows the trainer stepped on
    pools = {s: np.unique(train.loc[train[SCENARIO].astype(str) == s, ITEM_ID].to_numpy(np.int64))
             for s in sorted(set(scenarios) | set(train[SCENARIO].astype(str).unique()))}
    stats = {
        "positives": int(n_pos),
        "rows_per_epoch": int(n_rows),
        "epochs": int(epochs),
        "samples_seen": int(seen),
        "positives_seen": int(n_pos * epochs),
        "prep_seconds": round(prep_s, 3),
        "train_seconds": round(train_s, 3),
        "train_cpu_seconds": round(cpu_s, 3),  # process CPU time, all threads: robust to a busy machine
        "samples_per_s": seen / train_s if train_s > 0 else float("nan"),
        "samples_per_cpu_s": seen / cpu_s if cpu_s > 0 else float("nan"),
        "positives_per_s": n_pos * epochs / train_s if train_s > 0 else float("nan"),
        "threads": threads,
        "settings": {
            "negatives": negatives, "sample_method": SAMPLE_METHODS[negatives], "mode": EXAMPLE["mode"],
            "n_neg": n_neg, "lr": lr, "weight_decay": weight_decay, "epochs": epochs, "batch_size": batch_size,
            "embed_dim": embed_dim, "tower_dims": list(tower_dims), "activation": activation,
            "temperature": temperature, "seq_len": seq_len, "seed": seed,
            "user_features": [USER_ID, *user_field_names, SCENARIO, HIST],
            "item_features": [ITEM_ID, *ITEM_FIELDS],
        },
    }
    return RechubRecommender(model=model, user_codes=ucodes, video_codes=vcodes, scenario_codes=scodes,
                             user_fields=user_fields, item_fields=item_fields, history=history, pools=pools,
                             dim=int(tower_dims[-1]), stats=stats)


@contextlib.contextmanager
def _silenced():
    """MatchTrainer prints per epoch and draws tqdm bars; keep library runs and tests quiet."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


# ---- the benchmark on KuaiRand-Pure -----------------------------------------------------------------

REPORTED = ["1", "0", "4", "6", "2"]
TRAIN_DAYS = (20220425, 20220502)
TEST_DAYS = (20220503, 20220505)

# name -> overrides of train_rechub_dssm's defaults
VARIANTS: dict[str, dict[str, Any]] = {
    # their example's negatives, lr, weight decay, epochs, n_neg, towers; our embed_dim 32 / batch 512
    "example": {"negatives": "popularity"},
    # the same, but exactly their example's embedding size and batch size too
    "example_exact": {"negatives": "popularity", "embed_dim": EXAMPLE["embed_dim"],
                      "batch_size": EXAMPLE["batch_size"]},
    "uniform": {"negatives": "uniform", "lr": 1e-3},
}


def load_kuairand(data: Path, store: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    from sass_retrieval.data.features import scenario_map
    from sass_retrieval.data.kuairand import import_kuairand
    from sass_retrieval.data.store import read_interactions, read_items, read_users

    if not (store / "users.parquet").exists():
        import_kuairand(data, store, progress=False)
    train = read_interactions(store, *TRAIN_DAYS)
    test = read_interactions(store, *TEST_DAYS)
    smap = scenario_map(train["scenario"].value_counts(), REPORTED, 1000)
    train["scenario"] = smap.apply(train["scenario"])
    test["scenario"] = smap.apply(test["scenario"])
    return train, test, read_users(store), read_items(store), smap.names


def _write(rows: dict, stats: dict, out: Path | None) -> str:
    from sass_retrieval.evaluate.protocol import format_table

    lines = [format_table(rows), "",
             "| row | train s (wall) | train s (CPU) | rows/epoch | samples/s | samples/CPU-s | positives/s | settings |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row, s in stats.items():
        settings = {k: v for k, v in s["settings"].items() if "features" not in k}
        lines.append(f"| {row} | {s['train_seconds']:.1f} | {s['train_cpu_seconds']:.1f} | {s['rows_per_epoch']:,} | "
                     f"{s['samples_per_s']:,.0f} | {s['samples_per_cpu_s']:,.0f} | {s['positives_per_s']:,.0f} | "
                     f"{json.dumps(settings)} |")
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"results": rows, "stats": stats}, indent=2, default=str))
    return text


def main(argv: list[str] | None = None) -> int:
    from sass_retrieval.evaluate.popular import PopularRecommender
    from sass_retrieval.evaluate.protocol import build_eval_set, evaluate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kuairand_pure")
    p.add_argument("--store", type=Path, default=None, help="canonical store to (re)use; default: a temp dir")
    p.add_argument("--variants", default="example,uniform", help=f"comma list of {sorted(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        train, test, users, items, names = load_kuairand(args.data, store)
    es = build_eval_set(train, test, REPORTED)
    rows = {"popular": evaluate(es, PopularRecommender(train))}
    stats = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        kw = dict(VARIANTS[name], seed=args.seed, threads=args.threads)
        if args.epochs is not None:
            kw["epochs"] = args.epochs
        rec = train_rechub_dssm(train, users, items, names, **kw)
        row = f"rechub_dssm_{name}"
        rows[row] = evaluate(es, rec)
        stats[row] = rec.stats
        print(f"{row}: macro ndcg@50 {rows[row]['macro']['ndcg@50']:.4f}, train {rec.stats['train_seconds']:.1f}s, "
              f"{rec.stats['samples_per_s']:.0f} samples/s", file=sys.stderr, flush=True)
        _write(rows, stats, args.out)  # after every variant: a long run that dies keeps what it finished
    print(_write(rows, stats, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
