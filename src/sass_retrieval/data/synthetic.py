"""Synthetic multi-scenario interaction logs with planted, learnable structure.

The pipeline must run end to end (CI, demos, scale tests) without the real KuaiRand release, and a
model trained on fake data is only a meaningful smoke test if the fake data has something to learn.
So the generator plants a small latent world and then *observes* it through the same canonical
tables the importer writes (``schema.INTERACTIONS``, ``USERS``, ``ITEMS``):

- ``K`` latent topics. Each user has a sparse interest mixture over them (one dominant topic plus one
  or two secondary ones); each item has one topic.
- Scenarios express the same user differently: in scenario ``s`` the user's preference is
  ``theta_s = (1 - lam_s) * theta @ T_s + lam_s * b_s`` where ``T_s`` leaks part of every topic's mass
  onto another topic (a per-scenario linear transform) and ``b_s`` is the scenario's own topic taste
  (a shift). This is the "same object, different augmentation" that contrastive pretraining exploits.
- Items are shared across scenarios but each scenario has its own catalogue subset and its own
  popularity: a Zipf-like base popularity times a per-scenario log-normal factor.
- Scenario sizes are skewed like KuaiRand (one scenario ~70%, one ~15%, several small sparse ones),
  user activity is heavy-tailed, and users visit a random subset of scenarios, so about half of the
  active users and most items show up in two or more scenarios.
- Each exposure is partly personalised (its topic drawn from the user's scenario preference) and
  partly popularity-driven; the click probability rises with the user's scenario affinity for the
  item's topic and with the item's popularity in that scenario. Per-scenario offsets are calibrated
  on a pilot sample so each scenario hits its target click rate (overall ~0.4, as in KuaiRand).
- Side attributes leak the latent state the way real ones do: ``profile_0`` is the dominant topic with
  noise, ``tag`` the item's topic with noise, authors specialise in a topic, ``active_degree`` and the
  range buckets follow activity.
- The other feedback labels (``schema.FEEDBACK_COLUMNS``) come from the same affinity: a long view is
  likely after a click and likelier the better the match, a like rarer and more affinity-driven still
  (mostly after a long view), follow / comment / forward / profile enter rare, a hate rare and most
  likely on a poor match. The play time agrees with the long view (>= 18 s, or the whole video when it is
  shorter; under 18 s otherwise), the rule validation checks.
- About 2% of rows are exact duplicates and ~1% are random exposures (``is_rand``), like the real log;
  a share of items is uploaded during the window, so later days carry ids earlier days never saw.

Generation streams: rows are produced day by day in time-ordered chunks with vectorised numpy and
handed to ``DayWriter``, so memory is bounded by ``chunk_rows`` plus the per-user and per-item state,
whatever the total row count. Every random stream is derived from ``(seed, purpose, day, chunk)``, so
the same config always writes the same tables, and a day's rows never depend on which other days were
generated: the latent world (users, items, tastes) comes from the seed alone, each day from
``(seed, day)``. A new kind of column gets a purpose of its own (the feedback labels: ``FEEDBACK_STREAM``)
so that adding it moves no draw of the columns that existed before.

A daily feed: ``generate(..., dates=[...])`` writes any days, not only the configured range
``[start_date, start_date + days)``. A day after the range shows the whole catalogue and the range's
mean rows per day (with the weekly rhythm); a day before it shows the first day's catalogue. The
pipeline's ingest asks for the days of the run's window, so the embedded default runs on any day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .schema import FEEDBACK_COLUMNS, INTERACTIONS, ITEMS, LONG_VIEW_MS, USERS
from .store import DayWriter, write_table

if TYPE_CHECKING:
    from ..params_schema import Params

log = logging.getLogger(__name__)

# ---- knobs of the planted world -----------------------------------------------------------------
# Kept as module constants rather than config fields: they shape the data's character, which the
# rest of the pipeline (and the tests' bounds) rely on, so they are not meant to be tuned per run.

MAX_TOPICS = 16
DUP_RATE = 0.02  # exact duplicate rows, as the upstream log repeats some (user, video, time) rows
RAND_RATE = 0.01  # exposures inserted at random (is_rand = 1); their click rate is naturally lower
NEW_ITEM_RATE = 0.10  # items uploaded during the window: new ids appear on later days
ZIPF_EXPONENT = 0.9
ACTIVITY_SIGMA = 1.0  # log-normal activity: a few heavy users, a long tail of occasional ones
AFFINITY_WEIGHT = 0.9  # click logit per unit of log(scenario affinity)
AFFINITY_FLOOR = 0.03
POPULARITY_WEIGHT = 0.25
PILOT_ROWS_PER_SCENARIO = 6000
UTC8_MS = 8 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000

# Share of exposure mass that follows the user's taste rather than the scenario's popular topics.
PERSONALISATION = 0.7

# Hour-of-day profile (UTC+8), KuaiRand-Pure's rows per hour in thousands: quiet before dawn,
# busy from noon to late evening.
HOUR_WEIGHTS = np.array(
    [7.5, 4.5, 3.0, 1.8, 1.5, 1.6, 3.0, 4.6, 5.9, 7.2, 8.2, 9.4,
     10.5, 10.4, 9.4, 9.5, 10.1, 10.9, 10.6, 10.0, 10.5, 11.1, 12.0, 11.4]
)

ACTIVE_DEGREES = (  # most to least active, with roughly KuaiRand's proportions
    ("full_active", 0.66), ("high_active", 0.225), ("middle_active", 0.078), ("2_14_day_new", 0.023),
    ("low_active", 0.011), ("30day_retention", 0.0006), ("single_low_active", 0.0025),
    ("day_new", 0.0005), ("UNKNOWN", 0.0004),
)
FOLLOW_RANGES = (  # low to high
    ("0", 0.007), ("(0,10]", 0.064), ("(10,50]", 0.18), ("(50,100]", 0.147), ("(100,150]", 0.096),
    ("(150,250]", 0.128), ("(250,500]", 0.16), ("500+", 0.218),
)
FANS_RANGES = (
    ("0", 0.042), ("[1,10)", 0.195), ("[10,100)", 0.384), ("[100,1k)", 0.318), ("[1k,5k)", 0.054),
    ("[5k,1w)", 0.004), ("[1w,10w)", 0.003), ("[10w,100w)", 0.0005), ("[100w,1000w)", 0.0001),
)
FRIEND_RANGES = (
    ("0", 0.124), ("[1,5)", 0.193), ("[5,30)", 0.278), ("[30,60)", 0.105), ("[60,120)", 0.101),
    ("[120,250)", 0.083), ("250+", 0.116),
)
REGISTER_RANGES = (
    ("8-14", 0.001), ("15-30", 0.005), ("31-60", 0.014), ("61-90", 0.014), ("91-180", 0.038),
    ("181-365", 0.065), ("366-730", 0.127), ("730+", 0.736),
)
UPLOAD_TYPES = (
    ("LongImport", 0.386), ("Web", 0.319), ("ShortImport", 0.121), ("Kmovie", 0.116),
    ("LongPicture", 0.019), ("UNKNOWN", 0.011), ("PictureSet", 0.01), ("LongCamera", 0.008),
    ("ShortCamera", 0.006), ("ShareFromOtherApp", 0.004),
)
# Cardinalities of KuaiRand's anonymised profile codes; 0 and 1 and 2 are replaced by planted codes.
PROFILE_CARDINALITY = (0, 7, 50, 1471, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of a synthetic store; everything else is fixed so runs stay comparable.

    The generator's own record of params.yaml's ``data.synthetic`` (``from_params``), in the types its
    fingerprint (``fingerprint``: may a stored day be kept?) was always written with; no defaults here but
    the streaming chunk size, which is not a property of the data."""

    seed: int
    users: int
    items: int
    scenarios: tuple[str, ...]
    days: int
    rows: int
    start_date: int  # YYYYMMDD
    chunk_rows: int = 500_000  # streaming chunk size

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", tuple(str(s) for s in self.scenarios))
        problems = []
        if self.users < 1 or self.items < 1:
            problems.append(f"users and items must be >= 1 (got {self.users}, {self.items})")
        if not self.scenarios or len(set(self.scenarios)) != len(self.scenarios):
            problems.append(f"scenarios must be non-empty and unique (got {self.scenarios})")
        if self.days < 1 or self.rows < 0 or self.chunk_rows < 1:
            problems.append(f"days >= 1, rows >= 0, chunk_rows >= 1 required "
                            f"(got {self.days}, {self.rows}, {self.chunk_rows})")
        try:
            dt.datetime.strptime(str(self.start_date), "%Y%m%d")
        except ValueError:
            problems.append(f"start_date must be YYYYMMDD (got {self.start_date!r})")
        if problems:
            raise ValueError("SyntheticConfig: " + "; ".join(problems))

    @classmethod
    def from_params(cls, params: Params) -> SyntheticConfig:
        """The generator of params.yaml's ``data.synthetic`` (the schema checked every value)."""
        section = params.data.synthetic
        return cls(seed=int(section.seed), users=int(section.users), items=int(section.items),
                   scenarios=tuple(section.scenarios), days=int(section.days), rows=int(section.rows),
                   start_date=int(section.start_date))

    @property
    def dates(self) -> list[int]:
        first = dt.datetime.strptime(str(self.start_date), "%Y%m%d").date()
        return [int((first + dt.timedelta(days=i)).strftime("%Y%m%d")) for i in range(self.days)]


