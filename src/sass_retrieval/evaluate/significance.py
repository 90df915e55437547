"""Paired bootstrap confidence intervals: is a difference between two rows a gain or noise?

Two rows scored on the same evaluation pairs are compared pair by pair. The per-pair metric of
one row varies enormously from pair to pair (most NDCG@50 values are 0), but the *difference*
between two rows on the same pair varies much less, so a paired test sees far smaller real
differences than comparing two means with their own error bars would.

The method is the percentile bootstrap over evaluation pairs:

- Per scenario, one replicate draws ``n_pairs`` pair indices with replacement and takes the mean
  of ``a - b`` over them. With several training seeds (arrays of shape ``(n_seeds, n_pairs)``) the
  same indices are used for every seed and for both rows, and the statistic is the mean over seeds
  and resampled pairs; since every seed sees the same indices this equals the mean over resampled
  pairs of the per-pair seed means, which is what is computed. Seed-to-seed variation is thus
  averaged in, not tested: the interval is about the pairs (the users of this test window).
- ``macro`` is the mean over the scenarios that have pairs of the per-scenario means, with each
  scenario resampled independently (a stratified bootstrap: the scenarios' pair counts are fixed
  by the data, as in the benchmark's macro average).
- The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates;
  ``significant`` means it excludes 0.

Each scenario's replicates come from its own generator, seeded from ``seed`` and the scenario name,
so a scenario's interval does not depend on which other scenarios are present, and comparing
several rows against one reference resamples the same pairs for every comparison.

Caveat: with very few pairs (a handful) the bootstrap interval is too narrow; with one pair it
has zero width. The report shows the pair counts next to the intervals for that reason.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

MACRO = "macro"
DASH = "–"   # what a report shows for an interval that is undefined (no pairs)
# replicates are drawn in chunks of at most this many indices (int32/int64 + gathered float64),
# which bounds memory to ~50 MB whatever the number of pairs and replicates
_CHUNK_ELEMENTS = 4_000_000


def _per_pair_diff(a: np.ndarray, b: np.ndarray, scenario: str) -> np.ndarray:
    """Per-pair difference averaged over seeds, float64 (n_pairs,); clear errors on bad shapes."""
    arrs = []
    for name, x in (("a", a), ("b", b)):
        x = np.asarray(x)
        if x.ndim not in (1, 2):
            raise ValueError(f"scenario {scenario!r}: {name} must have shape (n_pairs,) or (n_seeds, n_pairs), "
                             f"got {x.shape}")
        if x.size and not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"scenario {scenario!r}: {name} must be numeric, got dtype {x.dtype}")
        x = np.atleast_2d(x.astype(np.float64, copy=False))
        if x.shape[0] == 0:
            raise ValueError(f"scenario {scenario!r}: {name} has 0 seeds")
        if not np.isfinite(x).all():
            raise ValueError(f"scenario {scenario!r}: {name} holds NaN or infinite values")
        arrs.append(x)
    xa, xb = arrs
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"scenario {scenario!r}: a has {xa.shape[1]} pairs, b has {xb.shape[1]}: "
                         "both rows must be scored on the same pairs, in the same order")
    if xa.shape[0] != xb.shape[0] and 1 not in (xa.shape[0], xb.shape[0]):
        raise ValueError(f"scenario {scenario!r}: a has {xa.shape[0]} seeds, b has {xb.shape[0]}: "
                         "seeds must match (or one side has a single seed, e.g. a deterministic row)")
    # mean over seeds of (a - b), one side broadcast when it has a single seed
    return xa.mean(axis=0) - xb.mean(axis=0)


def _rng(seed: int, scenario: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(scenario.encode("utf-8"))])


def bootstrap_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of ``d`` resampled with replacement (float64 (n_boot,)), vectorised in chunks."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    out = np.empty(n_boot, dtype=np.float64)
    if n == 0:
        out.fill(np.nan)
        return out
    dtype = np.int32 if n < 2**31 else np.int64
    chunk = max(1, min(n_boot, _CHUNK_ELEMENTS // n))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n), dtype=dtype)
        out[start : start + m] = d[idx].mean(axis=1)
    return out


def _summary(diff: float, boot: np.ndarray, level: float, pairs: int) -> dict:
    if pairs == 0 or not np.isfinite(diff):
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "pairs": int(pairs),
                "significant": False}
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(diff), "lo": float(lo), "hi": float(hi), "pairs": int(pairs),
            "significant": bool(lo > 0 or hi < 0)}


def paired_bootstrap(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """Paired, scenario-stratified percentile bootstrap of ``mean(a - b)`` (see the module doc).

    ``a[s]`` and ``b[s]`` are one metric's per-pair values of two rows on scenario ``s``, shape
    ``(n_pairs,)`` or ``(n_seeds, n_pairs)``, aligned on the same pairs. Returns, for every scenario
    of ``a`` and for ``"macro"``, ``{"diff": observed mean difference, "lo": .., "hi": .., "pairs": n,
    "significant": lo > 0 or hi < 0}``; ``pairs`` of macro is the total. A scenario with 0 pairs has
    NaN diff and bounds, is never significant and is left out of macro.
    """
    if set(a) != set(b):
        raise ValueError(f"a and b must cover the same scenarios, got {sorted(a)} and {sorted(b)}")
    if MACRO in a:
        raise ValueError(f"{MACRO!r} is reserved for the macro average and can not be a scenario name")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    n_boot = int(n_boot)
    out: dict[str, dict] = {}
    diffs: list[float] = []
    boots: list[np.ndarray] = []
    total = 0
    for s in a:
        d = _per_pair_diff(a[s], b[s], str(s))
        if d.size == 0:
            out[s] = _summary(float("nan"), np.empty(0), level, 0)
            continue
        boot = bootstrap_means(d, n_boot, _rng(seed, str(s)))
        diff = float(d.mean())
        out[s] = _summary(diff, boot, level, d.size)
        diffs.append(diff)
        boots.append(boot)
        total += d.size
    if boots:
        out[MACRO] = _summary(float(np.mean(diffs)), np.mean(boots, axis=0), level, total)
    else:
        out[MACRO] = _summary(float("nan"), np.empty(0), level, 0)
    return out


def compare_rows(per_pair_by_row: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], reference: str,
                 metric: str = "ndcg@50", **kw) -> dict[str, dict]:
    """The ``reference`` row against every other row: ``{row: paired_bootstrap(ref, row)}``.

    ``per_pair_by_row[row][scenario][metric]`` is an array ``(n_pairs,)`` or ``(n_seeds, n_pairs)``
    (e.g. ``evaluate(..., keep_pairs=True)["per_pair"]`` of each row). ``diff`` is reference minus
    row, so a positive, significant diff means the reference is better. ``kw`` goes to
    :func:`paired_bootstrap` (``n_boot``, ``level``, ``seed``).
    """
    if reference not in per_pair_by_row:
        raise ValueError(f"reference row {reference!r} not among the rows {sorted(per_pair_by_row)}")

    def values(row: str) -> dict[str, np.ndarray]:
        by_scenario = per_pair_by_row[row]
        out = {}
        for s, metrics in by_scenario.items():
            if metric not in metrics:
                raise ValueError(f"row {row!r} scenario {s!r} has no per-pair {metric!r} "
                                 f"(has {sorted(metrics)})")
            out[s] = metrics[metric]
        return out

    ref = values(reference)
    result = {}
    for row in per_pair_by_row:
        if row == reference:
            continue
        other = values(row)
        if set(other) != set(ref):
            raise ValueError(f"row {row!r} covers scenarios {sorted(other)}, reference {reference!r} "
                             f"covers {sorted(ref)}")
        result[row] = paired_bootstrap(ref, {s: other[s] for s in ref}, **kw)
    return result


def significance_metric(ks: list[int]) -> str:
    """NDCG@50 (the headline), or NDCG at the K closest to 50 when params drop 50 from evaluate.ks."""
    return f"ndcg@{min(ks, key=lambda k: (abs(k - 50), k))}"


def significance_by_slice(per_pair: Mapping[str, Mapping[str, Mapping]], reference: str | None, metric: str,
                          n_boot: int, level: float, seed: int) -> dict[str, dict]:
    """``{slice: {other_row: paired_bootstrap(reference, other_row)}}`` on ``metric`` (:func:`compare_rows`
    per slice); a slice the reference was not scored on is left out, and no reference means no tests."""
    if reference is None:
        return {}
    return {name: compare_rows(rows, reference, metric, n_boot=n_boot, level=level, seed=seed)
            for name, rows in per_pair.items() if reference in rows}


def finite(v: Any) -> float | None:
    """A finite float, or None (missing, text, NaN, infinite)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def format_ci(diff: Any, lo: Any, hi: Any, digits: int = 4, label: str = "") -> str:
    """``+0.0123 [+0.0050, +0.0190]``: a difference and its interval, signed, the one way every report,
    benchmark table and publish decision writes one; ``label`` goes between the two (``", paired 95% CI"``).
    A dash when any of the three is undefined (no pairs, NaN)."""
    vals = [finite(v) for v in (diff, lo, hi)]
    if any(v is None for v in vals):
        return DASH

    def signed(v: float) -> str:
        return f"{round(v, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.0000"

    d, a, b = vals
    return f"{signed(d)}{label} [{signed(a)}, {signed(b)}]"
