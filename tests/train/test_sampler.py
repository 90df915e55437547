from __future__ import annotations

import numpy as np
import pytest

from sass_retrieval.train.sampler import NegativeSampler


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_empirical_distribution_matches_exposure_frequency(alpha: float) -> None:
    items = np.array([10, 20, 30, 40])
    exposures = np.array([100.0, 50.0, 25.0, 5.0])
    s = NegativeSampler(items, exposures, alpha)
    drawn, prob = s.sample(np.random.default_rng(0), (200_000,))
    expected = exposures**alpha / (exposures**alpha).sum()
    freq = np.array([(drawn == i).mean() for i in items])
    assert np.abs(freq - expected).max() < 0.005
    assert np.allclose(prob, expected[np.searchsorted(items, drawn)])


def test_empty_space_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        NegativeSampler(np.array([], dtype=np.int64), np.array([]), 1.0)
