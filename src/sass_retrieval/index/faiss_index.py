"""Per-scenario FAISS indexes over item (video) embeddings.

One index is built per scenario over that scenario's candidate pool; serving asks it for the top-k
videos for a batch of user embeddings.

Design choices:

* **Normalised inner product.** The towers emit L2-normalised float32 vectors, so the inner product *is*
  the cosine similarity the model was trained with. Every index here uses ``METRIC_INNER_PRODUCT``
  (IVF quantiser included), so scores are cosines in [-1, 1] whichever kind is built and exact and
  approximate results are directly comparable. ``build_index`` refuses vectors that are not unit length:
  an inner product over unnormalised vectors silently ranks by vector norm (popularity) as well as
  direction, which is a different model from the one that was evaluated.
* **IndexIDMap2.** Scenario pools are subsets of the global catalogue, so the row position inside an
  index means nothing outside it. Wrapping every index in ``IndexIDMap2`` makes ``search`` return our own
  int64 video ids (non-contiguous, as in the store) and stores the id map inside the index file, so a saved
  index cannot drift from a separately saved id array. ``IDMap2`` (rather than ``IDMap``) also keeps the
  reverse map, so ``reconstruct(video_id)`` works for debugging and the id map is checked for duplicates.
* **Flat fallback for tiny pools.** Small, sparse scenarios have pools of a few hundred to a few thousand
  videos. There exact search costs microseconds, while IVF cannot be trained sensibly (k-means needs ~39+
  points per list, otherwise FAISS warns and the lists are noise) and HNSW only adds build time and
  recall loss. So pools below ``index.min_ann_size`` get an exact flat index whatever ``kind`` says,
  and a log line records the substitution.

* **An optional prior column.** ``build_index(..., prior=p)`` appends p (one value per item) as a last
  column after the unit-length check, and ``search`` appends a 1 to queries one dimension short of such an
  index, so the score is cosine + p_i: the per-scenario popularity prior a model chose on its held-out day
  (evaluate.embedding_recommender.serving_prior). The index file carries the column, so serving needs no
  second artefact and cannot apply a prior the index was not built with.

Saved indexes are written atomically (temporary file in the same directory, then ``os.replace``), so a
reader never sees a half-written file and a failed write leaves the previous index in place. A kill leaves
the hidden temporary too (no cleanup runs); the index stage sweeps it on its next start (index.build).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from ..atomic import atomic_path
from ..errors import MissingPrerequisiteError
from ..params_schema import Index

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw")
MIN_POINTS_PER_LIST = 39  # below this FAISS k-means warns that clustering is unreliable
NORM_TOLERANCE = 1e-3


class IndexLoadError(MissingPrerequisiteError, RuntimeError):
    """A saved index is missing or unreadable; ``path`` names the file."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load FAISS index {self.path}: {reason}")


def auto_nlist(n: int, requested: int = 0) -> int:
    """Number of IVF lists: ``requested`` or ~4*sqrt(n), clipped so each list has >= 39 training points."""
    nlist = requested if requested > 0 else int(round(4 * math.sqrt(n)))
    return max(1, min(nlist, n // MIN_POINTS_PER_LIST))


def _as_matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, dim), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} have dimension {x.shape[1]}, index has {dim}")
    return np.ascontiguousarray(x, dtype=np.float32)


def normalize(x: np.ndarray) -> np.ndarray:
    """A float32 copy of ``x`` with unit-length rows (zero rows stay zero)."""
    x = _as_matrix(x, "vectors").copy()
    faiss.normalize_L2(x)
    return x


def _check_normalised(x: np.ndarray) -> None:
    if len(x) == 0:
        return
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if len(bad):
        raise ValueError(
            f"{len(bad)} of {len(x)} vectors are not L2-normalised (e.g. row {bad[0]} has norm "
            f"{norms[bad[0]]:.4f}); normalise them first, e.g. with faiss_index.normalize()"
        )


