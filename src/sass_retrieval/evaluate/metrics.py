"""Ranking metrics with binary relevance, vectorised over users (docs/benchmark.md, "Metrics").

Inputs everywhere:

- ``ranked``: ``(n, m)`` integer matrix of item ids, best first; ``-1`` (any negative id) is an
  empty slot and never a hit. Only the first ``k`` columns count for a metric at ``k``.
- ``truth``: the ground-truth set of each row, either a sequence of ``n`` iterables of item ids
  (e.g. ``list[set[int]]``) or a CSR-like pair ``(indptr, indices)`` of arrays (``indptr`` has
  ``n + 1`` entries; row ``i`` is ``indices[indptr[i]:indptr[i + 1]]``), or any object with
  ``indptr`` and ``indices`` attributes (e.g. a ``scipy.sparse.csr_matrix`` pattern).

|G| is the number of distinct ground-truth items of a row, whether or not they can appear in the
ranked list at all (items outside the candidate pool are misses that still count in |G|).
An item repeated within a ranked row counts at its first position only.
A row with an empty G scores 0 on every metric (the protocol never produces such rows).

Definitions (rank r starts at 1):
  HitRate@K = 1 if |topK ∩ G| >= 1 else 0
  Recall@K  = |topK ∩ G| / |G|
  NDCG@K    = DCG@K / IDCG@K, DCG = sum over hits of 1/log2(r + 1), IDCG over min(|G|, K) hits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np

METRIC_NAMES = ("hit_rate", "recall", "ndcg")

Truth = Sequence[Iterable[int]] | tuple[np.ndarray, np.ndarray] | Any


def as_csr(truth: Truth, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``truth`` to ``(indptr int64[n+1], indices int64[nnz])``."""
    if hasattr(truth, "indptr") and hasattr(truth, "indices"):
        indptr, indices = truth.indptr, truth.indices
    elif isinstance(truth, tuple) and len(truth) == 2 and all(isinstance(a, np.ndarray) for a in truth):
        indptr, indices = truth
    else:
        rows = [r if isinstance(r, set | frozenset | list | tuple | np.ndarray) else list(r) for r in truth]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(indptr[-1]))
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if indptr.ndim != 1 or indptr.size == 0 or indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError("truth: malformed CSR (indptr must start at 0 and end at len(indices))")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("truth: indptr must be non-decreasing")
    if n is not None and indptr.size - 1 != n:
        raise ValueError(f"truth has {indptr.size - 1} rows but ranked has {n}")
    return indptr, indices


def _check_ranked(ranked: np.ndarray, k: int | None = None) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be a 2-D (n, k) matrix, got shape {ranked.shape}")
    if ranked.size and not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked must hold integer item ids, got dtype {ranked.dtype}")
    ranked = ranked.astype(np.int64, copy=False)
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if ranked.shape[1] < k:
            raise ValueError(f"ranked has {ranked.shape[1]} columns, fewer than k={k}")
    return ranked


def membership(ranked: np.ndarray, sets: Truth) -> np.ndarray:
    """Boolean ``(n, m)``: ``ranked[i, j]`` is a (non-negative) member of row ``i``'s set.

    Vectorised: (row, item) pairs are encoded as one int64 key over a dense vocabulary of the
    set items, and looked up with one sorted search.
    """
    ranked = _check_ranked(ranked)
    n = ranked.shape[0]
    indptr, indices = as_csr(sets, n)
    out = np.zeros(ranked.shape, dtype=bool)
    if indices.size == 0 or ranked.size == 0:
        return out
    vocab = np.unique(indices)
    u = np.int64(vocab.size)
    set_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    set_keys = np.unique(set_rows * u + np.searchsorted(vocab, indices))
    pos = np.minimum(np.searchsorted(vocab, ranked), vocab.size - 1)
    in_vocab = (ranked >= 0) & (vocab[pos] == ranked)
    keys = np.arange(n, dtype=np.int64)[:, None] * u + pos
    loc = np.minimum(np.searchsorted(set_keys, keys), set_keys.size - 1)
    out = in_vocab & (set_keys[loc] == keys)
    return out


def _set_sizes(sets: Truth, n: int) -> np.ndarray:
    """Number of distinct items in each row's set."""
    indptr, indices = as_csr(sets, n)
    if indices.size == 0:
        return np.zeros(n, dtype=np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((indices, rows))
    r, it = rows[order], indices[order]
    first = np.ones(r.size, dtype=bool)
    first[1:] = (r[1:] != r[:-1]) | (it[1:] != it[:-1])
    return np.bincount(r[first], minlength=n).astype(np.int64)


def hit_matrix(ranked: np.ndarray, truth: Truth, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(is_hit bool[n, k], |G| int64[n])``; a repeated item is a hit at its first position only."""
    ranked = _check_ranked(ranked, k)[:, :k]
    n = ranked.shape[0]
    is_hit = membership(ranked, truth)
    rows, cols = np.nonzero(is_hit)
    if rows.size:
        # keep the first occurrence of each (row, item); np.nonzero is row-major, so the first
        # index of a key is its smallest column
        keys = ranked[rows, cols]
        order = np.lexsort((cols, keys, rows))
        r, it = rows[order], keys[order]
        dup = np.zeros(r.size, dtype=bool)
        dup[1:] = (r[1:] == r[:-1]) & (it[1:] == it[:-1])
        if dup.any():
            is_hit[rows[order][dup], cols[order][dup]] = False
    return is_hit, _set_sizes(truth, n)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _from_hits(is_hit: np.ndarray, sizes: np.ndarray, k: int) -> dict[str, np.ndarray]:
    h = is_hit[:, :k]
    n_hits = h.sum(axis=1)
    nonempty = sizes > 0
    safe = np.where(nonempty, sizes, 1)
    disc = _discounts(k)
    dcg = h @ disc
    idcg_table = np.concatenate([[1.0], np.cumsum(disc)])  # idcg_table[m] = ideal DCG with m hits
    idcg = idcg_table[np.minimum(safe, k)]
    return {
        "hit_rate": (n_hits > 0).astype(np.float64),
        "recall": np.where(nonempty, n_hits / safe, 0.0),
        "ndcg": np.where(nonempty, dcg / idcg, 0.0),
    }


def hit_rate_at_k(ranked: np.ndarray, truth: Truth, k: int) -> np.ndarray:
    """Per-row HitRate@k (float64[n], values 0/1)."""
    is_hit, sizes = hit_matrix(ranked, truth, k)
    return _from_hits(is_hit, sizes, k)["hit_rate"]


def recall_at_k(ranked: np.ndarray, truth: Truth, k: int) -> np.ndarray:
    """Per-row Recall@k = |topk ∩ G| / |G| (float64[n])."""
    is_hit, sizes = hit_matrix(ranked, truth, k)
    return _from_hits(is_hit, sizes, k)["recall"]


def ndcg_at_k(ranked: np.ndarray, truth: Truth, k: int) -> np.ndarray:
    """Per-row NDCG@k with binary relevance (float64[n])."""
    is_hit, sizes = hit_matrix(ranked, truth, k)
    return _from_hits(is_hit, sizes, k)["ndcg"]


def metrics_at_ks(ranked: np.ndarray, truth: Truth, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """All metrics at all ``ks`` from one hit matrix: ``{"ndcg@50": float64[n], ...}``."""
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks must not be empty")
    is_hit, sizes = hit_matrix(ranked, truth, ks[-1])
    out: dict[str, np.ndarray] = {}
    for k in ks:
        for name, values in _from_hits(is_hit, sizes, k).items():
            out[f"{name}@{k}"] = values
    return out
