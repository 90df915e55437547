"""Load one model version for serving: user tower, feature bank, FAISS indexes and popular lists, once.

Loading torch, the bank and every index is slow; answering one user is one user vector and one search.
So a server (and ``sass recommend``) loads a version once, into a frozen :class:`LoadedVersion`, and every
request reads that object only. A new version is loaded aside into a new object and swapped in whole
(see ``serve.service``), so nothing here is ever mutated after :func:`load_version` returns.

Two layouts are understood:

* a published version (``<publish.dir>/versions/<run_id>/``): ``models/<row>/`` (``model.pt``, or per-scenario checkpoints: ``models.checkpoint.row_checkpoint``),
  ``indexes/<scenario>/index.faiss``, ``served.json`` naming the row, ``metrics.json``, and with the rank
  stage on, the row's pre-ranker ``rank/<row>/`` with the statistics it reads, ``rank/stats/``; with the
  rerank stage on, the row's list re-ranker ``rerank/<row>/`` and its statistics ``rerank/stats/``;
* a workspace (the project folder after ``dvc repro``): ``models/<row>/``,
  ``indexes/<row>/<scenario>/index.faiss``, the rank stage's ``models/rank/<row>/`` and
  ``models/rank/stats/``, and the rerank stage's ``models/rerank/<row>/`` and ``models/rerank/stats/``
  (``sass recommend --from .``).

A version with a pre-ranker serves the cascade the publish gate measured (rank.cascade): retrieval's top
``rank.top_k`` (served.json's, or the workspace's params.yaml), rescored, the first k returned. A version
with a list re-ranker (rerank.stage.ListReranker) turns the first ``candidates`` of that order into its list
under the request's goal weights; asked for more than the list holds, the other candidates follow in the
upstream order (rerank.stage.RerankRecommender).

The feature bank (the users' per-scenario histories and counts) is not part of a version: it is read from
the workspace's split output (``data/features``) and the store's static tables, hashed with the bucket
sizes of the loaded model's own config, so a model always sees ids hashed the way it was trained.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..rows import CANDIDATE

log = logging.getLogger(__name__)

MAX_K = 1000            # the largest k a request may ask for; popular lists are cut to this length
METRICS_FILE = "metrics.json"
RANK_OFF = "off.json"   # models/rank/off.json: the rank stage ran with rank.enabled false (no pre-ranker);
                        # models/rerank/off.json likewise for the rerank stage (no list re-ranker)


class VersionLoadError(RuntimeError):
    """A version (or the features it is served with) can not be loaded; the message says which file and why."""


@dataclass(frozen=True)
class Popular:
    """A scenario's fallback list: its pool ranked by train-window clicks, then exposures, then smaller id."""

    ids: np.ndarray      # int64 video ids, best first, at most MAX_K
    clicks: np.ndarray   # int64 train-window clicks of each, aligned with ids


