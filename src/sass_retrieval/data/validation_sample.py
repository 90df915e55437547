"""The sampled half of data validation: a seeded sample per scenario for the per-row Great Expectations suite.

The rules kept here are shares of rows that must agree with themselves -- ``time_ms`` inside its ``date``,
``play_time_ms`` consistent with ``long_view`` -- each allowed a small tolerance (``mostly``). A share is
estimated from a sample as well as from every row once the sample is large, while GE's pandas engine on
every row of a 100M-row day neither fits memory nor ends in time. Rules that need every row live in
:mod:`.validation_full`.

The sample is drawn in DuckDB without loading the population: every row gets ``hash(seed, key columns)``
and each scenario keeps its ``validation.sample_rows`` smallest hashes (:func:`draw_sample`: two passes,
memory of the order of the sample). A row's hash depends on its own values only, so the same store and
seed draw the same rows whatever the file order, the thread count or the memory limit -- which DuckDB's
reservoir sampling does not promise under multi-threading. Rows sharing a key (duplicates) share a hash and
enter or leave the sample together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from ..params_schema import Validation
from .schema import INTERACTIONS, LONG_VIEW_MS
from .validation_full import VIEW

UTC8_OFFSET_MS = 8 * 3600 * 1000
HOUR_MS = 3600 * 1000
HASHED = ("user_id", "video_id", "time_ms", "scenario", "date")
HOURS = "hours_into_date"
PLAY_RULE = "long_view_play_time_consistent"
BUCKET_BITS = 16   # the sample's cut-off is found among 2^16 hash buckets per scenario

DERIVED = {
    HOURS: "hours from 00:00 UTC+8 of `date` to `time_ms`",
    PLAY_RULE: f"1 when (long_view == 0 or play_time_ms > 0) and (long_view == 1 or play_time_ms < {LONG_VIEW_MS})",
}


@dataclass
class Sample:
    frame: pd.DataFrame                  # the sampled rows' canonical columns
    part_dates: np.ndarray               # each sampled row's day folder, aligned with frame
    rows_per_scenario: int
    seed: int
    population: dict[str, int] = field(default_factory=dict)   # rows per scenario over the window
    drawn: dict[str, int] = field(default_factory=dict)        # rows sampled per scenario

    def describe(self) -> dict:
        """What summary.json and the Data Docs say about the sample."""
        return {"rows_per_scenario": self.rows_per_scenario, "seed": self.seed, "population": self.population,
                "drawn": self.drawn, "rows": int(len(self.frame)), "population_rows": sum(self.population.values()),
                "method": "per scenario, the rows with the smallest hash(seed, " + ", ".join(HASHED) + ")"}

    @property
    def run_name_part(self) -> str:
        """For the GE run name (a folder name in the Data Docs: no spaces or slashes)."""
        return f"sample-{self.rows_per_scenario}-per-scenario_seed-{self.seed}"


def _scenario_name(value) -> str:
    return "<null>" if value is None else str(value)


def draw_sample(con: duckdb.DuckDBPyConnection, rows_per_scenario: int, seed: int) -> Sample:
    """``rows_per_scenario`` rows of each scenario of the registered window (all of a smaller scenario): those
    with the smallest ``hash(seed, HASHED)``.

    Memory stays of the order of the sample whatever the population: pass 1 counts rows per scenario and
    per bucket of the hash's top ``BUCKET_BITS`` bits (a small spillable aggregate) and finds, per scenario,
    the bucket where the running count reaches ``rows_per_scenario``; pass 2 keeps the rows up to that bucket
    (the sample plus a fraction of one bucket) and cuts them by hash to the exact size."""
    n = int(rows_per_scenario)

    def h(prefix: str = "") -> str:
        return f"hash({int(seed)}::BIGINT, {', '.join(prefix + c for c in HASHED)})"

    shift = 64 - BUCKET_BITS
    con.execute(f"CREATE OR REPLACE TEMP TABLE sample_buckets AS SELECT scenario, {h()} >> {shift} AS b, "
                f"count(*) AS n FROM {VIEW} GROUP BY ALL")
    con.execute("CREATE OR REPLACE TEMP TABLE sample_cut AS SELECT scenario, sum(n) AS population, "
                f"coalesce(min(b) FILTER (WHERE cum >= {n}), {2 ** BUCKET_BITS - 1}) AS last_bucket FROM "
                "(SELECT scenario, b, n, sum(n) OVER (PARTITION BY scenario ORDER BY b) AS cum FROM sample_buckets) "
                "GROUP BY scenario")
    population = {_scenario_name(s): int(p) for s, p in
                  con.execute("SELECT scenario, population FROM sample_cut ORDER BY scenario").fetchall()}
    cols = ", ".join(f'"{c}"' for c in INTERACTIONS.names)
    # ties beyond n are copies of one key (same hash): cut them in a fixed order of every column
    frame = con.execute(
        f"SELECT {cols}, part_date FROM (SELECT w.*, {h('w.')} AS _h FROM {VIEW} w JOIN sample_cut c "
        f"ON w.scenario IS NOT DISTINCT FROM c.scenario WHERE {h('w.')} >> {shift} <= c.last_bucket) "
        f"QUALIFY row_number() OVER (PARTITION BY scenario ORDER BY _h, {cols}, part_date) <= {n} "
        f"ORDER BY scenario, _h, {cols}, part_date").df()
    part_dates = frame.pop("part_date").to_numpy(dtype=np.int64)
    counts = frame["scenario"].value_counts(dropna=False)
    drawn = {_scenario_name(None if pd.isna(s) else s): int(c) for s, c in counts.items()}
    return Sample(frame.reset_index(drop=True), part_dates, n, int(seed), population,
                  {s: drawn.get(s, 0) for s in population})


def empty_sample(rows_per_scenario: int, seed: int) -> Sample:
    frame = pd.DataFrame({c.name: pd.Series(dtype="float64" if c.dtype != "string" else "object")
                          for c in INTERACTIONS.columns})
    return Sample(frame, np.zeros(0, dtype=np.int64), int(rows_per_scenario), int(seed))


# ---- derived columns ---------------------------------------------------------------------------------


def _local_midnight_ms(dnum: pd.Series) -> pd.Series:
    """YYYYMMDD (float, NaN allowed) -> epoch ms of that day's 00:00 in naive local time."""
    uniq = dnum.dropna().unique()
    ok = uniq[(uniq == np.floor(uniq)) & (uniq > 0) & (uniq < 1e8)]
    stamps = pd.to_datetime(pd.Series(ok.astype(np.int64).astype(str)), format="%Y%m%d", errors="coerce")
    # unit-agnostic (pandas 3 parses to datetime64[us], pandas 2 to [ns])
    ms = ((stamps - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)).astype("float64").to_numpy()
    return dnum.map(dict(zip(ok.tolist(), ms.tolist(), strict=True)))


