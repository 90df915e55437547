"""The pre-ranker's training rows as the cascade meets them: retrieval's candidates, labelled by the day's clicks.

COLD trains on exposures: among what was shown, which was clicked. A cascade's pre-ranker is applied to
retrieval's top-K instead, where most candidates were never shown to the user, and the protocol asks which
candidates the user will click at all: a click needs an exposure first, so "will this be shown and clicked" is
the question, and a model trained on exposures only has never seen a candidate that was not shown. Here each
(user, scenario) with a click on training day d becomes one request: the row's retrieval top ``top_k`` for the
user, without the videos the user clicked before d (the protocol drops them from the ranked list too), each
labelled 1 when the user clicked it in that scenario on d; all positives and ``negatives`` sampled non-clicked
candidates per request are kept. Features come from the days before d only (rank.features), as for exposures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .features import LABEL, ItemTable, RankStats, feature_matrix

Retrieve = Callable[[str, np.ndarray, int], tuple[np.ndarray, np.ndarray]]   # (scenario, users, k) -> (scores, ids)


def _keys(users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """One int64 per (user, video): ids of the store fit in 32 bits each."""
    return (np.asarray(users, np.int64) << 32) | (np.asarray(videos, np.int64) & 0xFFFFFFFF)


def request_rows(retrieve: Retrieve, scenario: str, users: np.ndarray, top_k: int, clicked_before: np.ndarray,
                 clicked_today: np.ndarray, negatives: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, videos, retrieval scores, labels) of one scenario's requests of one day.

    ``clicked_before`` / ``clicked_today``: sorted (user, video) keys (:func:`_keys`) of the user's clicks before
    the day (any scenario) and on it in this scenario."""
    owners = clicked_before >> 32   # sorted: the keys are
    per_user = np.searchsorted(owners, users, side="right") - np.searchsorted(owners, users, side="left")
    extra = int(min(per_user.max(initial=0), 1000))   # asked for more, as the protocol asks, then dropped
    scores, ids = retrieve(scenario, users, top_k + extra)
    flat_u = np.repeat(users, ids.shape[1])
    keys = _keys(flat_u, ids.reshape(-1))
    seen = np.isin(keys, clicked_before) | (ids.reshape(-1) < 0)
    keep = ~seen.reshape(ids.shape)
    rank = np.cumsum(keep, axis=1)   # a candidate's place once the earlier clicks are removed
    keep &= rank <= top_k
    label = np.isin(keys, clicked_today).reshape(ids.shape) & keep
    # every positive, and up to `negatives` sampled negatives per request
    noise = rng.random(ids.shape)
    noise[~keep | label] = np.inf
    order = np.argsort(noise, axis=1)
    chosen = np.zeros(ids.shape, dtype=bool)
    n_neg = min(negatives, ids.shape[1])
    np.put_along_axis(chosen, order[:, :n_neg], True, axis=1)
    chosen &= keep & ~label
    chosen |= label
    r, c = np.nonzero(chosen)
    return users[r], ids[r, c], scores[r, c].astype(np.float32), label[r, c].astype(np.int8)


def candidate_rows(frame: pd.DataFrame, items: pd.DataFrame | ItemTable, days: Sequence[int], retrieve: Retrieve,
                   top_k: int, negatives: int, seed: int, extra_labels: Sequence[str] = ()) -> pd.DataFrame:
    """Requests of each day in ``days`` (a day needs an earlier one in ``frame`` for its features), with the
    columns of rank.features.training_rows: every feature, ``is_click``, scenario, user_id, video_id, date.
    ``extra_labels`` (frame columns, e.g. is_like) label the same rows by that event on the day in the scenario
    (the re-ranker's evaluator predicts several events per candidate)."""
    table = items if isinstance(items, ItemTable) else ItemTable.from_items(items)
    ordered = frame.sort_values("date", kind="stable").reset_index(drop=True)
    dates = ordered["date"].to_numpy(np.int64)
    rng = np.random.default_rng(seed)
    parts = []
    for d in sorted({int(x) for x in days}):
        start, stop = np.searchsorted(dates, d, side="left"), np.searchsorted(dates, d, side="right")
        if start == 0 or stop == start:
            continue
        history = ordered.iloc[:start]
        stats = RankStats.from_frame(history, table)
        hist_clicks = history[history[LABEL] == 1]
        before = np.unique(_keys(hist_clicks["user_id"].to_numpy(), hist_clicks["video_id"].to_numpy()))
        whole_day = ordered.iloc[start:stop]
        day = whole_day[whole_day[LABEL] == 1]
        for scenario, part in day.groupby(day["scenario"].astype(str), sort=True):
            users = np.unique(part["user_id"].to_numpy(np.int64))
            today = np.unique(_keys(part["user_id"].to_numpy(), part["video_id"].to_numpy()))
            u, v, score, label = request_rows(retrieve, str(scenario), users, top_k, before, today, negatives, rng)
            if not len(u):
                continue
            feats = pd.DataFrame(feature_matrix(stats, str(scenario), u, v, score))
            feats["scenario"] = str(scenario)
            feats["user_id"], feats["video_id"], feats["date"], feats[LABEL] = u, v, d, label
            in_scenario = whole_day[whole_day["scenario"].astype(str) == str(scenario)]
            for col in extra_labels:
                hit = in_scenario[in_scenario[col] == 1]
                feats[col] = np.isin(_keys(u, v), _keys(hit["user_id"].to_numpy(), hit["video_id"].to_numpy())
                                     ).astype(np.int8)
            parts.append(feats)
    if not parts:
        raise ValueError("no training requests: no day of the window has clicks and an earlier day")
    out = pd.concat(parts, ignore_index=True)
    out["scenario"] = out["scenario"].astype("string")
    return out