@dataclass(frozen=True)
class LoadedVersion:
    """Everything a request reads, loaded once. Frozen: a request holding it never sees it change."""

    path: Path                          # the version folder (or workspace) it was loaded from
    run_id: str                         # the version folder's name (publish's run id)
    row: str                            # the reference row served (served.json)
    models: Mapping[str, Any]           # serving scenario -> its model in eval mode (one shared RetrievalModel,
                                        # or one per scenario: models.checkpoint.row_checkpoint)
    bank: Any                           # FeatureBank, serving_only
    indexes: Mapping[str, Any]          # scenario -> faiss index (IndexIDMap2 over video ids)
    routes: Mapping[str, str]           # requested scenario -> the scenario whose index and tower serve it
                                        # (itself, or served_by of a scenario skipped that day)
    index_kinds: Mapping[str, str]      # scenario -> faiss_index.describe(...)
    popular: Mapping[str, Popular]      # scenario -> fallback list
    warm: Mapping[str, np.ndarray]      # scenario -> bool per bank user row: has behaviour in that scenario
    metrics: Mapping[str, Any]          # the served row's metrics from the version's metrics.json (may be empty)
    window: Mapping[str, Any]           # the evaluation window recorded in metrics.json (may be empty)
    loaded_at: str                      # UTC ISO time the load finished
    load_seconds: float
    reranker: Any = None                # rank.cascade.Reranker of the served row, or None: retrieval order
    rank_top_k: int = 0                 # candidates retrieved and rescored per request (with a reranker)
    list_reranker: Any = None           # rerank.stage.ListReranker of the served row, or None: upstream order

    @property
    def stages(self) -> list[str]:
        """What a model answer goes through: retrieval, then the pre-ranker and the list re-ranker when the
        version has them."""
        return (["retrieval"] + (["rank"] if self.reranker is not None else [])
                + (["rerank"] if self.list_reranker is not None else []))

    @property
    def scenarios(self) -> list[str]:
        """The scenarios a request may name (skipped ones included: they are routed)."""
        return list(self.routes)

    def user_row(self, user_id: int) -> int | None:
        """The bank row of ``user_id``, or None when the bank has never heard of it (an unknown id)."""
        ids = self.bank.user_ids
        pos = int(np.searchsorted(ids, user_id))
        return pos if pos < len(ids) and int(ids[pos]) == user_id else None

    def describe(self) -> dict[str, Any]:
        """What ``/version`` reports: which run, which row, its metrics, and how each index was built."""
        rank = None if self.reranker is None else {"features": list(self.reranker.names),
                                                   "top_k": self.rank_top_k,
                                                   "scenarios": list(self.reranker.model.scenarios)}
        lr, rerank = self.list_reranker, None
        if lr is not None:
            from ..rerank.goals import WEIGHTED

            rerank = {"goals": list(WEIGHTED), "defaults": {g: lr.defaults[g] for g in WEIGHTED},
                      "candidates": int(lr.candidates), "length": int(lr.length)}
        return {"version": self.run_id, "path": str(self.path), "row": self.row, "scenarios": self.scenarios,
                "routes": {s: t for s, t in self.routes.items() if s != t},
                "indexes": dict(self.index_kinds), "stages": self.stages, "rank": rank, "rerank": rerank,
                "metrics": dict(self.metrics), "window": dict(self.window),
                "loaded_at": self.loaded_at, "load_seconds": round(self.load_seconds, 3)}


def resolve_source(published: Path) -> Path | None:
    """The version folder to serve from a publish folder (the target of its ``current`` link), or
    ``published`` itself when it is already a version folder; None when nothing is published yet."""
    published = Path(published)
    link = published / "current"
    if link.exists():
        return link.resolve()
    if (published / "models").is_dir() and (published / "indexes").is_dir():
        return published.resolve()
    return None


def version_folder(source: str | Path | None, published: Path, workspace: Path) -> Path:
    """What ``sass recommend`` answers from: the folder it was given, else the published current version,
    else the workspace (models/ and indexes/ after ``dvc repro``)."""
    if source:
        return Path(source)
    current = Path(published) / "current"
    return current.resolve() if current.exists() else Path(workspace)


def is_published(base: Path) -> bool:
    """A published version folder (served.json, ``indexes/<scenario>/``), not a workspace
    (``indexes/<row>/<scenario>/``)."""
    from ..publish import SERVED_FILE

    return (base / SERVED_FILE).exists() or any((base / "indexes").glob("*/index.faiss"))


def layout(base: Path, row: str | None = None) -> tuple[str, Path]:
    """(row, folder holding ``<scenario>/index.faiss``) of a published version or a workspace."""
    from ..publish import served_row

    base = Path(base)
    if is_published(base):
        return (row or served_row(base)), base / "indexes"
    row = row or CANDIDATE
    return row, base / "indexes" / row


def popular_lists(bank: Any, scenarios: Iterable[str], limit: int = MAX_K) -> dict[str, Popular]:
    """Per scenario, its pool ranked by clicks in the training window (the bank's positives are exactly the
    window's clicks, its exposure counts the window's exposures): the ``popular`` reference row of the
    evaluation (evaluate.popular.PopularRecommender), computed from the bank so serving needs no raw logs."""
    out = {}
    n_items = len(bank.item_ids)
    for s in scenarios:
        a = bank.per[s]
        clicks = np.bincount(a.pos_item, minlength=n_items)[a.pool].astype(np.int64)
        ids = bank.item_ids[a.pool]
        order = np.lexsort((ids, -a.exposures, -clicks))[:limit]
        out[s] = Popular(ids=ids[order].astype(np.int64), clicks=clicks[order])
    return out


