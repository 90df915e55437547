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


def test_expected_count_mixes_the_exposure_sampler_and_the_click_share() -> None:
    """A row's negatives: ``sampled`` draws from q plus ``in_batch`` other rows' positives drawn by click share;
    the expected count of an item is sampled * q + in_batch * p (its log is the mixed-negative log-Q)."""
    s = NegativeSampler(np.array([1, 3]), np.array([30.0, 10.0]), 1.0).with_clicks(np.array([3, 3, 3, 2]), 5)
    got = s.expected_count(np.array([1, 2, 3]), 8, 4)
    assert np.allclose(got, [8 * 0.75 + 0.0, 0.0 + 4 * 0.25, 8 * 0.25 + 4 * 0.75])
    with pytest.raises(RuntimeError, match="with_clicks"):
        NegativeSampler(np.array([1]), np.array([1.0]), 1.0).expected_count(np.array([1]), 1, 1)