# ---- time helpers -------------------------------------------------------------------------------


def date_of_time_ms(time_ms: np.ndarray) -> np.ndarray:
    """Calendar day (int32 YYYYMMDD) of epoch-millisecond timestamps in UTC+8.

    KuaiRand dates its log in Beijing time, so a day boundary is 16:00 UTC; every source must use
    the same rule or a row could land in a partition whose ``date`` disagrees with its ``time_ms``.
    """
    ms = np.asarray(time_ms, dtype=np.int64) + UTC8_MS
    days = ms.astype("datetime64[ms]").astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    y = years.astype(np.int64) + 1970
    m = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    d = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    return (y * 10000 + m * 100 + d).astype(np.int32)


def day_start_ms(date: int) -> int:
    """Epoch ms of 00:00 UTC+8 on ``date`` (YYYYMMDD), the inverse of ``date_of_time_ms``."""
    day = dt.datetime.strptime(str(int(date)), "%Y%m%d").replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return int(day.timestamp()) * 1000


# ---- the latent world ---------------------------------------------------------------------------


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent generator per purpose: adding a chunk or a draw elsewhere never shifts this one."""
    return np.random.default_rng([int(seed), *(int(s) for s in stream)])


def scenario_shares(n: int) -> np.ndarray:
    """Row share per scenario: ~70% and ~15% for the first two, a geometric tail for the rest."""
    if n == 1:
        return np.ones(1)
    head = np.array([0.70, 0.15])[:n]
    if n <= 2:
        return head / head.sum()
    tail = 0.5 ** np.arange(n - 2)
    return np.concatenate([head, 0.15 * tail / tail.sum()])


@dataclass(frozen=True)
class World:
    """Ground truth behind a synthetic store; tests and benchmarks use it to check what is learnable.

    Index conventions: users and items are indexed by their id (ids are ``0..n-1``), scenarios by
    their position in ``SyntheticConfig.scenarios``.
    """

    n_topics: int
    user_theta: np.ndarray  # (users, K) float32 sparse interest mixture
    user_topic: np.ndarray  # (users,) dominant topic
    user_bias: np.ndarray  # (users,) click propensity
    joint_cum: np.ndarray  # cumulative P(user, scenario), flattened user-major
    item_topic: np.ndarray  # (items,)
    item_quality: np.ndarray  # (items,) click-logit term shared by scenarios (quality, ads)
    item_duration_ms: np.ndarray  # (items,) int64
    item_first_day: np.ndarray  # (items,) index of the day the item becomes available
    popularity: np.ndarray  # (S, items) exposure weight, 0 where the item is not in the scenario
    pop_z: np.ndarray  # (S, items) standardised log popularity (click-logit term)
    mix: np.ndarray  # (S, K, K) (1 - lam_s) * T_s
    shift: np.ndarray  # (S, K) lam_s * b_s
    click_offset: np.ndarray  # (S,) calibrated so each scenario meets its target click rate
    target_ctr: np.ndarray  # (S,)

    def scenario_theta(self, users: np.ndarray, scen: np.ndarray) -> np.ndarray:
        """Each row's preference as expressed in its scenario, (n, K) float32."""
        out = self.user_theta[users]
        for s in np.unique(scen):
            m = scen == s
            out[m] = out[m] @ self.mix[s] + self.shift[s]
        return out


