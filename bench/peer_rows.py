"""Bridge between the benchmark scripts and the torch-rechub peer (bench/peer_rechub.py).

Keeps the peer's training code in one place and gives quality.py / speed.py the two calls they need:
rows scored through our protocol, and the peer's training throughput.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peer_rechub import VARIANTS, train_rechub_dssm

from sass_retrieval.data.store import read_items, read_users


def run_peer_rows(prep, variants: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """Train each peer variant on the prepared train window and evaluate it with BENCHMARK.md."""
    from sass_retrieval.evaluate.protocol import build_eval_set, evaluate

    es = build_eval_set(prep.train, prep.test, list(prep.smap.reported))
    users, items = read_users(prep.store), read_items(prep.store)
    out = {}
    for name in variants:
        t = time.perf_counter()
        rec = train_rechub_dssm(prep.train, users, items, prep.smap.names, seed=seed, **VARIANTS[name])
        res = evaluate(es, rec)
        res["info"] = {"train_seconds": time.perf_counter() - t, "samples_per_s": rec.stats.get("samples_per_s")}
        out[f"rechub_dssm_{name}"] = res
    return out


def measure_throughput(store: Path, params: dict, steps: int, repeats: int) -> list[dict]:
    """The peer's training samples/s at our embedding size and batch size (1 epoch, uniform negatives).

    Samples are the rows its trainer consumes (each positive and each of its sampled negatives), the same
    unit the peer reports; ours count positives (each scored against a shared set of negatives).
    """
    from sass_retrieval.config import make_window
    from sass_retrieval.experiment import load_window

    w = params["window"]
    window = make_window(int(w["end_date"]), int(w["train_days"]), int(w["test_days"]))
    smap, train, _ = load_window(store, window, list(params["scenarios"]["names"]),
                                 int(params["scenarios"]["min_scenario_rows"]))
    users, items = read_users(store), read_items(store)
    rates, pos_rates = [], []
    for r in range(repeats):
        rec = train_rechub_dssm(train, users, items, smap.names, negatives="uniform", lr=1e-3, epochs=1,
                                embed_dim=int(params["model"]["emb_dim"]),
                                batch_size=int(params["finetune"]["batch_size"]), seed=r)
        rates.append(float(rec.stats["samples_per_s"]))
        pos_rates.append(float(rec.stats.get("positives_per_s", float("nan"))))
    rates.sort()
    pos_rates.sort()
    return [{"model": "torch-rechub DSSM", "stage": "fine-tuning (rows incl. negatives)",
             "samples_per_s": rates[len(rates) // 2], "runs": rates, "batch_size": params["finetune"]["batch_size"],
             "emb_dim": params["model"]["emb_dim"], "negatives": "3 sampled rows per positive"},
            {"model": "torch-rechub DSSM", "stage": "fine-tuning (positives)",
             "samples_per_s": pos_rates[len(pos_rates) // 2], "runs": pos_rates,
             "batch_size": params["finetune"]["batch_size"], "emb_dim": params["model"]["emb_dim"],
             "negatives": "3 sampled rows per positive"}]