def _base_index(vectors: np.ndarray, cfg: Index) -> tuple[faiss.Index, str]:
    n, dim = vectors.shape
    kind = cfg.kind
    if kind != "flat" and n < cfg.min_ann_size:
        log.info("pool of %d vectors < min_ann_size=%d: using exact flat index instead of %s",
                 n, cfg.min_ann_size, kind)
        kind = "flat"
    if kind == "flat":
        return faiss.IndexFlatIP(dim), "flat"
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
        return index, "hnsw"
    nlist = auto_nlist(n, cfg.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()  # the IVF index now owns and frees its quantizer
    index.cp.seed = cfg.seed
    index.cp.max_points_per_centroid = cfg.max_train_per_list
    max_train = nlist * cfg.max_train_per_list
    train = vectors
    if n > max_train:  # sample here (reproducibly) rather than let FAISS copy and sample all n
        rng = np.random.default_rng(cfg.seed)
        train = vectors[np.sort(rng.choice(n, size=max_train, replace=False))]
    index.train(train)
    index.nprobe = min(cfg.nprobe, nlist)
    return index, "ivf"


def build_index(vectors: np.ndarray, ids: np.ndarray, cfg: Index, prior: np.ndarray | None = None
                ) -> faiss.Index:
    """Build an inner-product index over L2-normalised ``vectors`` labelled with our int64 ``ids``.

    Returns an ``IndexIDMap2`` around a flat, IVF-flat or HNSW-flat index; pools smaller than
    ``cfg.min_ann_size`` get a flat index whatever ``cfg.kind`` asks for. ``prior``: one additive score per
    item, stored as a last column (module docstring).
    """
    vectors = _as_matrix(vectors, "vectors")
    ids = np.ascontiguousarray(np.asarray(ids).reshape(-1), dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids must be unique")
    if (ids < 0).any():
        raise ValueError("ids must be >= 0 (-1 marks a missing result)")
    _check_normalised(vectors)
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float32).reshape(-1)
        if len(prior) != len(vectors) or not np.isfinite(prior).all():
            raise ValueError(f"prior must hold one finite value per vector ({len(vectors)}), got {len(prior)}")
        vectors = np.ascontiguousarray(np.hstack([vectors, prior[:, None]]))
    base, kind = _base_index(vectors, cfg)
    index = faiss.IndexIDMap2(base)
    index.own_fields = True
    base.this.disown()
    if len(vectors):
        index.add_with_ids(vectors, ids)
    log.debug("built %s index: %d vectors, dim %d", kind, index.ntotal, index.d)
    return index


def describe(index: faiss.Index) -> str:
    """Short human-readable description, e.g. ``ivf(nlist=128,nprobe=16) n=5000 d=64``."""
    base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(base, faiss.IndexIVF):
        kind = f"ivf(nlist={base.nlist},nprobe={base.nprobe})"
    elif isinstance(base, faiss.IndexHNSW):
        kind = f"hnsw(M={base.hnsw.nb_neighbors(1)},efSearch={base.hnsw.efSearch})"
    else:
        kind = "flat"
    return f"{kind} n={index.ntotal} d={index.d}"


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) per query, best first.

    Both arrays have shape (nq, k) even when the index holds fewer than ``k`` vectors (or an approximate
    index finds fewer): missing slots have id -1 and score -inf.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    queries = with_prior_column(index, _as_matrix(queries, "queries"))
    nq = len(queries)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    ids = np.full((nq, k), -1, dtype=np.int64)
    kk = min(k, index.ntotal)
    if kk == 0 or nq == 0:
        return scores, ids
    s, i = index.search(queries, kk)
    missing = i < 0
    s[missing] = -np.inf
    scores[:, :kk] = s
    ids[:, :kk] = i
    return scores, ids


def with_prior_column(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    """``queries`` as the index reads them: with a last column of ones when the index holds a prior column
    (one dimension more than the queries), so every item's prior is added to its inner product once."""
    if queries.shape[1] == index.d - 1:
        queries = np.ascontiguousarray(np.hstack([queries, np.ones((len(queries), 1), np.float32)]))
    return _as_matrix(queries, "queries", dim=index.d)


def recall(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / |exact| (ignoring -1 padding in ``exact_ids``)."""
    hits = total = 0
    for a, e in zip(np.asarray(approx_ids), np.asarray(exact_ids), strict=True):
        e = e[e >= 0]
        total += len(e)
        hits += len(np.intersect1d(a[a >= 0], e, assume_unique=True))
    return hits / total if total else 1.0


def recall_against_exact(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray,
                         queries: np.ndarray, k: int, prior: np.ndarray | None = None) -> float:
    """recall@k of ``index`` against exact flat inner-product search over the same vectors, prior and ids."""
    exact = build_index(vectors, ids, Index(kind="flat"), prior)
    _, exact_ids = search(exact, queries, k)
    _, approx_ids = search(index, queries, k)
    return recall(approx_ids, exact_ids)


def save_index(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` atomically: a temporary file in the same directory, then os.replace."""
    with atomic_path(path, durable=True) as tmp:   # fsynced, and the rename persisted
        faiss.write_index(index, str(tmp))


def load_index(path: Path) -> faiss.Index:
    """Read an index written by ``save_index``; a missing or corrupt file raises IndexLoadError(path)."""
    path = Path(path)
    if not path.is_file():
        raise IndexLoadError(path, "no such file")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:  # faiss raises RuntimeError on truncated or garbled files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexLoadError(path, f"file is truncated or corrupt ({first})") from exc


def set_threads(n: int) -> None:
    """Number of OpenMP threads FAISS uses for building and searching (process-wide)."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    faiss.omp_set_num_threads(int(n))