def play_time_consistent(long_view: pd.Series, play_ms: pd.Series) -> pd.Series:
    """The play-time rule per row (:mod:`.validation`'s docstring): 1 when the play time agrees with long_view.

    A null or non-numeric value counts as agreeing: the full checks' not-null rule reports those."""
    lv = pd.to_numeric(long_view, errors="coerce")
    play = pd.to_numeric(play_ms, errors="coerce")
    bad = ((lv == 1) & (play <= 0)) | ((lv == 0) & (play >= LONG_VIEW_MS))
    return (~bad.fillna(False).astype(bool)).astype("int8")


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """The sample with the per-row helper columns the suite's expectations check (``DERIVED``)."""
    out = frame.copy(deep=False)
    dnum = pd.to_numeric(frame["date"], errors="coerce").astype("float64")
    tnum = pd.to_numeric(frame["time_ms"], errors="coerce").astype("float64")
    out[HOURS] = (tnum + UTC8_OFFSET_MS - _local_midnight_ms(dnum)) / HOUR_MS
    out[PLAY_RULE] = play_time_consistent(frame["long_view"], frame["play_time_ms"])
    return out


def sample_suite(gxe, rules: Validation, sample: Sample) -> list:
    """The interactions suite of the sample: the per-row shares, with their thresholds (``mostly``)."""
    on = (f"on a seeded sample of {len(sample.frame)} of {sum(sample.population.values())} rows "
          f"({sample.rows_per_scenario} per scenario, seed {sample.seed})")
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column=HOURS, min_value=-rules.time_slack_hours, max_value=24, strict_max=True,
            mostly=rules.min_time_consistency,
            notes=f"derived: {DERIVED[HOURS]}; time_ms lies on `date` (UTC+8); {on}"),
        gxe.ExpectColumnValuesToBeInSet(
            column=PLAY_RULE, value_set=[1], mostly=rules.min_play_time_consistency,
            notes=f"derived: {DERIVED[PLAY_RULE]}; the play-time rule of a long view; {on}"),
    ]
