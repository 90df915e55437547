"""The one-line failure format of data validation, shared by the full-data checks and the sampled suites.

Both halves of validation (:mod:`.validation_full` in DuckDB, :mod:`.validation_sample` through Great
Expectations) report a failure the same way, so an operator reads one kind of line whichever half found it:

``<table> (<file or day>): column <col>: <rule> failed: observed <value> (rule: <kwargs>)``
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, NaN and pandas' missing markers turned into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def tidy(value: Any) -> Any:
    """Integral floats as ints (GE turns min_value=20240301 into 20240301.0), others to 4 decimals."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 4)
    if isinstance(value, list):
        return [tidy(v) for v in value]
    return value


def short(value: Any, limit: int = 10) -> str:
    value = tidy(jsonable(value))
    if isinstance(value, list) and len(value) > limit:
        return f"[{', '.join(map(repr, value[:limit]))}, ... +{len(value) - limit}]"
    return repr(value) if isinstance(value, str) else str(value)


def fmt_kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={short(v)}" for k, v in kwargs.items()) or "-"


def row_counts(unexpected: int, element_count: int, sample: list | None = None) -> dict:
    """The observed value of a per-row rule, in the keys Great Expectations' SUMMARY result uses."""
    pct = 100.0 * unexpected / element_count if element_count else 0.0
    return {"unexpected_count": int(unexpected), "element_count": int(element_count),
            "unexpected_percent": round(pct, 4), "sample": jsonable(list(sample or []))[:10]}


def observed_text(obs: Any) -> str:
    if isinstance(obs, dict) and "unexpected_count" in obs:
        unknown = [k for k in obs if k.startswith("unknown_")]
        sample = (f"{obs['distinct_unknown']} distinct, e.g. {unknown[0]} {short(obs[unknown[0]], 5)}"
                  if unknown else f"e.g. {short(obs['sample'], 5)}")
        return (f"{obs['unexpected_count']} of {obs['element_count']} rows unexpected "
                f"({obs['unexpected_percent']:.2f}%), {sample}")
    if isinstance(obs, dict) and set(obs) == {"missing"}:
        return f"missing {short(obs['missing'])}"
    return short(obs)


def failure(table: str, where: str, column: str, rule_name: str, observed: Any, rule: Any) -> dict:
    """One failure: the fields summary.json keeps and the one-line message :class:`ValidationFailed` shows."""
    rule_s = rule if isinstance(rule, str) else fmt_kwargs(rule)
    return {
        "table": table,
        "where": where,
        "column": column,
        "expectation_type": rule_name,
        "observed": jsonable(observed),
        "rule": jsonable(rule),
        "message": f"{table} ({where}): column {column}: {rule_name} failed: observed "
                   f"{observed_text(jsonable(observed))} (rule: {rule_s})",
    }


def days_label(days: list[int], counts: list[int] | None = None) -> str:
    """``day D`` / ``days D1, D2`` (with each day's row count when given), or a range beyond six days."""
    order = sorted(set(days))
    if len(order) > 6:
        return f"{len(order)} days {order[0]}..{order[-1]}"
    if counts is not None:
        per_day = dict(zip(days, counts, strict=True))
        body = ", ".join(f"{d} ({per_day[d]} rows)" for d in order)
    else:
        body = ", ".join(map(str, order))
    return ("day " if len(order) == 1 else "days ") + body
