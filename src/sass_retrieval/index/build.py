"""A run's FAISS index of one scenario for each row that may be published: indexes/<row>/<scenario>/.

The index holds the item tower's vectors of the scenario's pool (plus the popularity prior the model chose,
evaluate.embedding_recommender.serving_prior); ``build.json`` beside it records its kind and its recall
against exact search. A declared scenario skipped today (too few training rows) gets ``skipped.json``
instead, naming the scenario that serves it (index.routing). A run killed while saving leaves a hidden
temporary beside ``index.faiss`` (atomic.temp_path); the next run removes it before writing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import sweep_temps, write_json
from ..data.features import skipped_scenarios
from ..errors import MissingFile
from ..models.bank import FeatureBank, bank_for
from ..models.checkpoint import load_row_model
from ..models.embed import embed_items, embed_users, prior_weight, serving_prior
from ..params_schema import Index
from ..run import Run
from .faiss_index import build_index, describe, recall_against_exact, save_index, set_threads
from .routing import clear_skipped, mark_skipped

log = logging.getLogger("index")
RECALL_QUERIES = 1000   # users of the scenario whose top 50 the recall against exact search is measured on


def index_scenario(run: Run, scenario: str, rows: list[str], models: Path, features: str | Path, out: Path) -> None:
    """``out/<row>/<scenario>/`` for every row in ``rows``, from its checkpoint under ``models``."""
    for row in dict.fromkeys(rows):   # a run killed mid-save left its temporaries in these folders, which only it writes
        sweep_temps(out / row / scenario)
    skipped = skipped_scenarios(run.params.scenarios.names, run.scenarios, run.names).get(scenario)
    if skipped is not None:
        log.warning("scenario %s skipped today (%s): skipped.json, no index; served by the %r index",
                    scenario, skipped.reason, skipped.served_by)
        for row in dict.fromkeys(rows):
            mark_skipped(out / row / scenario, skipped)
        return
    set_threads(run.params.train.threads)
    bank = bank_for(run, features, serving_only=True)
    if scenario not in bank.per:
        raise MissingFile(f"{features}: scenario {scenario}: no split output; run `sass split "
                          f"--scenario {scenario}` first")
    for row in dict.fromkeys(rows):
        model, manifest = load_row_model(models, row, scenario)
        build_row_index(run.params.index, bank, model, manifest, row, scenario, out / row / scenario)


def build_row_index(cfg: Index, bank: FeatureBank, model: Any, manifest: dict[str, Any], row: str, s: str,
                    out: Path) -> dict[str, Any]:
    """One row's index of scenario ``s`` in ``out`` (index.faiss and build.json); returns what build.json says."""
    t0 = time.perf_counter()
    clear_skipped(out)
    pool = bank.per[s].pool
    info: dict[str, Any] = {"row": row, "scenario": s, "pool": int(len(pool)), "model_sha256": manifest["sha256"]}
    if len(pool):
        vecs = embed_items(model, bank, s, pool)
        prior = serving_prior(model, bank, s, pool)
        index = build_index(vecs, bank.item_ids[pool], cfg, prior)
        save_index(index, out / "index.faiss")
        # Recall of the built index against exact search, with this scenario's users as queries.
        users = bank.per[s].pos_user
        rng = np.random.default_rng(0)
        q_rows = (rng.choice(np.unique(users), size=min(RECALL_QUERIES, len(np.unique(users))), replace=False)
                  if len(users) else pool[:0])
        if len(q_rows):
            q = embed_users(model, bank, s, q_rows)
            info["recall@50_vs_exact"] = float(recall_against_exact(index, vecs, bank.item_ids[pool], q, 50, prior))
        info.update(kind=describe(index), requested_kind=cfg.kind, prior_weight=prior_weight(model, s))
    else:
        log.warning("scenario %s has an empty pool; no %s index written", s, row)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "build.json", info)
    log.info("index %s/%s: %s", row, s, info)
    return info
