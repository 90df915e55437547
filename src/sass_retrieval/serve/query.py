"""One answer: the top-k videos for one user in one scenario, from a loaded version.

The HTTP endpoint and ``sass recommend`` both call :func:`recommend`, so the CLI and the service can not
disagree on what a user is shown, nor on when the popular fallback applies.

A request's ``weights`` text holds two kinds of weight, told apart by their separator (:func:`split_weights`):
``goal:weight`` parts are the list re-ranker's goal weights (rerank.goals, e.g. ``click:1,diversity:0.3``;
goals not named take the version's defaults), ``objective=weight`` parts a multi-objective model's objective
weights (models.multitask, e.g. ``click=1,long_view=0.5``). Each kind is refused, in one line, by a version
that has nothing to apply it to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..models.multitask import MultiTaskModel, parse_weights, weighted_user_vector
from ..rows import SPECS
from .loader import MAX_K, LoadedVersion

UNKNOWN_USER = "unknown_user"   # the id is in no table of the bank: a brand-new or mistyped user
COLD_USER = "cold_user"         # the bank knows the id but it has no behaviour in this scenario's window


class UnknownScenario(KeyError):
    """The scenario has no index in the loaded version."""


@dataclass(frozen=True)
class Recommendation:
    items: list[int]            # video ids, best first
    scores: list[float]         # model: the index's retrieval score of each item (with the pre-ranker, in
                                # its order, so not sorted); popular: train-window clicks
    fallback: str | None        # None: the model answered; "popular": the scenario's popular list did
    reason: str | None          # why the fallback applied (UNKNOWN_USER | COLD_USER), else None
    served_by: str              # the scenario whose index answered: the requested one, or the scenario
                                # that serves it on a day it was skipped (index.routing)
    stages: tuple[str, ...] = ("retrieval",)   # what ordered the items: ("retrieval",), ("retrieval",
                                               # "rank") with the pre-ranker, then "rerank" with the list
                                               # re-ranker; ("popular",) for the fallback
    goal_weights: dict[str, float] | None = None   # the list re-ranker's weights this list was built with
    utilities: dict[str, float] | None = None      # each goal's utility of the re-ranked list (rerank.goals)


class WeightsNotSupported(ValueError):
    """Objective weights were given for a version whose model has a single objective, or goal weights for a
    version without a list re-ranker."""


class BadGoalWeights(ValueError):
    """Goal weights the list re-ranker refuses: an unknown goal, a weight outside [0, 1], not goal:weight."""


def split_weights(text: str | None) -> tuple[str | None, str | None]:
    """(objective weights, goal weights) of a request's ``weights`` text: parts with ``=`` are objective
    weights, the others goal weights (``goal:weight``); None for a kind the text does not hold."""
    if not text:
        return None, None
    parts = [p for p in text.split(",") if p.strip()]
    objective = [p for p in parts if "=" in p]
    goals = [p for p in parts if "=" not in p]
    return (",".join(objective) or None), (",".join(goals) or None)


def goal_weights(version: LoadedVersion, text: str | None) -> Any:
    """The list re-ranker's weight vector for a request (its defaults where ``text`` names no weight); None for
    a version without one. Refused in one line: goal weights for a version without a re-ranker, an unknown
    goal, a weight outside [0, 1]."""
    from ..errors import BadInputError

    lr = version.list_reranker
    if lr is None:
        if text:
            raise WeightsNotSupported(f"weights: goal weights ({text}) apply to a version with the list re-ranker; "
                                      f"version {version.run_id} serves stages {version.stages}")
        return None
    from ..rerank.goals import parse_weights as parse_goal_weights

    try:
        return lr.weights(parse_goal_weights(text), "weights")
    except BadInputError as exc:
        raise BadGoalWeights(str(exc)) from None


def request_weights(model: Any, weights: Mapping[str, float] | str, row: str) -> dict[str, float]:
    """A request's objective weights, checked against the model that will answer it: every objective of a
    multi-task model (models.multitask) gets a weight; a single-objective model refuses them."""
    if not isinstance(model, MultiTaskModel):
        multi = ", ".join(r.name for r in SPECS if r.multi_objective)
        raise WeightsNotSupported(f"weights apply to a multi-objective model (row {multi}); this version serves "
                                  f"row {row!r}")
    return parse_weights(weights, model.objectives)


def user_vectors(model: Any, bank: Any, scenario: str, rows: np.ndarray,
                 weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The user tower's vectors for bank ``rows`` in ``scenario``: what evaluate's ``embed_users`` computes,
    minus its per-call ``model.eval()`` (a walk over every module; a served model is loaded in eval mode
    and never trained) and under ``inference_mode``, a stricter ``no_grad``: both are pure overhead on one
    user's embedding, the largest part of a request; tests check both give the same vectors.

    ``weights`` (:func:`request_weights`' result, a multi-task model only): this request's objective weights.
    They are applied to the per-objective vectors here, never written into the shared model, so concurrent
    requests with different weights can not see each other's."""
    import torch

    batch = bank.serving_user_batch(rows, scenario)
    with torch.inference_mode():
        if weights is None:
            return model.user_vectors(batch)[0].numpy().astype(np.float32)
        per_objective, _ = model.objective_vectors(batch, "user")
        query = weighted_user_vector(per_objective, torch.tensor([weights[o] for o in model.objectives]))
        return query.numpy().astype(np.float32)


