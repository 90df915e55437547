"""A small exposure log whose clicks depend on user x tag (the planted signal the pre-ranker must find)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SCENARIOS = ("a", "b", "c")


def make_items(n_videos: int = 300, n_tags: int = 12, n_authors: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tag = rng.integers(0, n_tags, n_videos)
    tag[rng.random(n_videos) < 0.05] = -1
    duration = rng.lognormal(10.5, 1.0, n_videos)
    duration[rng.random(n_videos) < 0.05] = np.nan
    return pd.DataFrame({
        "video_id": np.arange(1000, 1000 + n_videos, dtype=np.int64),
        "author_id": rng.integers(0, n_authors, n_videos).astype(np.int64),
        "tag": tag.astype(np.int64),
        "video_type": pd.array(rng.choice(["NORMAL", "AD"], n_videos), dtype="string"),
        "upload_type": pd.array(rng.choice(["ShortImport", "Web", "Camera"], n_videos), dtype="string"),
        "video_duration_ms": duration,
    })


def make_frame(items: pd.DataFrame, n_users: int = 120, days: int = 5, rows_per_day: int = 2000,
               seed: int = 0, start: int = 20220501) -> pd.DataFrame:
    """Exposures over ``days`` days; a user clicks a liked tag's video with p=0.6, another with p=0.05."""
    rng = np.random.default_rng(seed + 1)
    n_tags = int(items["tag"].max()) + 1
    liked = rng.random((n_users, n_tags)) < 0.25
    parts = []
    for day in range(days):
        n = rows_per_day
        user = rng.integers(0, n_users, n)
        vi = rng.integers(0, len(items), n)
        tag = items["tag"].to_numpy()[vi]
        like = np.where(tag >= 0, liked[user, np.maximum(tag, 0)], False)
        click = rng.random(n) < np.where(like, 0.6, 0.05)
        parts.append(pd.DataFrame({
            "user_id": (user + 1).astype(np.int64),
            "video_id": items["video_id"].to_numpy()[vi],
            "scenario": pd.array(rng.choice(SCENARIOS, n, p=[0.6, 0.3, 0.1]), dtype="string"),
            "date": np.full(n, start + day, dtype=np.int32),
            "is_click": click.astype(np.int8),
        }))
    return pd.concat(parts, ignore_index=True)


def zero_score(scenario: str, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    return np.zeros(len(users), dtype=np.float32)
