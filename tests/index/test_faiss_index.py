from __future__ import annotations

import logging

import faiss
import numpy as np
import pydantic
import pytest

from sass_retrieval.index import faiss_index as fi
from sass_retrieval.index.faiss_index import (
    IndexLoadError,
    build_index,
    load_index,
    recall_against_exact,
    save_index,
    search,
)
from sass_retrieval.params_schema import Index, Params

DIM = 32


def clustered(n: int, dim: int = DIM, clusters: int = 50, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors from a Gaussian mixture: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(clusters, size=n)]
    x = x + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return fi.normalize(x)


def sparse_ids(n: int, seed: int = 1) -> np.ndarray:
    """Non-contiguous, shuffled int64 ids well above 2**32."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64) * 7 + 2**33
    return ids


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    return clustered(5000), sparse_ids(5000)


@pytest.fixture(scope="module")
def same_dist_queries(pool) -> np.ndarray:
    vectors, _ = pool
    # queries near the stored vectors, as user embeddings are near the items they click
    rng = np.random.default_rng(7)
    base = vectors[rng.choice(len(vectors), size=200, replace=False)]
    return fi.normalize(base + 0.2 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(DIM))


def brute_force(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    sims = queries @ vectors.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def test_flat_matches_numpy_brute_force_and_returns_our_ids(pool, same_dist_queries):
    vectors, ids = pool
    index = build_index(vectors, ids, Index(kind="flat"))
    assert isinstance(index, faiss.IndexIDMap2)
    scores, got = search(index, same_dist_queries, 10)
    want_scores, want_ids = brute_force(vectors, ids, same_dist_queries, 10)
    assert got.dtype == np.int64 and got.shape == (200, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # compare as sets per row (near-ties may swap order), and require at least nearly all rows identical
    assert all(set(a) == set(b) for a, b in zip(got, want_ids, strict=True))
    assert (got == want_ids).mean() > 0.99
    assert set(np.unique(got)) <= set(ids.tolist())
    assert (got >= 2**33).all()  # our ids, not row positions


def test_scores_are_cosines(pool):
    vectors, ids = pool
    index = build_index(vectors, ids, Index())
    scores, got = search(index, vectors[:5], 1)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)  # each vector is its own best match
    np.testing.assert_array_equal(got[:, 0], ids[:5])


@pytest.mark.parametrize(
    "cfg",
    [
        Index(kind="ivf", nprobe=16),
        Index(kind="hnsw", hnsw_m=16, ef_construction=100, ef_search=64),
    ],
    ids=["ivf", "hnsw"],
)
def test_ann_recall_at_10(pool, same_dist_queries, cfg):
    vectors, ids = pool
    index = build_index(vectors, ids, cfg)
    assert cfg.kind in fi.describe(index)
    r = recall_against_exact(index, vectors, ids, same_dist_queries, 10)
    assert r >= 0.9, f"{cfg.kind} recall@10 = {r:.3f}"
    _, got = search(index, same_dist_queries, 10)
    assert set(np.unique(got[got >= 0])) <= set(ids.tolist())


def test_ivf_nlist_auto_is_clipped_to_training_points():
    assert fi.auto_nlist(1_000_000) == 4000
    assert fi.auto_nlist(5000) == 5000 // 39  # 4*sqrt(5000)=283 would leave < 39 points per list
    assert fi.auto_nlist(10) == 1
    assert fi.auto_nlist(100_000, requested=64) == 64


def test_tiny_pool_falls_back_to_flat(caplog):
    vectors, ids = clustered(300), sparse_ids(300)
    with caplog.at_level(logging.INFO, logger=fi.__name__):
        index = build_index(vectors, ids, Index(kind="ivf"))
    assert fi.describe(index).startswith("flat")
    assert "flat" in caplog.text and "ivf" in caplog.text
    r = recall_against_exact(index, vectors, ids, vectors[:20], 10)
    assert r == 1.0


def test_k_larger_than_pool_pads():
    vectors, ids = clustered(7), sparse_ids(7)
    index = build_index(vectors, ids, Index(kind="hnsw"))
    scores, got = search(index, vectors[:3], 10)
    assert got.shape == scores.shape == (3, 10)
    assert (got[:, :7] >= 0).all() and (got[:, 7:] == -1).all()
    assert np.isfinite(scores[:, :7]).all() and np.isneginf(scores[:, 7:]).all()
    assert all(set(row[:7]) == set(ids.tolist()) for row in got)


def test_empty_pool_returns_only_padding():
    index = build_index(np.zeros((0, DIM), np.float32), np.zeros(0, np.int64), Index())
    scores, got = search(index, clustered(2), 3)
    assert (got == -1).all() and np.isneginf(scores).all()


def test_rejects_bad_input(pool):
    vectors, ids = pool
    with pytest.raises(ValueError, match="normalised"):
        build_index(vectors * 2, ids, Index())
    with pytest.raises(ValueError, match="unique"):
        build_index(vectors[:3], np.array([1, 1, 2]), Index())
    with pytest.raises(ValueError, match="ids"):
        build_index(vectors[:3], ids[:2], Index())
    index = build_index(vectors[:10], ids[:10], Index())
    with pytest.raises(ValueError, match="dimension"):
        search(index, np.ones((1, DIM + 1), np.float32), 3)


def test_the_index_config_is_the_params_section_with_its_checks():
    assert Params().index == Index()
    cfg = Index(kind="ivf", nprobe=8)
    assert cfg.kind == "ivf" and cfg.nprobe == 8 and cfg.hnsw_m == Index().hnsw_m
    with pytest.raises(pydantic.ValidationError, match="kind"):
        Index(kind="lsh")
    with pytest.raises(pydantic.ValidationError, match="nprobes"):
        Index(nprobes=8)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, pool, same_dist_queries, kind):
    vectors, ids = pool
    index = build_index(vectors, ids, Index(kind=kind, nprobe=8, ef_search=40))
    before = search(index, same_dist_queries, 20)
    path = tmp_path / "nested" / f"{kind}.faiss"
    save_index(index, path)
    loaded = load_index(path)
    assert fi.describe(loaded) == fi.describe(index)  # search params (nprobe, efSearch) survive
    after = search(loaded, same_dist_queries, 20)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind


def test_truncated_file_raises_index_load_error(tmp_path, pool):
    vectors, ids = pool
    path = tmp_path / "s0.faiss"
    save_index(build_index(vectors, ids, Index(kind="ivf")), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexLoadError, match="s0.faiss") as info:
        load_index(path)
    assert info.value.path == path


def test_missing_file_raises_index_load_error(tmp_path):
    with pytest.raises(IndexLoadError, match="nope.faiss"):
        load_index(tmp_path / "nope.faiss")


def test_garbage_file_raises_index_load_error(tmp_path):
    path = tmp_path / "junk.faiss"
    path.write_bytes(b"not an index at all" * 10)
    with pytest.raises(IndexLoadError, match="junk.faiss"):
        load_index(path)


def test_failed_save_leaves_existing_file_intact(tmp_path, pool, same_dist_queries, monkeypatch):
    vectors, ids = pool
    path = tmp_path / "s1.faiss"
    old = build_index(vectors[:1000], ids[:1000], Index())
    save_index(old, path)
    old_bytes = path.read_bytes()

    def half_write_then_fail(index, filename):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", half_write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_index(build_index(vectors, ids, Index()), path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # temp file cleaned up
    loaded = load_index(path)
    assert loaded.ntotal == 1000
    np.testing.assert_array_equal(search(loaded, same_dist_queries, 5)[1], search(old, same_dist_queries, 5)[1])


def test_set_threads():
    before = faiss.omp_get_max_threads()
    try:
        fi.set_threads(1)
        assert faiss.omp_get_max_threads() == 1
    finally:
        faiss.omp_set_num_threads(before)
    with pytest.raises(ValueError):
        fi.set_threads(0)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_prior_column_adds_each_items_prior_to_its_inner_product(pool, same_dist_queries, kind):
    """build_index(prior=p) scores cosine + p_i, the queries keep the model's dimension (search adds the 1),
    and a prior large enough for one item puts it first for every query."""
    vectors, ids = pool
    rng = np.random.default_rng(3)
    prior = (0.2 * rng.random(len(ids))).astype(np.float32)
    index = build_index(vectors, ids, Index(kind=kind, hnsw_m=16, ef_search=256), prior)
    assert index.d == DIM + 1
    scores, got = search(index, same_dist_queries, 10)
    sims = same_dist_queries @ vectors.T + prior[None, :]
    want = ids[np.argsort(-sims, axis=1, kind="stable")[:, :10]]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)]) > (0.999 if kind == "flat" else 0.9)
    pos = {v: i for i, v in enumerate(ids)}
    exact = sims[np.arange(len(got))[:, None], np.vectorize(pos.get)(got)]
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    boosted = prior.copy()
    boosted[17] = 5.0
    _, top = search(build_index(vectors, ids, Index(kind="flat"), boosted), same_dist_queries, 1)
    assert (top[:, 0] == ids[17]).all()
    assert recall_against_exact(index, vectors, ids, same_dist_queries, 10, prior) > 0.9


def test_a_prior_must_hold_one_finite_value_per_vector(pool):
    vectors, ids = pool
    with pytest.raises(ValueError, match="one finite value per vector"):
        build_index(vectors[:10], ids[:10], Index(), np.zeros(9, np.float32))
    with pytest.raises(ValueError, match="one finite value per vector"):
        build_index(vectors[:2], ids[:2], Index(), np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="dimension"):   # two short is a wrong model, not a prior column
        search(build_index(vectors[:10], ids[:10], Index()), vectors[:3, :-2], 5)
