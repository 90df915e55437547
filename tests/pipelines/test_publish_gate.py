"""The champion/challenger gate: the best of candidate and challenger replaces the model in service only when
its lead is outside the paired 95% CI on this run's pairs; paired margins come from metrics/per_pair.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sass_retrieval.publish import gate, paired_margin

SCORES = {"sass": 0.30, "dssm_mixed": 0.32}


def ci(diff: float, lo: float, hi: float) -> dict:
    return {"diff": diff, "lo": lo, "hi": hi, "pairs": 100, "significant": lo > 0 or hi < 0}


def test_first_day_publishes_the_better_of_candidate_and_challenger() -> None:
    d = gate(True, SCORES, None)
    assert d.publish and d.winner == d.best == "dssm_mixed" and "nothing published yet" in d.reason
    d = gate(True, {"sass": 0.32, "dssm_mixed": 0.32}, None)
    assert d.winner == "sass"  # a tie goes to the candidate


def test_a_lead_outside_the_ci_is_published_inside_it_the_model_in_service_stays() -> None:
    d = gate(True, SCORES, 0.29, ci(0.03, 0.01, 0.05))
    assert d.publish and d.winner == "dssm_mixed" and "leads the published" in d.reason
    assert d.margins["dssm_mixed-published"]["lo"] == 0.01
    d = gate(True, SCORES, 0.31, ci(0.01, -0.004, 0.02))
    assert not d.publish and d.winner is None and d.best == "dssm_mixed" and "within the noise" in d.reason
    d = gate(True, SCORES, 0.40, ci(-0.08, -0.1, -0.06))
    assert not d.publish and "below the published" in d.reason


def test_without_a_paired_comparison_the_tolerance_rule_applies() -> None:
    assert gate(True, SCORES, 0.321, None, tolerance=0.005).publish
    d = gate(True, SCORES, 0.40, None, tolerance=0.005)
    assert not d.publish and "below the published" in d.reason


def test_no_publish_without_validation_or_scores() -> None:
    assert not gate(False, SCORES, None).publish
    d = gate(True, {"sass": None, "dssm_mixed": float("nan")}, None)
    assert not d.publish and d.best is None


def test_paired_margin_reads_per_pair_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for s in ("s0", "s1"):
        base = rng.random(400).astype(np.float32)
        arrays[f"all/published/{s}/ndcg@50"] = base
        arrays[f"all/sass/{s}/ndcg@50"] = base + 0.05          # better on every pair
        arrays[f"all/dssm_mixed/{s}/ndcg@50"] = base            # identical
        arrays[f"all/pairs/{s}"] = np.arange(400)
    path = tmp_path / "per_pair.npz"
    np.savez(path, **arrays)
    config = {"metric": "ndcg@50", "n_boot": 200, "level": 0.95, "seed": 0}
    lead = paired_margin(path, "sass", "published", config)
    assert lead["diff"] == pytest.approx(0.05, abs=1e-6) and lead["lo"] > 0 and lead["significant"]
    tie = paired_margin(path, "dssm_mixed", "published", config)
    assert tie["diff"] == 0 and not tie["significant"]
    assert paired_margin(path, "sass", "nope", config) is None
    assert paired_margin(tmp_path / "missing.npz", "sass", "published", config) is None
