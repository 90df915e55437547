"""The ``popular`` reference row: per-scenario most-clicked videos in the train window (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class PopularRecommender:
    """Rank a scenario's pool by train click count in that scenario.

    Ties are broken by exposure count in that scenario (more first), then by video id (smaller
    first). The ranking covers exactly the videos exposed in the scenario in the train frame, i.e.
    the scenario's candidate pool, so nothing outside the pool is ever returned. Every user gets
    the same list.
    """

    def __init__(self, train: pd.DataFrame):
        missing = [c for c in ("video_id", "scenario", "is_click") if c not in train.columns]
        if missing:
            raise ValueError(f"train frame is missing column(s) {missing}")
        df = pd.DataFrame(
            {
                "scenario": train["scenario"].astype(str).to_numpy(dtype=object),
                "video_id": train["video_id"].to_numpy(dtype=np.int64),
                "is_click": (train["is_click"].to_numpy() == 1).astype(np.int64),
            }
        )
        stats = (
            df.groupby(["scenario", "video_id"], sort=False)["is_click"]
            .agg(clicks="sum", exposures="size")
            .reset_index()
            .sort_values(
                ["scenario", "clicks", "exposures", "video_id"],
                ascending=[True, False, False, True],
                kind="mergesort",
            )
        )
        self.rankings: dict[str, np.ndarray] = {
            str(s): g["video_id"].to_numpy(dtype=np.int64) for s, g in stats.groupby("scenario", sort=False)
        }
        self.clicks: dict[str, np.ndarray] = {
            str(s): g["clicks"].to_numpy(dtype=np.int64) for s, g in stats.groupby("scenario", sort=False)
        }

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int64: the scenario's k most-clicked pool videos for every user, -1 padded."""
        n = len(user_ids)
        top = np.full(k, -1, dtype=np.int64)
        # a scenario without train exposures has an empty pool: every slot stays empty
        ranking = self.rankings.get(str(scenario), np.empty(0, dtype=np.int64))[:k]
        top[: ranking.size] = ranking
        return np.broadcast_to(top, (n, k)).copy()
