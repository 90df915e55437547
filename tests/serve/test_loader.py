"""Loading a version for serving: the user vectors, the checks at load time, the workspace layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def version_a(served_project: dict):
    from sass_retrieval.serve.loader import load_version

    return load_version(served_project["a"], served_project["features"], served_project["store"])


def test_served_user_vectors_are_the_evaluated_ones(version_a) -> None:
    from sass_retrieval.models.embed import embed_users
    from sass_retrieval.serve.query import user_vectors

    for s in version_a.scenarios:
        rows = np.flatnonzero(version_a.warm[s])[:20]
        np.testing.assert_allclose(user_vectors(version_a.models[s], version_a.bank, s, rows),
                                   embed_users(version_a.models[s], version_a.bank, s, rows), atol=1e-6)


def test_warm_users_are_the_users_with_features_in_the_scenario(version_a, served_project: dict) -> None:
    import pandas as pd

    for s in version_a.scenarios:
        ids = pd.read_parquet(served_project["features"] / s / "users.parquet")["user_id"].to_numpy()
        assert set(version_a.bank.user_ids[version_a.warm[s]].tolist()) == set(ids.tolist())


def test_an_index_that_does_not_fit_the_model_is_refused_at_load(served_project: dict, tmp_path: Path) -> None:
    from sass_retrieval.index.faiss_index import build_index, normalize, save_index
    from sass_retrieval.params_schema import Index
    from sass_retrieval.serve.loader import VersionLoadError, load_version

    bad = tmp_path / "bad"
    shutil.copytree(served_project["a"], bad)
    vecs = normalize(np.random.default_rng(0).standard_normal((10, 3)))
    save_index(build_index(vecs, np.arange(10), Index()), bad / "indexes" / "s1" / "index.faiss")
    with pytest.raises(VersionLoadError, match="dimension 3"):
        load_version(bad, served_project["features"], served_project["store"])


def test_a_workspace_serves_the_asked_row(served_project: dict) -> None:
    from sass_retrieval.serve.loader import load_version

    v = load_version(served_project["root"], served_project["features"], served_project["store"],
                     row=served_project["row_b"], scenarios=["s2"])
    assert v.row == served_project["row_b"] and v.scenarios == ["s2"] and v.metrics == {}
