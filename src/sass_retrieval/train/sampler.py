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

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Return (item ids, their sampling probabilities) of the given shape."""
        pos = np.searchsorted(self.cdf, rng.random(shape), side="right")
        pos = np.minimum(pos, len(self.items) - 1)
        return self.items[pos], self.prob[pos]
