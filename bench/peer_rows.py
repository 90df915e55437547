"""Bridge between bench/speed.py and the torch-rechub peer (bench/peer_rechub.py): the peer's training
throughput at our embedding and batch sizes, with the peer's training code kept in one place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from peer_rechub import train_rechub_dssm

from sass_retrieval.data.store import read_items, read_users

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params


def measure_throughput(store: Path, params: Params, steps: int, repeats: int) -> list[dict[str, Any]]:
    """The peer's training samples/s at our embedding size and batch size (1 epoch, uniform negatives).

    Samples are the rows its trainer consumes (each positive and each of its sampled negatives), the same
    unit the peer reports; ours count positives (each scored against a shared set of negatives).
    """
    from sass_retrieval.config import resolve_window
    from sass_retrieval.data.schema import stored_dates
    from sass_retrieval.experiment import load_window

    window = resolve_window(params.window, stored_dates(store))     # end_date auto: the store's last day
    smap, train, _ = load_window(store, window, list(params.scenarios.names), params.scenarios.min_scenario_rows)
    users, items = read_users(store), read_items(store)
    batch, dim = params.finetune.batch_size, params.model.emb_dim
    rates, pos_rates = [], []
    for r in range(repeats):
        rec = train_rechub_dssm(train, users, items, smap.names, negatives="uniform", lr=1e-3, epochs=1,
                                embed_dim=dim, batch_size=batch, seed=r)
        rates.append(float(rec.stats["samples_per_s"]))
        pos_rates.append(float(rec.stats.get("positives_per_s", float("nan"))))
    rates.sort()
    pos_rates.sort()
    common = {"model": "torch-rechub DSSM", "batch_size": batch, "emb_dim": dim,
              "negatives": "3 sampled rows per positive"}
    return [{**common, "stage": "fine-tuning (rows incl. negatives)", "samples_per_s": rates[len(rates) // 2],
             "runs": rates},
            {**common, "stage": "fine-tuning (positives)", "samples_per_s": pos_rates[len(pos_rates) // 2],
             "runs": pos_rates}]
