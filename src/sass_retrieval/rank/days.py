"""How many training days a model trained on the window's own days needs: the pre-ranker (rank) and the list
re-ranker (rerank) both count features from earlier days only, train on the days after the first, and hold the
newest training day out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MIN_TRAIN_DAYS = 3   # a first day that only feeds the counts, a training day, the held-out day


def off_reason(enabled: bool, train_days: int, switch: str, model: str) -> str | None:
    """Why a stage trains nothing today (None: it trains): switched off by ``switch``, or a window too short to
    train and hold out a day. A short window is not an error: the day is served without ``model``."""
    if not enabled:
        return f"disabled by params {switch}"
    if train_days < MIN_TRAIN_DAYS:
        return (f"the window has {train_days} training day(s); {model} needs {MIN_TRAIN_DAYS} (a first day for the "
                "counts, a training day and a held-out day)")
    return None


def training_days(train_dates: Sequence[int], stage: str) -> list[int]:
    """The window's training days, sorted; refused in one line when there are fewer than MIN_TRAIN_DAYS (the
    stages check :func:`off_reason` first, so this guards direct callers: benchmarks and tests)."""
    dates = sorted(int(d) for d in train_dates)
    if len(dates) < MIN_TRAIN_DAYS:
        raise ValueError(f"the {stage} stage needs >= {MIN_TRAIN_DAYS} training days (a first day for the counts, "
                         f"training days and a held-out day); the window has {len(dates)}")
    return dates


def write_off(out: Path, stage: str, reason: str) -> None:
    """The stage's output when it trains nothing: ``off.json`` with the reason, replacing yesterday's models
    atomically, so every later stage sees the stage was off."""
    from ..atomic import staged_dir, write_json

    with staged_dir(out) as tmp:
        write_json(tmp / "off.json", {stage: reason})
