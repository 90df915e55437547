"""Publishing: the gate that decides, and the atomic swap that makes a run "current".

Layout under the publish folder:

    versions/<run_id>/   models (candidate, challenger, pretrain), the served row's indexes, metrics,
                         validation summary and served.json (which row it serves, and which scenario serves
                         each scenario skipped that day) of one run (never modified); with the rank stage
                         on, also the served row's pre-ranker (rank/<row>/) and the window's statistics
                         it reads (rank/stats/); with the rerank stage on, the served row's list re-ranker
                         (rerank/<row>/) and its statistics (rerank/stats/)
    current              symlink to the version in service
    decisions.jsonl      one line per publish attempt: what was decided and why

A version is copied aside under a temporary name and renamed into ``versions/`` when complete; then
a new symlink is created aside and renamed over ``current``. Both renames are atomic on POSIX, so a
crash at any point leaves ``current`` pointing at a complete version, old or new. A kill also leaves the
temporary version folder or link behind; the next publish removes them under the lock (:func:`sweep_stale`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_path, staged_dir, sweep_temps
from .rows import CANDIDATE

PUBLISHED = "published"       # the metrics row of the model in service, re-scored on a run's pairs (evaluate.daily)
SERVED_FILE = "served.json"   # in a version folder: {"row": the reference row whose model and indexes it serves,
                              #  "fallback": {skipped scenario: its skipped.json marker, "served_by" included},
                              #  "rank": {"top_k": candidates the pre-ranker rescores} when it holds one,
                              #  "rerank": {"candidates": C, "length": L} when it holds a list re-ranker}
RANK_DIR = "rank"             # in a version folder: <row>/ (the served row's pre-ranker) and stats/
RERANK_DIR = "rerank"         # in a version folder: <row>/ (the served row's list re-ranker) and stats/


@dataclass
class Decision:
    publish: bool
    reason: str
    candidate: float | None            # macro NDCG@50 of the candidate (sass)
    published: float | None            # ... of the model in service, on this run's pairs when re-scored
    winner: str | None = None          # the row published (None: the model in service stays)
    best: str | None = None            # the better of candidate and challenger on this run's pairs
    scores: dict[str, float | None] = field(default_factory=dict)   # row -> macro NDCG@50
    margins: dict[str, dict] = field(default_factory=dict)         # "<a>-<b>" -> paired CI of a - b


def _finite(x: float | None) -> bool:
    return x is not None and x == x and x not in (float("inf"), float("-inf"))


def _ci(m: dict | None, level: float) -> str:
    from .evaluate.significance import format_ci

    if not m:
        return "no paired CI"
    return format_ci(m["diff"], m["lo"], m["hi"], label=f", paired {level:.0%} CI")


def gate(validation_ok: bool, scores: dict[str, float | None], published: float | None,
         lead: dict | None = None, *, tolerance: float = 0.0, level: float = 0.95,
         margins: dict[str, dict] | None = None, candidate: str = CANDIDATE) -> Decision:
    """Champion/challenger: publish the best of ``scores`` (candidate and challenger, macro NDCG@50 on this
    run's pairs) only when it beats the model in service by more than the noise of this test window.

    - ``lead``: the paired bootstrap CI of (best - model in service) on this run's pairs (``macro`` entry of
      :func:`sass_retrieval.evaluate.significance.paired_bootstrap`). The best is published when its lower
      bound is above 0; otherwise the model in service stays.
    - nothing in service (``published`` None): the best is published.
    - the model in service could not be re-scored on this run's pairs (``lead`` None, ``published`` is the
      number recorded when it was published): the best is published unless it is more than
      ``tolerance`` below that number (the previous rule; different windows are not paired).
    """
    margins = dict(margins or {})
    ok = {r: float(v) for r, v in scores.items() if _finite(v)}
    cand = scores.get(candidate)

    def decide(publish: bool, reason: str, best: str | None, winner: str | None = None) -> Decision:
        return Decision(publish, reason, cand, published, winner if publish else None, best, dict(scores), margins)

    if not validation_ok:
        return decide(False, "data validation did not pass", None)
    if not ok:
        return decide(False, "neither the candidate nor the challenger has a macro NDCG@50", None)
    best = max(ok, key=lambda r: (ok[r], r == candidate))
    others = ", ".join(f"{r} {v:.4f}" for r, v in ok.items() if r != best)
    head = f"{best} (macro NDCG@50 {ok[best]:.4f}" + (f"; {others})" if others else ")")
    if published is None:
        return decide(True, f"nothing published yet: {head} is published", best, best)
    if lead is None:
        if ok[best] < published - tolerance:
            return decide(False, f"macro NDCG@50 {ok[best]:.4f} ({best}) is more than {tolerance} below the "
                                 f"published {published:.4f} (not re-scored on this run's pairs)", best)
        return decide(True, f"{head} vs published {published:.4f}, recorded on another window "
                            f"(tolerance {tolerance})", best, best)
    margins[f"{best}-published"] = lead
    if lead["lo"] > 0:
        return decide(True, f"{head} leads the published {published:.4f} by {_ci(lead, level)}", best, best)
    if lead["hi"] < 0:
        return decide(False, f"macro NDCG@50 {ok[best]:.4f} ({best}) is below the published {published:.4f}: "
                             f"{_ci(lead, level)}", best)
    return decide(False, f"{head}: its lead over the published {published:.4f} is within the noise "
                         f"({_ci(lead, level)})", best)


def macro(metrics: dict, row: str) -> float | None:
    try:
        return float(metrics["rows"][row]["macro"]["ndcg@50"])
    except (KeyError, TypeError, ValueError):
        return None


def paired_margin(per_pair: Path, a: str, b: str, config: dict, slice_name: str = "all") -> dict | None:
    """Paired bootstrap of row a - row b (macro over scenarios) from the evaluate stage's per_pair.npz, with
    the evaluate stage's metric, n_boot, level and seed (metrics.json "significance_config")."""
    import numpy as np

    from sass_retrieval.evaluate.significance import MACRO, paired_bootstrap

    if not per_pair.exists():
        return None
    metric = config.get("metric", "ndcg@50")
    with np.load(per_pair) as z:
        keys = set(z.files)
        scen = [k.split("/")[2] for k in sorted(keys)
                if k.count("/") == 3 and k.startswith(f"{slice_name}/{a}/") and k.endswith(f"/{metric}")]
        scen = [s for s in scen if f"{slice_name}/{b}/{s}/{metric}" in keys]
        if not scen:
            return None
        xa = {s: z[f"{slice_name}/{a}/{s}/{metric}"] for s in scen}
        xb = {s: z[f"{slice_name}/{b}/{s}/{metric}"] for s in scen}
    out = paired_bootstrap(xa, xb, n_boot=int(config.get("n_boot", 2000)), level=float(config.get("level", 0.95)),
                           seed=int(config.get("seed", 0)))
    return {**out[MACRO], "metric": metric}