def _zipf_categorical(rng: np.random.Generator, n: int, k: int, exponent: float = 1.1) -> np.ndarray:
    """Skewed codes 0..k-1 with a shuffled rank order: real anonymised codes are rarely uniform."""
    p = 1.0 / np.arange(1, k + 1) ** exponent
    codes = rng.permutation(k)
    return codes[rng.choice(k, size=n, p=p / p.sum())]


def _bucket_by_score(score: np.ndarray, buckets: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Assign labels by rank so the label proportions match ``buckets`` (listed low to high score)."""
    n = len(score)
    props = np.array([p for _, p in buckets], dtype=float)
    cuts = np.round(np.cumsum(props / props.sum()) * n).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(score, kind="stable")] = np.arange(n)
    idx = np.searchsorted(cuts, rank, side="right").clip(0, len(buckets) - 1)
    labels = np.array([b for b, _ in buckets], dtype=object)
    return labels[idx]


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def n_topics(cfg: SyntheticConfig) -> int:
    return int(min(MAX_TOPICS, max(2, cfg.items // 10)))


def _build_users(cfg: SyntheticConfig, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cfg.users
    topic_prior = rng.dirichlet(np.full(k, 2.0))
    dominant = rng.choice(k, size=n, p=topic_prior)
    theta = np.zeros((n, k), dtype=np.float32)
    rows = np.arange(n)
    theta[rows, dominant] = rng.uniform(0.5, 0.85, size=n)
    # One or two secondary topics share the rest; they may coincide with the dominant (then merged).
    n_secondary = 1 + (rng.random(n) < 0.5)
    rest = 1.0 - theta[rows, dominant]
    split = rng.uniform(0.3, 0.7, size=n)
    sec1 = rng.choice(k, size=n, p=topic_prior)
    sec2 = rng.choice(k, size=n, p=topic_prior)
    w1 = np.where(n_secondary == 2, rest * split, rest)
    np.add.at(theta, (rows, sec1), w1)
    np.add.at(theta, (rows, sec2), rest - w1)
    second = np.argsort(-theta, axis=1)[:, 1]
    second = np.where(theta[rows, second] > 0, second, dominant)
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, size=n)
    bias = 0.25 * _zscore(np.log(activity)) + rng.normal(0.0, 0.4, size=n)
    return {"theta": theta, "dominant": dominant, "second": second, "activity": activity, "bias": bias}


def _user_scenario_joint(cfg: SyntheticConfig, activity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """P(user, scenario): each user visits a random subset of scenarios, then columns are rescaled.

    Visiting subsets (rather than a smooth mixture) is what makes small scenarios sparse and leaves
    roughly half of the users in a single scenario; the column rescale restores the target shares.
    """
    n, s_count = cfg.users, len(cfg.scenarios)
    shares = scenario_shares(s_count)
    visit_p = np.array([0.85, 0.45] + [0.25] * max(0, s_count - 2))[:s_count]
    visits = rng.random((n, s_count)) < visit_p
    empty = ~visits.any(axis=1)
    visits[np.flatnonzero(empty), rng.choice(s_count, size=int(empty.sum()), p=shares)] = True
    pref = visits * shares * rng.gamma(1.0, 1.0, size=(n, s_count))
    pref /= pref.sum(axis=1, keepdims=True)
    joint = activity[:, None] * pref
    col = joint.sum(axis=0)
    joint *= np.where(col > 0, shares / np.where(col > 0, col, 1.0), 0.0)
    cum = np.cumsum(joint.ravel())
    return cum / cum[-1]


def _users_table(cfg: SyntheticConfig, k: int, u: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.users
    log_act = _zscore(np.log(u["activity"]))
    author = (rng.random(n) < 0.8).astype(np.int8)
    out: dict[str, Any] = {"user_id": np.arange(n, dtype=np.int64)}
    out["active_degree"] = _bucket_by_score(-(log_act + rng.normal(0, 0.5, n)), ACTIVE_DEGREES)
    out["follow_range"] = _bucket_by_score(0.6 * log_act + rng.normal(0, 1, n), FOLLOW_RANGES)
    out["fans_range"] = _bucket_by_score(0.8 * author + 0.3 * log_act + rng.normal(0, 1, n), FANS_RANGES)
    out["friend_range"] = _bucket_by_score(0.5 * log_act + rng.normal(0, 1, n), FRIEND_RANGES)
    out["register_days_range"] = _bucket_by_score(0.4 * log_act + rng.normal(0, 1, n), REGISTER_RANGES)
    out["is_live_streamer"] = (rng.random(n) < 0.22).astype(np.int8)
    out["is_video_author"] = author
    for i, card in enumerate(PROFILE_CARDINALITY):
        if i == 0:  # dominant topic, with noise
            code = np.where(rng.random(n) < 0.8, u["dominant"], rng.integers(0, k, n))
        elif i == 1:  # activity level in 7 steps, with noise
            code = _bucket_by_score(log_act + rng.normal(0, 0.7, n), tuple((str(j), 1.0) for j in range(card)))
            code = code.astype(np.int64)
        elif i == 2:  # secondary interest, spread over more codes
            code = (u["second"] * 3 + rng.integers(0, 3, n)) % card
        else:
            code = _zipf_categorical(rng, n, card)
        code = np.asarray(code, dtype=np.int64)
        if i == 4:
            code = np.where(rng.random(n) < 0.03, -1, code)
        out[f"profile_{i}"] = code
    unknown_flags = rng.random(n) < 0.026  # the six binary codes go missing together, as in KuaiRand
    for i in range(12, 18):
        out[f"profile_{i}"] = np.where(unknown_flags, -1, out[f"profile_{i}"])
    return pd.DataFrame(out)


def _build_items(cfg: SyntheticConfig, k: int, rng: np.random.Generator) -> dict[str, Any]:
    n, s_count = cfg.items, len(cfg.scenarios)
    topic_prior = rng.dirichlet(np.full(k, 3.0))
    topic = rng.choice(k, size=n, p=topic_prior)
    rank = rng.permutation(n)
    base = 1.0 / (rank + 1.0) ** ZIPF_EXPONENT
    # Per-scenario catalogue: the big scenario shows almost everything, small ones a subset.
    elig_p = np.array([0.9, 0.55] + [0.35] * max(0, s_count - 2))[:s_count]
    elig = rng.random((s_count, n)) < elig_p[:, None]
    none = ~elig.any(axis=0)
    elig[rng.integers(0, s_count, int(none.sum())), np.flatnonzero(none)] = True
    sigma = np.array([0.3] + [0.7] * (s_count - 1))[:s_count]
    factor = np.exp(rng.normal(0.0, 1.0, size=(s_count, n)) * sigma[:, None])
    popularity = base[None, :] * factor * elig
    first_day = np.zeros(n, dtype=np.int64)
    if cfg.days > 1 and n >= 10:
        new = rng.random(n) < NEW_ITEM_RATE
        new[np.argmax(base)] = False  # every day keeps at least the most popular item
        first_day[new] = rng.integers(1, cfg.days, int(new.sum()))
    # Every scenario must have something available from day 0.
    for s in range(s_count):
        if not (elig[s] & (first_day == 0)).any():
            top = int(np.argmax(base))
            elig[s, top] = True
            popularity[s, top] = base[top] * factor[s, top]
    pop_z = np.zeros_like(popularity)
    for s in range(s_count):
        m = popularity[s] > 0
        pop_z[s, m] = _zscore(np.log(popularity[s, m]))

    is_ad = rng.random(n) < 0.01
    quality = rng.normal(0.0, 0.5, size=n) + 0.15 * _zscore(np.log(base)) - 1.0 * is_ad
    topic_log_median = rng.normal(math.log(70_000), 0.5, size=k)
    duration = np.exp(topic_log_median[topic] + rng.normal(0.0, 0.8, size=n)).clip(5_000, 1_200_000)
    duration = np.round(duration).astype(np.int64)

    # Authors specialise: most of an author's videos share the author's topic.
    n_authors = max(k, n // 4)
    author_topic = rng.permutation(np.arange(n_authors) % k)
    order = np.argsort(author_topic, kind="stable")
    start = np.searchsorted(author_topic[order], np.arange(k))
    count = np.bincount(author_topic, minlength=k)
    same = order[start[topic] + (rng.random(n) * count[topic]).astype(np.int64)]
    author = np.where(rng.random(n) < 0.85, same, rng.integers(0, n_authors, n))
    author_ids = 1_000_000 + rng.permutation(n_authors * 7)[:n_authors]

    n_tags = 3 * k
    topic_tag = rng.permutation(n_tags)[:k]
    tag = np.where(rng.random(n) < 0.85, topic_tag[topic], rng.integers(0, n_tags, n))
    tag = np.where(rng.random(n) < 0.01, -1, tag)

    labels = np.array([lab for lab, _ in UPLOAD_TYPES], dtype=object)
    marg = np.array([p for _, p in UPLOAD_TYPES])
    topic_upload = rng.dirichlet(marg / marg.sum() * 30.0, size=k)
    cum = np.cumsum(topic_upload, axis=1)
    upload = labels[(rng.random(n)[:, None] > cum[topic]).sum(axis=1).clip(0, len(labels) - 1)]
    video_type = np.where(is_ad, "AD", "NORMAL").astype(object)
    duration_known = np.where(rng.random(n) < 0.03, np.nan, duration.astype(np.float64))
    table = pd.DataFrame({
        "video_id": np.arange(n, dtype=np.int64),
        "author_id": author_ids[author].astype(np.int64),
        "tag": tag.astype(np.int64),
        "video_type": video_type,
        "upload_type": upload,
        "video_duration_ms": duration_known,
    })
    return {"topic": topic, "quality": quality, "duration": duration, "first_day": first_day,
            "popularity": popularity, "pop_z": pop_z, "table": table}


def _scenario_expression(cfg: SyntheticConfig, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-scenario transform of the user's taste: a topic leak (T_s) and a scenario taste (b_s).

    The largest scenario is the near-identity reference; smaller ones distort more, which is what
    makes a shared-plus-scenario-specific model beat both one global and fully separate models.
    """
    s_count = len(cfg.scenarios)
    mix = np.empty((s_count, k, k), dtype=np.float32)
    shift = np.empty((s_count, k), dtype=np.float32)
    for s in range(s_count):
        eps = 0.0 if s == 0 else rng.uniform(0.15, 0.45)
        lam = 0.1 if s == 0 else rng.uniform(0.15, 0.3)
        perm = rng.permutation(k)
        t = (1.0 - eps) * np.eye(k)
        t[np.arange(k), perm] += eps
        mix[s] = (1.0 - lam) * t
        shift[s] = lam * rng.dirichlet(np.full(k, 0.5))
    return mix, shift


def _target_ctr(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-scenario click rates differ like KuaiRand's tabs; the row-weighted mean lands near 0.4."""
    s_count = len(cfg.scenarios)
    target = rng.uniform(0.15, 0.55, size=s_count)
    target[0] = 0.45
    if s_count > 1:
        target[1] = 0.3
    return target


class _DayTables:
    """Sampling tables for one day: which items each (scenario, topic) can expose, and how often.

    Items are laid out scenario-major, topic-sorted inside a scenario, with one global cumulative
    weight array; a row of group (s, t) then samples by ``searchsorted`` inside its group's slice,
    which is fully vectorised over rows whatever their groups.
    """

    def __init__(self, world: World, day: int) -> None:
        s_count, n = world.popularity.shape
        k = world.n_topics
        weight = world.popularity * (world.item_first_day <= day)[None, :]
        self.order = np.argsort(world.item_topic, kind="stable")
        topic_sorted = world.item_topic[self.order]
        t_start = np.searchsorted(topic_sorted, np.arange(k), side="left")
        t_end = np.searchsorted(topic_sorted, np.arange(k), side="right")
        flat = weight[:, self.order].ravel()
        self.cum = np.cumsum(flat)
        self.n = n
        starts = (np.arange(s_count)[:, None] * n + t_start[None, :])  # (S, K)
        ends = (np.arange(s_count)[:, None] * n + t_end[None, :])
        self.lo_idx, self.hi_idx = starts, ends
        before = np.where(starts > 0, self.cum[np.maximum(starts - 1, 0)], 0.0)
        after = np.where(ends > 0, self.cum[np.maximum(ends - 1, 0)], 0.0)
        self.lo = before
        self.mass = np.where(ends > starts, after - before, 0.0)  # (S, K)
        total = self.mass.sum(axis=1, keepdims=True)
        self.topic_prior = self.mass / np.where(total > 0, total, 1.0)
        # Random exposures: uniform over what the scenario can show today.
        avail = weight > 0
        self.rand_items = [np.flatnonzero(avail[s]) for s in range(s_count)]

    def sample_items(self, rng: np.random.Generator, scen: np.ndarray, topic: np.ndarray) -> np.ndarray:
        target = self.lo[scen, topic] + rng.random(len(scen)) * self.mass[scen, topic]
        idx = np.searchsorted(self.cum, target, side="right")
        idx = np.clip(idx, self.lo_idx[scen, topic], self.hi_idx[scen, topic] - 1)
        return self.order[idx % self.n]

    def sample_random(self, rng: np.random.Generator, scen: np.ndarray) -> np.ndarray:
        out = np.empty(len(scen), dtype=np.int64)
        for s in np.unique(scen):
            m = scen == s
            pool = self.rand_items[s]
            out[m] = pool[rng.integers(0, len(pool), int(m.sum()))]
        return out


def _exposures(world: World, tables: _DayTables, rng: np.random.Generator, users: np.ndarray,
               scen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items shown to (user, scenario) rows, their click logit without the scenario offset, and the
    log affinity term of that logit (``log(affinity + AFFINITY_FLOOR)``), which the feedback labels reuse."""
    n = len(users)
    theta_s = world.scenario_theta(users, scen)
    p = PERSONALISATION * theta_s + (1.0 - PERSONALISATION) * tables.topic_prior[scen]
    p *= tables.mass[scen] > 0
    cum = np.cumsum(p, axis=1)
    r = rng.random(n) * cum[:, -1]
    topic = (cum <= r[:, None]).sum(axis=1).clip(0, world.n_topics - 1)
    items = tables.sample_items(rng, scen, topic)
    is_rand = rng.random(n) < RAND_RATE
    if is_rand.any():
        items[is_rand] = tables.sample_random(rng, scen[is_rand])
    affinity = theta_s[np.arange(n), world.item_topic[items]]
    log_affinity = np.log(affinity + AFFINITY_FLOOR)
    logit = (AFFINITY_WEIGHT * log_affinity
             + POPULARITY_WEIGHT * world.pop_z[scen, items]
             + world.item_quality[items] + world.user_bias[users])
    return items, is_rand, logit, log_affinity


def _calibrate(logits: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Offset per scenario so that mean(sigmoid(offset + logit)) equals the target click rate."""
    out = np.empty(len(target))
    for s, (lg, t) in enumerate(zip(logits, target, strict=True)):
        if len(lg) == 0:
            out[s] = math.log(t / (1 - t))
            continue
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.mean(1.0 / (1.0 + np.exp(-(mid + lg)))) < t:
                lo = mid
            else:
                hi = mid
        out[s] = 0.5 * (lo + hi)
    return out


def build_world(cfg: SyntheticConfig) -> tuple[World, pd.DataFrame, pd.DataFrame]:
    """The latent world plus the users and items tables that observe it."""
    k = n_topics(cfg)
    u = _build_users(cfg, k, _rng(cfg.seed, 1))
    joint_cum = _user_scenario_joint(cfg, u["activity"], _rng(cfg.seed, 2))
    users = _users_table(cfg, k, u, _rng(cfg.seed, 3))
    it = _build_items(cfg, k, _rng(cfg.seed, 4))
    mix, shift = _scenario_expression(cfg, k, _rng(cfg.seed, 5))
    target = _target_ctr(cfg, _rng(cfg.seed, 6))
    world = World(
        n_topics=k, user_theta=u["theta"], user_topic=u["dominant"], user_bias=u["bias"],
        joint_cum=joint_cum, item_topic=it["topic"], item_quality=it["quality"],
        item_duration_ms=it["duration"], item_first_day=it["first_day"], popularity=it["popularity"],
        pop_z=it["pop_z"], mix=mix, shift=shift, click_offset=np.zeros(len(cfg.scenarios)),
        target_ctr=target,
    )
    # Pilot: draw users conditional on each scenario on day 0 and solve for the click offsets.
    rng = _rng(cfg.seed, 7)
    tables = _DayTables(world, 0)
    s_count = len(cfg.scenarios)
    joint = np.diff(joint_cum, prepend=0.0).reshape(cfg.users, s_count)
    logits = []
    for s in range(s_count):
        col = np.cumsum(joint[:, s])
        if col[-1] <= 0:
            logits.append(np.empty(0))
            continue
        pu = np.searchsorted(col, rng.random(PILOT_ROWS_PER_SCENARIO) * col[-1], side="right")
        pu = pu.clip(0, cfg.users - 1)
        _, _, lg, _ = _exposures(world, tables, rng, pu, np.full(len(pu), s))
        logits.append(lg)
    offsets = _calibrate(logits, target)
    world = dataclasses.replace(world, click_offset=offsets)
    return world, users, it["table"]


# ---- streaming the log --------------------------------------------------------------------------


# Random streams of a day outside the configured range [start_date, start_date + days) (the live feed):
# purposes 8, 9 and 10 of the range's days plus this offset, keyed by the date itself.
LIVE_STREAM = 10
WEEKEND_WEIGHT = 1.3  # rows on a Saturday or Sunday relative to a weekday
MEAN_DAY_WEIGHT = (5 + 2 * WEEKEND_WEIGHT) / 7


def _range_rows(cfg: SyntheticConfig) -> np.ndarray:
    """Rows per day of the configured range: ``cfg.rows`` split over ``cfg.days`` with a weekly rhythm."""
    rng = _rng(cfg.seed, 8)
    weekday = np.array([dt.datetime.strptime(str(d), "%Y%m%d").weekday() for d in cfg.dates])
    day_w = np.where(weekday >= 5, WEEKEND_WEIGHT, 1.0) * rng.uniform(0.9, 1.1, size=cfg.days)
    return rng.multinomial(cfg.rows, day_w / day_w.sum())


@dataclass(frozen=True)
class _DayPlan:
    """One day to generate: its date, its position relative to ``start_date`` and the seed of its streams.

    A day inside the configured range keeps the streams it always had (``(seed, purpose, index)``), so the
    fixed store of ``make run`` does not change; a day outside it (the daily feed) is keyed by its date
    (``(seed, purpose + LIVE_STREAM, date)``). Either way a day's rows depend on the config and the day
    alone, never on which other days were generated with it.
    """

    date: int
    index: int  # days since start_date; negative before it
    in_range: bool
    rows: int
    chunks: list[tuple[int, np.ndarray, np.ndarray]]  # (slices in the day, slice ids, slice row counts)

    def rng(self, seed: int, purpose: int, *more: int) -> np.random.Generator:
        if self.in_range:
            return _rng(seed, purpose, self.index, *more)
        return _rng(seed, purpose + LIVE_STREAM, self.date, *more)

    @property
    def table_day(self) -> int:
        """The day whose catalogue is shown: days before the range show the first day's items."""
        return max(self.index, 0)


def _plan_day(cfg: SyntheticConfig, date: int, range_rows: np.ndarray) -> _DayPlan:
    """Row count and time-ordered chunks of one day.

    Inside a day the hour profile is cut into equal time slices small enough that consecutive slices can
    be grouped into chunks of at most ``chunk_rows``: each part file covers its own stretch of the day,
    like the chunks of a time-sorted real log. A day outside the range gets the range's mean rows per day,
    with the same weekly rhythm and +-10% noise.
    """
    first = dt.datetime.strptime(str(cfg.start_date), "%Y%m%d").date()
    day = dt.datetime.strptime(str(int(date)), "%Y%m%d").date()
    index = (day - first).days
    plan = _DayPlan(int(date), index, 0 <= index < cfg.days, 0, [])
    if plan.in_range:
        n_day = int(range_rows[index])
    else:
        rng = plan.rng(cfg.seed, 8)
        weight = (WEEKEND_WEIGHT if day.weekday() >= 5 else 1.0) * rng.uniform(0.9, 1.1)
        n_day = int(rng.poisson(cfg.rows / cfg.days * weight / MEAN_DAY_WEIGHT))
    if n_day == 0:
        return plan
    hour_p = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
    sub = max(1, math.ceil(2 * n_day * hour_p.max() / cfg.chunk_rows))
    slice_p = np.repeat(hour_p / sub, sub)
    counts = plan.rng(cfg.seed, 9).multinomial(n_day, slice_p)
    chunks = []
    start, acc = 0, 0
    for j, c in enumerate(counts):
        if acc and acc + c > cfg.chunk_rows:
            chunks.append((len(counts), np.arange(start, j), counts[start:j]))
            start, acc = j, 0
        acc += int(c)
    chunks.append((len(counts), np.arange(start, len(counts)), counts[start:]))
    return dataclasses.replace(plan, rows=n_day, chunks=[c for c in chunks if c[2].sum() > 0])


# ---- feedback beyond the click --------------------------------------------------------------------
# Purpose number of the feedback labels' random stream (per day and chunk, like the chunk's own stream 10;
# a day outside the range uses purpose + LIVE_STREAM). A stream of its own is what keeps every column the
# store had before these labels (ids, times, clicks, durations) byte-identical for the same config.
FEEDBACK_STREAM = 11
# The log affinity where a label's logit is its base: a row whose item is on the user's main topic.
AFFINITY_REF = math.log(0.5 + AFFINITY_FLOOR)


@dataclass(frozen=True)
class _Label:
    """``logit = base + if_click * click + if_long_view * long_view + affinity * (log_affinity - AFFINITY_REF)``.

    The affinity is the one that drives the click, so the labels agree with the click about what a user
    likes while adding their own signal: among clicked rows a long view, and more so a like, marks the
    strong matches; a hate marks the weak ones.
    """

    base: float
    if_click: float = 0.0
    if_long_view: float = 0.0
    affinity: float = 0.0


# Rates near KuaiRand-Pure's: long view 0.31 (0.70 of the clicks, a few of the skips), like 0.017 (mostly
# after a long view), profile enter 0.019, comment 0.0025, follow 0.0013, forward 0.0008, hate 0.0008.
FEEDBACK_LABELS = {  # one per schema.FEEDBACK_COLUMNS; drawn in that order, long_view (which the others use) first
    "long_view": _Label(base=-5.6, if_click=7.0, affinity=1.2),
    "is_like": _Label(base=-5.4, if_click=1.0, if_long_view=1.3, affinity=1.8),
    "is_follow": _Label(base=-7.6, if_click=1.0, if_long_view=1.0, affinity=1.2),
    "is_comment": _Label(base=-7.1, if_click=1.0, if_long_view=1.2, affinity=1.0),
    "is_forward": _Label(base=-8.0, if_click=1.0, if_long_view=1.0, affinity=1.0),
    "is_hate": _Label(base=-8.8, affinity=-1.0),
    "is_profile_enter": _Label(base=-4.9, if_click=1.2, if_long_view=0.8, affinity=0.8),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _feedback(rng: np.random.Generator, click: np.ndarray, log_affinity: np.ndarray, duration: np.ndarray,
              play: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The feedback labels of ``FEEDBACK_COLUMNS`` per row, and the play time made consistent with long_view.

    Every draw has the rows' length and a fixed order, so a label's draws never depend on another's
    values. The play-time rule (``validation``): a long view has ``play >= min(LONG_VIEW_MS, duration)``,
    any other row ``play < LONG_VIEW_MS``. The click's play time already satisfies it for most rows; only
    the rows that contradict their drawn long view get a new play time (from this stream too).
    """
    n = len(click)
    uniform = rng.random((len(FEEDBACK_COLUMNS), n))
    stretch = np.abs(rng.normal(0.0, 0.5, n))
    share = rng.uniform(0.1, 0.95, n)
    labels: dict[str, np.ndarray] = {}
    centred = log_affinity - AFFINITY_REF
    for u, name in zip(uniform, FEEDBACK_COLUMNS, strict=True):
        lab = FEEDBACK_LABELS[name]
        long_view = labels.get("long_view", np.zeros(n, dtype=bool))
        logit = lab.base + lab.if_click * click + lab.if_long_view * long_view + lab.affinity * centred
        labels[name] = u < _sigmoid(logit)
    need = np.minimum(LONG_VIEW_MS, duration)
    long_view = labels["long_view"]
    # a long view watched at least the threshold (the whole video when shorter), up to ~2.5x with replays
    longer = np.maximum(need, np.minimum(np.ceil(need * np.exp(stretch)), 2.5 * duration)).astype(np.int64)
    shorter = np.floor(need * share).astype(np.int64)  # a view that stopped before the threshold
    play = np.where(long_view & (play < need), longer, play)
    play = np.where(~long_view & (play >= LONG_VIEW_MS), shorter, play)
    return labels, play


def _chunk(cfg: SyntheticConfig, world: World, tables: _DayTables, day: _DayPlan, slices: np.ndarray,
           counts: np.ndarray, n_slices: int, chunk_no: int) -> pd.DataFrame:
    rng = day.rng(cfg.seed, 10, chunk_no)
    n = int(counts.sum())
    n_dup = int(rng.binomial(n, DUP_RATE)) if n >= 2 else 0
    n_dup = min(n_dup, n - 1)
    base = n - n_dup

    slice_ms = DAY_MS // n_slices
    slice_of_row = np.repeat(slices, counts)
    t0 = day_start_ms(day.date)
    times = t0 + slice_of_row * slice_ms + (rng.random(n) * slice_ms).astype(np.int64)
    times.sort()
    # Base rows take a random subset of the times; duplicates copy a base row, time included.
    base_pos = np.sort(rng.choice(n, size=base, replace=False)) if n_dup else np.arange(n)

    flat = np.searchsorted(world.joint_cum, rng.random(base), side="right").clip(0, len(world.joint_cum) - 1)
    s_count = len(cfg.scenarios)
    users, scen = flat // s_count, flat % s_count
    items, is_rand, logit, log_affinity = _exposures(world, tables, rng, users, scen)
    p_click = 1.0 / (1.0 + np.exp(-(logit + world.click_offset[scen])))
    click = rng.random(base) < p_click
    duration = world.item_duration_ms[items]
    # Clicked: a share of the video, longer when the match is good; skipped: a glance of ~2 s.
    ratio = np.exp(rng.normal(math.log(0.55), 0.7, base) + 0.15 * np.clip(logit, -3, 3)).clip(0, 2.5)
    glance = np.where(rng.random(base) < 0.9, np.exp(rng.normal(math.log(1800), 0.8, base)), 0.0)
    play = np.where(click, ratio * duration, np.minimum(glance, duration)).astype(np.int64)
    # Feedback beyond the click, from a stream of its own: no draw of `rng` (above or below) moves.
    labels, play = _feedback(day.rng(cfg.seed, FEEDBACK_STREAM, chunk_no), click, log_affinity, duration, play)

    idx = np.arange(base)
    if n_dup:
        # A duplicate sits next to its original in time, as repeated log lines do.
        src = rng.integers(0, base, n_dup)
        idx = np.sort(np.concatenate([idx, src]), kind="stable")
        row_time = times[base_pos][idx]
    else:
        row_time = times
    names = np.asarray(cfg.scenarios, dtype=object)
    return pd.DataFrame({
        "user_id": users[idx].astype(np.int64),
        "video_id": items[idx].astype(np.int64),
        "date": np.full(n, day.date, dtype=np.int32),
        "time_ms": row_time.astype(np.int64),
        "scenario": pd.array(names[scen[idx]], dtype="string"),
        "is_click": click[idx].astype(np.int8),
        **{name: labels[name][idx].astype(np.int8) for name in FEEDBACK_COLUMNS},
        "play_time_ms": play[idx],
        "duration_ms": duration[idx].astype(np.int64),
        "is_rand": is_rand[idx].astype(np.int8),
    })[INTERACTIONS.names]


# Version of what the generator writes for a given config and day: bump it whenever a day's rows change
# for the same config (2: the feedback labels of schema.FEEDBACK_COLUMNS and the play time that follows
# long_view). A store written by another version is regenerated, never carried over (``fingerprint``).
GENERATOR_VERSION = 2


def fingerprint(cfg: SyntheticConfig) -> dict[str, Any]:
    """What a generated day depends on besides its date: two stores with the same fingerprint hold the
    same rows for a day, so a day one of them has need not be generated again (the daily feed).

    Besides the config it holds the generator's version and the canonical interaction columns, so a store
    written before a change of either (e.g. one without the feedback labels) never matches: its days are
    generated again instead of being carried into a store that validation would then reject file by file.
    """
    return {**dataclasses.asdict(cfg), "scenarios": list(cfg.scenarios), "generator": GENERATOR_VERSION,
            "columns": list(INTERACTIONS.names)}


def generate(store: Path, cfg: SyntheticConfig, progress: bool = True, dates: list[int] | None = None) -> dict:
    """Write users.parquet, items.parquet and interactions/date=YYYYMMDD/ for ``cfg`` into ``store``.

    ``dates``: the days to write (default: the configured range ``cfg.dates``). Any day works, before,
    inside or after the range: the synthetic source is then a daily feed, and a day's rows are the same
    whichever other days are generated with it (see ``_DayPlan``). The users, items and their tastes
    come from the seed alone.

    Returns a summary (rows, days, users, items, rows and click rate per scenario, the config's
    fingerprint, seconds). Days are staged by ``DayWriter`` and swapped in only after every requested day
    is written, so an interrupted run leaves the previous days intact.
    """
    t_start = time.perf_counter()
    store = Path(store)
    world, users, items = build_world(cfg)
    write_table(users, store, USERS)
    write_table(items, store, ITEMS)

    range_rows = _range_rows(cfg)
    plans = [_plan_day(cfg, d, range_rows) for d in sorted(set(cfg.dates if dates is None else dates))]
    work = [(day, chunk) for day in plans for chunk in day.chunks]
    s_count = len(cfg.scenarios)
    rows_per = np.zeros(s_count, dtype=np.int64)
    clicks_per = np.zeros(s_count, dtype=np.int64)
    writer = DayWriter(store)
    tables: _DayTables | None = None
    current: _DayPlan | None = None
    chunk_no = 0
    try:
        for day, (n_slices, slices, counts) in tqdm(work, desc="synthetic", unit="chunk", disable=not progress):
            if day is not current:
                tables, current, chunk_no = _DayTables(world, day.table_day), day, 0
            assert tables is not None
            chunk = _chunk(cfg, world, tables, day, slices, counts, n_slices, chunk_no)
            chunk_no += 1
            codes = pd.Categorical(chunk["scenario"], categories=list(cfg.scenarios)).codes
            rows_per += np.bincount(codes, minlength=s_count)
            clicks_per += np.bincount(codes, weights=chunk["is_click"].to_numpy(), minlength=s_count).astype(np.int64)
            writer.write(chunk, source=f"synthetic seed={cfg.seed} day={day.date}")
        dates_written = writer.commit()
    except BaseException:
        writer.abort()
        raise
    rows = int(rows_per.sum())
    summary = {
        "rows": rows,
        "days": dates_written,
        "users": int(len(users)),
        "items": int(len(items)),
        "scenario_rows": {name: int(r) for name, r in zip(cfg.scenarios, rows_per, strict=True)},
        "scenario_click_rate": {name: (float(c / r) if r else 0.0)
                                for name, c, r in zip(cfg.scenarios, clicks_per, rows_per, strict=True)},
        "click_rate": float(clicks_per.sum() / rows) if rows else 0.0,
        "synthetic": fingerprint(cfg),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    log.info("synthetic store %s: %d rows over %d days, %d users, %d items, click rate %.3f",
             store, rows, len(dates_written), summary["users"], summary["items"], summary["click_rate"])
    return summary