def named_weights(vector: Any) -> dict[str, float]:
    """The re-ranker's weight vector (rerank.goals.WEIGHTED order) as {goal: weight}."""
    from ..rerank.goals import WEIGHTED

    return {g: round(float(x), 6) for g, x in zip(WEIGHTED, vector.tolist(), strict=True)}


def recommend(version: LoadedVersion, user: int, scenario: str, k: int,
              weights: Mapping[str, float] | str | None = None) -> Recommendation:
    """The model's top-k for a user with features in ``scenario``; the scenario's popular list otherwise.

    A user without behaviour in the scenario would be embedded from static profile fields alone; the
    popular list is the evaluated baseline for exactly those users, so it is what they get, and the answer
    says so (``fallback``/``reason``) rather than silently mixing two kinds of scores.

    With a pre-ranker (``version.reranker``), the index returns max(rank_top_k, k) candidates, the pre-ranker
    orders them and the first k are served: rank.cascade.CascadeRecommender's order, candidate for
    candidate (the serving scenario's statistics and scenario embedding, as evaluation scores it).

    With a list re-ranker (``version.list_reranker``), that upstream order's first max(candidates, k) are
    fetched, the re-ranker builds its list from the first ``candidates`` under the request's goal weights, and
    the answer is the list, then (k > its length) the other candidates in upstream order:
    rerank.stage.RerankRecommender's order over the same upstream. ``weights``: a text (goal and objective
    weights, :func:`split_weights`) or a mapping of objective weights."""
    from ..index.faiss_index import search

    if scenario not in version.routes:
        raise UnknownScenario(scenario)
    serving = version.routes[scenario]
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    model = version.models[serving]
    goals_text = None
    if isinstance(weights, str):
        weights, goals_text = split_weights(weights)
    # both checked before the popular fallback: a bad request is refused for every user
    w_goals = goal_weights(version, goals_text)
    if weights is not None:
        weights = request_weights(model, weights, version.row)
    row = version.user_row(user)
    if row is None or not version.warm[serving][row]:
        pop = version.popular[serving]
        return Recommendation(items=pop.ids[:k].tolist(), scores=[float(c) for c in pop.clicks[:k]],
                              fallback="popular", reason=UNKNOWN_USER if row is None else COLD_USER,
                              served_by=serving, stages=("popular",))
    uv = user_vectors(model, version.bank, serving, np.array([row], dtype=np.int64), weights)
    reranker, lr = version.reranker, version.list_reranker
    users = np.array([user], dtype=np.int64)
    upstream = max(lr.candidates, k) if lr is not None else k
    scores, ids = search(version.indexes[serving], uv,
                         max(version.rank_top_k, upstream) if reranker is not None else upstream)
    if reranker is not None:
        order = reranker.order(serving, users, ids, scores)
        scores = np.take_along_axis(scores, order, axis=1)[:, :upstream]
        ids = np.take_along_axis(ids, order, axis=1)[:, :upstream]
    utilities = None
    if lr is not None:
        from ..rerank.stage import merge_head

        ids = ids.astype(np.int64)
        head, util = lr.rerank(serving, users, ids[:, : lr.candidates], scores[:, : lr.candidates], w_goals)
        scores, ids = merge_head(head, scores, ids, k)
        utilities = {g: round(float(v[0]), 6) for g, v in util.items()}
    keep = ids[0] >= 0
    used = None if w_goals is None else named_weights(w_goals)
    return Recommendation(items=ids[0][keep].tolist(), scores=[round(float(s), 6) for s in scores[0][keep]],
                          fallback=None, reason=None, served_by=serving, stages=tuple(version.stages),
                          goal_weights=used, utilities=utilities)


def answer(version: LoadedVersion, rec: Recommendation, user: int, scenario: str, source: Path,
           weights: str | None) -> dict[str, Any]:
    """``sass recommend``'s output: the request, where it was answered from, and the ranked items (rank from
    1, video id, score to 5 places)."""
    items = [{"rank": r + 1, "video_id": v, "score": round(s, 5)}
             for r, (v, s) in enumerate(zip(rec.items, rec.scores, strict=True))]
    return {"user": user, "scenario": scenario, "source": str(source), "row": version.row,
            "version": version.run_id, "fallback": rec.fallback, "reason": rec.reason,
            "served_by": rec.served_by, "stages": list(rec.stages), "weights": weights,
            "goal_weights": rec.goal_weights, "utilities": rec.utilities, "items": items}