def decide(metrics: dict, per_pair: Path, validation_ok: bool, challenger: str, published: float | None,
           tolerance: float) -> Decision:
    """The gate's inputs from the evaluate stage's outputs (metrics.json, per_pair.npz), then :func:`gate`.

    One implementation for the publish stage, which acts on it, and the run report, which shows it."""
    config = metrics.get("significance_config") or {}
    scores = {CANDIDATE: macro(metrics, CANDIDATE), challenger: macro(metrics, challenger)}
    margins = {}
    vs = paired_margin(per_pair, CANDIDATE, challenger, config)
    if vs is not None:
        margins[f"{CANDIDATE}-{challenger}"] = vs
    lead = None
    finite = {r: v for r, v in scores.items() if _finite(v)}
    if finite and PUBLISHED in metrics.get("rows", {}):
        best = max(finite, key=lambda r: (finite[r], r == CANDIDATE))
        lead = paired_margin(per_pair, best, PUBLISHED, config)
    return gate(validation_ok, scores, published, lead, tolerance=tolerance,
                level=float(config.get("level", 0.95)), margins=margins)


def current_version(root: Path) -> Path | None:
    link = Path(root) / "current"
    return link.resolve() if link.is_symlink() and link.resolve().exists() else None


def served_row(version: Path | None) -> str:
    """The reference row a version serves (``served.json``; versions from before the challenger: sass)."""
    if version is None:
        return CANDIDATE
    try:
        return str(json.loads((Path(version) / SERVED_FILE).read_text())["row"])
    except (OSError, ValueError, KeyError):
        return CANDIDATE