def warm_users(bank: Any, scenarios: Iterable[str]) -> dict[str, np.ndarray]:
    """Per scenario, which bank users have behaviour features there (an exposure in the training window).

    The split writes a user's per-scenario row only when the user was exposed there, and the bank stores
    log1p(exposures) in the first stats column (0 for users without a row), so ``> 0`` is exactly
    "has features in this scenario". The others are cold users for that scenario."""
    return {s: bank.per[s].user_stats[:, 0] > 0 for s in scenarios}


def _read_metrics(base: Path, row: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = base / METRICS_FILE
    if not path.exists():
        return {}, {}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VersionLoadError(f"{path}: unreadable metrics ({exc})") from exc
    rows = metrics.get("rows") or {}
    return dict(rows.get(row) or {}), dict(metrics.get("window") or {})


def _routes(index_root: Path, scenarios: Iterable[str] | None) -> dict[str, str]:
    """Requested scenario -> serving scenario, from the index folders (``index.routing``: a scenario skipped
    on the run's day has a ``skipped.json`` naming the scenario that serves it). A folder whose index is
    missing (an empty pool writes none) is left out with a log line, so the other scenarios stay served."""
    from ..index.routing import UnknownScenarioError, resolve_index

    names = sorted(p.name for p in index_root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if index_root.is_dir() else []
    if scenarios is not None:
        names = [s for s in names if s in set(scenarios)]
    out = {}
    for s in names:
        try:
            out[s] = resolve_index(index_root, s).scenario
        except (FileNotFoundError, UnknownScenarioError) as exc:
            log.warning("scenario %s is not served: %s", s, exc)
    return out


def _stage_folder(base: Path, version_dir: str, stage: str, row: str, serves: Callable[[], bool] | None = None
                  ) -> Path | None:
    """The folder holding ``<row>/`` (a per-row model of ``stage``) and ``stats/``: the version's ``version_dir``,
    or a workspace's ``models/<stage>/``, where the stage may have written off.json instead and ``serves`` may
    say the workspace would not serve it; None when there is no model for ``row``."""
    base = Path(base)
    published = is_published(base)
    folder = base / version_dir if published else base / "models" / stage
    if not published and ((folder / RANK_OFF).exists() or (serves is not None and not serves())):
        return None
    return folder if (folder / row).is_dir() else None


def rank_folder(base: Path, row: str) -> Path | None:
    """The row's pre-ranker folder: the version's ``rank/``, or a workspace's ``models/rank/`` (none when the rank
    stage ran with rank.enabled false, or when the workspace's evaluation found it no better than retrieval
    order: metrics.json ``cascade[row].served``, the rule publish follows); None: it serves retrieval order."""
    from ..publish import RANK_DIR

    return _stage_folder(base, RANK_DIR, "rank", row, serves=lambda: _evaluated_as_served(Path(base), row))


def rerank_folder(base: Path, row: str) -> Path | None:
    """The row's list re-ranker folder: the version's ``rerank/``, or a workspace's ``models/rerank/`` (none when
    the rerank stage wrote off.json); None: the upstream order is served."""
    from ..publish import RERANK_DIR

    return _stage_folder(base, RERANK_DIR, "rerank", row)


def _evaluated_as_served(workspace: Path, row: str) -> bool:
    """Did the workspace's evaluation serve ``row`` through its pre-ranker? True when it has not run yet (the
    rank stage's output is then all there is to go by)."""
    metrics = workspace / "metrics" / "metrics.json"
    if not metrics.is_file():
        return True
    try:
        cascade = json.loads(metrics.read_text()).get("cascade") or {}
    except (OSError, ValueError):
        return True
    return row not in cascade or bool(cascade[row].get("served"))


def rank_top_k(base: Path) -> int:
    """How many candidates the pre-ranker rescores: the number the version was published with (served.json),
    else a workspace's params.yaml rank.top_k, else the schema's default."""
    from ..params_schema import Rank
    from ..publish import served_rank_top_k

    recorded = served_rank_top_k(base)
    if recorded is not None:
        return recorded
    if (Path(base) / "params.yaml").is_file():
        from ..config import load_params

        try:
            return int(load_params(Path(base) / "params.yaml").rank.top_k)
        except Exception as exc:  # noqa: BLE001 - any params error is the version's load error
            raise VersionLoadError(f"{Path(base) / 'params.yaml'}: rank.top_k: {_first_line(exc)}") from exc
    return int(Rank().top_k)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def load_reranker_checked(folder: Path, row: str, served: Iterable[str], popular: Mapping[str, Popular],
                          user: int) -> Any:
    """The row's pre-ranker from ``folder`` (rank.stage.load_reranker), checked before it serves: it knows
    every served scenario, and it orders one real candidate list of each (``popular``'s head for ``user``),
    so a broken model or statistics file is a :class:`VersionLoadError` here, never an error in a request."""
    from ..rank.stage import load_reranker

    try:
        reranker = load_reranker(folder, row)
    except Exception as exc:  # noqa: BLE001 - torch, parquet and json failures alike: one line, old version stays
        raise VersionLoadError(f"{folder / row}: the pre-ranker could not be loaded: {_first_line(exc)}") from exc
    missing = sorted(set(served) - set(reranker.model.scenarios))
    if missing:
        raise VersionLoadError(f"{folder / row}: the pre-ranker knows scenarios {list(reranker.model.scenarios)}, "
                               f"not the served {missing}")
    for s in sorted(set(served)):
        ids = np.asarray(popular[s].ids[:8], dtype=np.int64)[None, :]
        scores = np.linspace(1.0, 0.0, ids.shape[1], dtype=np.float32)[None, :]
        try:
            order = reranker.order(s, np.array([user], dtype=np.int64), ids, scores)
        except Exception as exc:  # noqa: BLE001 - see above
            raise VersionLoadError(f"{folder / row}: the pre-ranker fails on scenario {s!r}: "
                                   f"{_first_line(exc)}") from exc
        if sorted(order[0].tolist()) != list(range(ids.shape[1])):
            raise VersionLoadError(f"{folder / row}: the pre-ranker's order on scenario {s!r} is not a permutation")
    return reranker


def load_list_reranker_checked(folder: Path, row: str, served: Iterable[str], popular: Mapping[str, Popular],
                               user: int) -> Any:
    """The row's list re-ranker from ``folder`` (rerank.stage.load_list_reranker), checked before it serves: its
    evaluator knows every served scenario, and at its default weights it builds one real list per scenario
    (``popular``'s head for ``user``) of distinct candidates, so a broken generator, evaluator or statistics
    file is a :class:`VersionLoadError` here, never an error in a request."""
    from ..rerank.stage import load_list_reranker

    where = folder / row
    try:
        lr = load_list_reranker(folder, row)
    except Exception as exc:  # noqa: BLE001 - torch, parquet and json failures alike: one line, old version stays
        raise VersionLoadError(f"{where}: the list re-ranker could not be loaded: {_first_line(exc)}") from exc
    known = set.intersection(*(set(m.scenarios) for m in lr.evaluator.models.values()))
    missing = sorted(set(served) - known)
    if missing:
        raise VersionLoadError(f"{where}: the list re-ranker's evaluator knows scenarios {sorted(known)}, not the "
                               f"served {missing}")
    for s in sorted(set(served)):
        ids = np.asarray(popular[s].ids[: lr.candidates], dtype=np.int64)[None, :]
        if ids.shape[1] == 0:   # an empty pool: nothing the re-ranker could be asked to order
            continue
        scores = np.linspace(1.0, 0.0, ids.shape[1], dtype=np.float32)[None, :]
        try:
            lists, _ = lr.rerank(s, np.array([user], dtype=np.int64), ids, scores, lr.weights())
        except Exception as exc:  # noqa: BLE001 - see above
            raise VersionLoadError(f"{where}: the list re-ranker fails on scenario {s!r}: {_first_line(exc)}") from exc
        placed = [int(i) for i in lists[0] if i >= 0]
        if lists.shape[1] != lr.length or len(set(placed)) != len(placed) or not set(placed) <= set(ids[0].tolist()):
            raise VersionLoadError(f"{where}: the list re-ranker's list on scenario {s!r} is not {lr.length} "
                                   "distinct candidates")
    return lr


def load_version(base: Path, features_dir: Path, store_dir: Path, *, row: str | None = None,
                 scenarios: Iterable[str] | None = None) -> LoadedVersion:
    """Load the version at ``base`` with the bank of ``features_dir`` + ``store_dir``.

    ``scenarios`` restricts which indexes are read (``sass recommend`` needs one); by default every
    ``<scenario>/index.faiss`` of the version is. Every index is checked against the model and the bank
    before the version is returned (its dimension, its scenario), so a version that loads can answer every
    request: a mismatch is a :class:`VersionLoadError` here, never an error in a request.
    """
    from ..data.store import read_items, read_users
    from ..index.faiss_index import IndexLoadError, describe, load_index, with_prior_column
    from ..models.bank import load_bank
    from ..models.checkpoint import CheckpointError, load_row_model
    from .query import user_vectors

    t0 = time.perf_counter()
    base = Path(base).resolve()
    if not base.is_dir():
        raise VersionLoadError(f"{base}: no such version folder")
    row, index_root = layout(base, row)
    routes = _routes(index_root, scenarios)
    if not routes and scenarios is None:
        raise VersionLoadError(f"{index_root}: no <scenario>/index.faiss to serve")
    wanted = sorted(set(routes.values()))
    cache: dict = {}
    try:   # torch.load(weights_only=True), hash-checked; a row with one model for all scenarios loads it once
        models = {s: load_row_model(base / "models", row, s, cache)[0] for s in wanted}
    except CheckpointError as exc:
        raise VersionLoadError(str(exc)) from exc
    if not models:
        raise VersionLoadError(f"{index_root}: none of the requested scenarios {list(scenarios or [])} is served")
    model = next(iter(models.values()))
    try:
        bank = load_bank(Path(features_dir), read_users(Path(store_dir)), read_items(Path(store_dir)), model.cfg,
                         scenarios=list(model.cfg.scenarios), serving_only=True)
    except (OSError, KeyError, ValueError) as exc:
        raise VersionLoadError(f"feature bank from {features_dir} and {store_dir}: {type(exc).__name__}: {exc}") from exc
    indexes, kinds = {}, {}
    for s in wanted:
        if s not in bank.per:
            raise VersionLoadError(f"{index_root / s}: scenario {s!r} is not one of the model's {bank.scenarios}")
        try:
            index = load_index(index_root / s / "index.faiss")
        except IndexLoadError as exc:
            raise VersionLoadError(str(exc)) from exc
        probe = user_vectors(models[s], bank, s, np.zeros(1, dtype=np.int64))
        try:   # the query as search() would pass it: the index may hold a prior column (faiss_index)
            with_prior_column(index, probe)
        except ValueError:
            raise VersionLoadError(f"{index_root / s / 'index.faiss'}: dimension {index.d}, the model's user "
                                   f"vectors have {probe.shape[1]}") from None
        indexes[s], kinds[s] = index, describe(index)
    routes = {r: t for r, t in routes.items() if t in indexes}
    metrics, window = _read_metrics(base, row)
    popular = popular_lists(bank, wanted)
    reranker, top_k = None, 0
    ranks = rank_folder(base, row)
    if ranks is not None:
        user = int(bank.user_ids[0]) if len(bank.user_ids) else 0
        reranker = load_reranker_checked(ranks, row, wanted, popular, user)
        top_k = rank_top_k(base)
    list_reranker = None
    lists = rerank_folder(base, row)
    if lists is not None:
        user = int(bank.user_ids[0]) if len(bank.user_ids) else 0
        list_reranker = load_list_reranker_checked(lists, row, wanted, popular, user)
    seconds = time.perf_counter() - t0
    loaded = LoadedVersion(
        path=base, run_id=base.name, row=row, models=MappingProxyType(models), bank=bank, indexes=MappingProxyType(indexes),
        routes=MappingProxyType(routes),
        index_kinds=MappingProxyType(kinds), popular=MappingProxyType(popular),
        warm=MappingProxyType(warm_users(bank, wanted)), metrics=MappingProxyType(metrics),
        window=MappingProxyType(window), loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        load_seconds=seconds, reranker=reranker, rank_top_k=top_k, list_reranker=list_reranker)
    log.info("loaded version %s (row %s, stages %s, indexes %s, routed %s) in %.1fs", loaded.run_id, row,
             loaded.stages, wanted, {r: t for r, t in routes.items() if r != t}, seconds)
    return loaded
