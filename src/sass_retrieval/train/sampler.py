"""Negative sampling within a scenario's exposure space.

Probability of a video is proportional to exposure_count ** alpha: alpha = 1 is the SASS rule
(negatives as often as the platform showed them), alpha = 0 is uniform over the pool.
"""

from __future__ import annotations

import numpy as np


class NegativeSampler:
    def __init__(self, items: np.ndarray, exposures: np.ndarray, alpha: float) -> None:
        if len(items) == 0:
            raise ValueError("negative sampler: the scenario's exposure space is empty")
        w = np.asarray(exposures, dtype=np.float64) ** float(alpha)
        self.items = np.asarray(items, dtype=np.int64)
        self.prob = w / w.sum()
        self.cdf = np.cumsum(self.prob)
        self.cdf[-1] = 1.0
        self.click_share: np.ndarray | None = None   # set by with_clicks: in-batch negatives' proposal
        self._q: np.ndarray | None = None

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Return (item ids, their sampling probabilities) of the given shape."""
        pos = np.searchsorted(self.cdf, rng.random(shape), side="right")
        pos = np.minimum(pos, len(self.items) - 1)
        return self.items[pos], self.prob[pos]

    def with_clicks(self, clicked_items: np.ndarray, n_items: int) -> NegativeSampler:
        """Remember how often each item (rows 0..n_items-1) is a training positive of the scenario: the
        distribution the other rows' positives, used as in-batch negatives, are drawn from."""
        counts = np.bincount(np.asarray(clicked_items, dtype=np.int64), minlength=n_items).astype(np.float64)
        self.click_share = counts / max(counts.sum(), 1.0)
        self._q = np.zeros(n_items)
        self._q[self.items] = self.prob
        return self

    def expected_count(self, items: np.ndarray, sampled: int, in_batch: int) -> np.ndarray:
        """How many times ``items`` are expected among one row's negatives: ``sampled`` draws from the exposure
        sampler plus ``in_batch`` other rows' positives (click share). Its log is the log-Q correction of a
        mixed-negative softmax: every negative, whichever way it was drawn, is corrected by the expected count
        under the mixture of both proposals (Yi et al. 2019; Yang et al. 2020, mixed negative sampling)."""
        if self.click_share is None or self._q is None:
            raise RuntimeError("NegativeSampler.expected_count needs with_clicks() first")
        return sampled * self._q[items] + in_batch * self.click_share[items]
