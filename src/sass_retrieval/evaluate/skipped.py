"""Scenarios skipped today (too few training rows): visible in the metrics with their size, never silently absent.

A skipped scenario has no metric row; metrics.json lists it under ``skipped`` with its reason, the scenario
whose index serves it, and the evaluation pairs it would have had, and the macro averages say they are
over the reported scenarios only.
"""

from __future__ import annotations

import pandas as pd

from ..data.features import SkippedScenario
from .protocol import build_eval_set


def skipped_summary(skipped: dict[str, SkippedScenario], train: pd.DataFrame,
                    raw_test: pd.DataFrame) -> dict[str, dict]:
    """metrics.json's ``skipped``: each skipped scenario's marker plus ``eval_pairs``, the evaluation pairs its
    raw test rows would have given (the requests its fallback serves in this test window)."""
    if not skipped:
        return {}
    names = list(skipped)
    test = raw_test[raw_test["scenario"].astype(str).isin(names)]
    pairs = build_eval_set(train, test, names).summary()
    return {s: {**sk.to_json(), "eval_pairs": pairs[s]["pairs"]} for s, sk in skipped.items()}


def macro_note(reported: list[str], skipped: dict[str, dict]) -> str:
    """One line saying what the macro averages cover, for table.md and metrics.json."""
    note = f"macro = mean over the reported scenarios ({', '.join(reported) or 'none'})"
    if skipped:
        note += "; skipped today, not in the macro: " + ", ".join(
            f"{s} ({d['reason']}; served by {d['served_by']}; {d['eval_pairs']} eval pairs)" for s, d in skipped.items())
    return note