def served_record(row: str, indexes: Path, rank_top_k: int | None = None,
                  rerank: dict[str, int] | None = None) -> dict[str, Any]:
    """served.json of a version serving ``row`` from ``indexes`` (the row's ``indexes/<row>`` folder).

    ``fallback`` copies the skipped scenarios' markers (``<scenario>/skipped.json``): a reader of the version
    sees at once which scenarios are served by another scenario's index and why. Routing itself reads the
    markers (``sass_retrieval.index.routing.resolve_index``), so the two can not disagree.

    ``rank_top_k`` (a version holding the row's pre-ranker): how many retrieved candidates it rescores, so
    serving and the next day's re-scoring apply the cascade the gate measured, whatever params say then.

    ``rerank`` (a version holding the row's list re-ranker): {"candidates": C, "length": L}, the upstream
    candidates it builds each list from and the list's slots (:func:`rerank_shape`), for a reader of the version.
    """
    from .data.features import skipped_markers

    record: dict[str, Any] = {"row": row, "fallback": {s: m.to_json() for s, m in skipped_markers(indexes).items()}}
    if rank_top_k is not None:
        record["rank"] = {"top_k": int(rank_top_k)}
    if rerank is not None:
        record["rerank"] = {"candidates": int(rerank["candidates"]), "length": int(rerank["length"])}
    return record


def rerank_shape(reranker: Path) -> dict[str, int]:
    """{"candidates", "length"} of a list re-ranker folder (``<row>/``: its generator.json, which the rerank stage
    writes; read as JSON so that publishing does not load torch)."""
    meta_path = Path(reranker) / "generator.json"
    try:
        meta = json.loads(meta_path.read_text())
        return {"candidates": int(meta["candidates"]), "length": int(meta["config"]["length"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from .errors import BadInputError

        raise BadInputError(f"{meta_path}: needs candidates and config.length (the rerank stage writes them): "
                            f"{type(exc).__name__}: {exc}") from exc


def served_rank_top_k(version: Path) -> int | None:
    """The pre-ranker's candidate count a version was published with (served.json ``rank.top_k``); None when
    it records none."""
    try:
        return int(json.loads((Path(version) / SERVED_FILE).read_text())["rank"]["top_k"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def published_metric(root: Path, metrics: dict | None = None) -> float | None:
    """Macro NDCG@50 of the model in service: re-scored on this run's window when the evaluate stage
    did so (row "published"), else the number recorded when it was published."""
    if metrics and PUBLISHED in metrics.get("rows", {}):
        return float(metrics["rows"][PUBLISHED]["macro"]["ndcg@50"])
    cur = current_version(root)
    if cur is None or not (cur / "metrics.json").exists():
        return None
    recorded = json.loads((cur / "metrics.json").read_text())
    row = served_row(cur)
    entry = (recorded.get("rows") or {}).get(row) or recorded.get("sass")
    return float(entry["macro"]["ndcg@50"])


def run_id(window_end: int, files: list[Path]) -> str:
    """Same day and same artefacts -> same id, so re-publishing a rerun is a no-op."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return f"{window_end}-{h.hexdigest()[:10]}"


def install_version(root: Path, vid: str, sources: dict[str, Path], texts: dict[str, str] | None = None) -> Path:
    """Copy ``sources`` (name -> file or folder) and write ``texts`` (name -> content) into versions/<vid>,
    atomically; reuse it if present."""
    target = Path(root) / "versions" / vid
    if target.exists():
        return target
    with staged_dir(target) as tmp:
        for name, src in sources.items():
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text)
    return target


def sweep_stale(root: Path) -> int:
    """Remove what an installer killed mid-way left: ``versions/.<vid>.<hex>.tmp`` folders (install_version)
    and ``.current.<hex>`` links (point_current); returns how many. Call it under the publish lock, which an
    installer holds for its whole install, so no temporary of a running installer is taken."""
    root = Path(root)
    return sweep_temps(root / "versions") + sweep_temps(root, "current", suffix="")


def point_current(root: Path, target: Path) -> None:
    """Make ``current`` point at ``target``: a new link made aside, renamed over the old one."""
    root = Path(root)
    with atomic_path(root / "current", suffix="") as tmp_link:
        os.symlink(os.path.relpath(target, root), tmp_link)


def record(root: Path, entry: dict[str, Any]) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **entry}
    with open(root / "decisions.jsonl", "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
