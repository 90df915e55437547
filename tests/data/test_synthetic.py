"""The synthetic generator: canonical schema, determinism, and the structure it promises to plant.

The structure bounds are deliberately loose: they guard the properties the pipeline relies on
(skewed scenarios, cross-scenario overlap, a learnable user-topic signal, scenario-specific
popularity), not the exact numbers, so retuning the world does not break them needlessly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.data.schema import (
    FEEDBACK_COLUMNS,
    INTERACTIONS,
    ITEMS,
    LONG_VIEW_MS,
    USERS,
    day_dir,
    stored_dates,
)
from sass_retrieval.data.store import read_interactions, read_items, read_users
from sass_retrieval.data.synthetic import (
    GENERATOR_VERSION,
    SyntheticConfig,
    build_world,
    date_of_time_ms,
    day_start_ms,
    fingerprint,
    generate,
)
from sass_retrieval.params_schema import Params

TINY = SyntheticConfig(seed=11, users=400, items=200, days=4, rows=20_000, chunk_rows=3_000, scenarios=("s0", "s1", "s2", "s3", "s4"), start_date=20220425)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, pd.DataFrame]:
    store = tmp_path_factory.mktemp("synth")
    summary = generate(store, TINY, progress=False)
    return store, summary, read_interactions(store)


def _frames(store: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return read_interactions(store), read_users(store), read_items(store)


def test_same_seed_same_files_and_different_seed_differs(tmp_path: Path) -> None:
    cfg = SyntheticConfig(seed=5, users=150, items=80, days=3, rows=4_000, chunk_rows=1_000, scenarios=("s0", "s1", "s2", "s3", "s4"), start_date=20220425)
    generate(tmp_path / "a", cfg, progress=False)
    generate(tmp_path / "b", cfg, progress=False)
    for left, right in zip(_frames(tmp_path / "a"), _frames(tmp_path / "b"), strict=True):
        pd.testing.assert_frame_equal(left, right)

    other = SyntheticConfig(seed=6, users=150, items=80, days=3, rows=4_000, chunk_rows=1_000, scenarios=("s0", "s1", "s2", "s3", "s4"), start_date=20220425)
    generate(tmp_path / "c", other, progress=False)
    a, c = read_interactions(tmp_path / "a"), read_interactions(tmp_path / "c")
    assert not a.equals(c)
    assert not read_users(tmp_path / "a").equals(read_users(tmp_path / "c"))


def test_tables_have_the_canonical_schema(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    store, _, df = tiny
    for frame, table in ((df, INTERACTIONS), (read_users(store), USERS), (read_items(store), ITEMS)):
        assert list(frame.columns) == table.names
        assert {c: str(t) for c, t in frame.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                                 for c, t in table.dtypes.items()}
    # Raw parquet files carry the same dtypes, not only after the reader's cast.
    part = sorted(day_dir(store, stored_dates(store)[0]).rglob("*.parquet"))[0]
    raw = pd.read_parquet(part)
    assert raw["date"].dtype == np.int32 and raw["is_click"].dtype == np.int8
    assert str(raw["scenario"].dtype) == str(pd.Series(dtype="string").dtype)
    assert not df[INTERACTIONS.names].isna().any().any()
    assert set(df["scenario"].unique()) <= set(TINY.scenarios)


def test_ids_refer_to_the_users_and_items_tables(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    store, summary, df = tiny
    users, items = read_users(store), read_items(store)
    assert len(users) == TINY.users == summary["users"] and len(items) == TINY.items == summary["items"]
    assert df["user_id"].isin(users["user_id"]).all()
    assert df["video_id"].isin(items["video_id"]).all()
    assert set(df["is_click"].unique()) <= {0, 1} and set(df["is_rand"].unique()) <= {0, 1}
    assert (df["play_time_ms"] >= 0).all() and (df["duration_ms"] > 0).all()


def test_rows_days_and_summary(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    store, summary, df = tiny
    assert len(df) == TINY.rows == summary["rows"]
    assert stored_dates(store) == TINY.dates == summary["days"]
    counts = df["scenario"].value_counts()
    assert summary["scenario_rows"] == {s: int(counts.get(s, 0)) for s in TINY.scenarios}
    assert summary["click_rate"] == pytest.approx(df["is_click"].mean())
    # Small chunks really stream: a day is written as several parts.
    assert len(list(day_dir(store, TINY.dates[0]).rglob("*.parquet"))) > 1


def test_time_is_consistent_with_date(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    assert (date_of_time_ms(df["time_ms"].to_numpy()) == df["date"].to_numpy()).all()
    for _, part in df.groupby(["date", "scenario"]):
        assert part["time_ms"].is_monotonic_increasing  # parts of a (day, scenario) are consecutive time ranges


def test_date_of_time_ms_uses_utc_plus_8() -> None:
    # 2022-04-24 16:00 UTC is midnight starting 2022-04-25 in Beijing.
    assert date_of_time_ms(np.array([1650816000000 - 1, 1650816000000])).tolist() == [20220424, 20220425]
    start = day_start_ms(20220425)
    got = date_of_time_ms(np.array([start - 1, start, start + 86_400_000 - 1, start + 86_400_000]))
    assert got.dtype == np.int32
    assert got.tolist() == [20220424, 20220425, 20220425, 20220426]
    assert date_of_time_ms(np.array([day_start_ms(20240301) - 1]))[0] == 20240229


def test_scenarios_are_skewed_and_overlap(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    share = df["scenario"].value_counts(normalize=True)
    assert share.index[0] == TINY.scenarios[0] and 0.6 < share.iloc[0] < 0.8
    assert share.iloc[1] > 0.1 and share.iloc[-1] < 0.05 and len(share) == len(TINY.scenarios)
    users_multi = (df.groupby("user_id")["scenario"].nunique() >= 2).mean()
    items_multi = (df.groupby("video_id")["scenario"].nunique() >= 2).mean()
    assert 0.35 < users_multi < 0.8
    assert 0.5 < items_multi < 0.95


def test_click_rate_and_duplicates_look_like_the_real_log(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    assert 0.33 < df["is_click"].mean() < 0.5
    assert 0.005 < df.duplicated().mean() < 0.04
    assert 0.002 < df["is_rand"].mean() < 0.03


def test_user_topic_signal_is_learnable(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    world, _, _ = build_world(TINY)
    on_topic = world.user_topic[df["user_id"].to_numpy()] == world.item_topic[df["video_id"].to_numpy()]
    ctr_on, ctr_off = df["is_click"][on_topic].mean(), df["is_click"][~on_topic].mean()
    assert ctr_on > ctr_off + 0.15
    # Exposure is personalised too: the dominant topic is over-represented among a user's exposures.
    assert on_topic.mean() > 2.0 / world.n_topics


def test_side_attributes_leak_the_latent_state(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    store, _, df = tiny
    world, _, _ = build_world(TINY)
    users = read_users(store).set_index("user_id").loc[np.arange(TINY.users)]
    assert (users["profile_0"].to_numpy() == world.user_topic).mean() > 0.6
    items = read_items(store).set_index("video_id").loc[np.arange(TINY.items)]
    tag_purity = pd.crosstab(world.item_topic, items["tag"].to_numpy()).max(axis=1).sum() / TINY.items
    assert tag_purity > 0.7
    rows = df.groupby("user_id").size().reindex(users.index, fill_value=0)
    full = rows[users["active_degree"] == "full_active"].mean()
    rest = rows[users["active_degree"] != "full_active"].mean()
    assert full > rest


def test_item_popularity_differs_between_scenarios(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    clicks = df[df["is_click"] == 1].groupby(["video_id", "scenario"]).size().unstack(fill_value=0)
    a, b = TINY.scenarios[0], TINY.scenarios[1]
    assert clicks[a].corr(clicks[b], method="spearman") < 0.95


def test_new_items_appear_during_the_window(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    world, _, _ = build_world(TINY)
    first_seen = df.groupby("video_id")["date"].min()
    late = world.item_first_day[first_seen.index.to_numpy()] > 0
    assert late.any()
    first_day_idx = first_seen.map({d: i for i, d in enumerate(TINY.dates)}).to_numpy()
    assert (first_day_idx >= world.item_first_day[first_seen.index.to_numpy()]).all()


SECTION = {"seed": 3, "users": 10, "items": 7, "scenarios": ["a", "b"], "days": 2, "rows": 500,
           "start_date": 20220425}


def test_from_params_reads_the_synthetic_section() -> None:
    params = Params().override({"data.synthetic": {**SECTION, "start_date": "20220425"}})
    cfg = SyntheticConfig.from_params(params)
    assert (cfg.seed, cfg.users, cfg.items, cfg.scenarios, cfg.days, cfg.rows, cfg.start_date) == (
        3, 10, 7, ("a", "b"), 2, 500, 20220425)      # the fingerprint's types, whatever YAML handed over


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="scenarios"):
        SyntheticConfig(**{**SECTION, "scenarios": ("a", "a")})
    with pytest.raises(ValueError, match="start_date"):
        SyntheticConfig(**{**SECTION, "start_date": 20221345})


@pytest.mark.parametrize("scenarios", [("only",), ("big", "small")])
def test_few_scenarios_and_tiny_sizes_work(tmp_path: Path, scenarios: tuple[str, ...]) -> None:
    cfg = SyntheticConfig(seed=1, users=20, items=12, scenarios=scenarios, days=2, rows=600, start_date=20220425)
    summary = generate(tmp_path, cfg, progress=False)
    df = read_interactions(tmp_path)
    assert len(df) == 600 == summary["rows"]
    assert set(df["scenario"].unique()) == set(scenarios)


# ---- the daily feed: any day, deterministic per day

FEED = SyntheticConfig(seed=3, users=300, items=150, days=4, rows=8_000, chunk_rows=1_000,
                       scenarios=("s0", "s1", "s2"), start_date=20220425)


def _day(store: Path, date: int) -> pd.DataFrame:
    df = read_interactions(store, date, date)
    return df.reset_index(drop=True)


def test_a_day_does_not_depend_on_the_days_generated_with_it(tmp_path: Path) -> None:
    """Inside the configured range and after it (the live feed): the same rows whatever else is generated."""
    generate(tmp_path / "range", FEED, progress=False)
    generate(tmp_path / "mixed", FEED, progress=False, dates=[20220426, 20260301, 20260302, 20220101])
    generate(tmp_path / "alone", FEED, progress=False, dates=[20260302])
    pd.testing.assert_frame_equal(_day(tmp_path / "mixed", 20220426), _day(tmp_path / "range", 20220426))
    pd.testing.assert_frame_equal(_day(tmp_path / "mixed", 20260302), _day(tmp_path / "alone", 20260302))
    # the latent world comes from the seed alone: the same users and items tables for any days
    pd.testing.assert_frame_equal(read_users(tmp_path / "alone"), read_users(tmp_path / "range"))
    pd.testing.assert_frame_equal(read_items(tmp_path / "alone"), read_items(tmp_path / "range"))
    assert stored_dates(tmp_path / "mixed") == [20220101, 20220426, 20260301, 20260302]


def test_days_outside_the_range_look_like_the_range(tmp_path: Path) -> None:
    generate(tmp_path / "range", FEED, progress=False)
    live = [20260302, 20260303, 20260304, 20260305]          # Monday .. Thursday
    generate(tmp_path / "live", FEED, progress=False, dates=live)
    a, b = read_interactions(tmp_path / "range"), read_interactions(tmp_path / "live")
    per_day = FEED.rows / FEED.days
    assert all(0.6 * per_day < n < 1.4 * per_day for n in b.groupby("date").size())
    assert abs(a["is_click"].mean() - b["is_click"].mean()) < 0.05
    assert (date_of_time_ms(b["time_ms"].to_numpy()) == b["date"].to_numpy()).all()
    shares = lambda df: df["scenario"].value_counts(normalize=True)  # noqa: E731
    assert (shares(a) - shares(b)).abs().max() < 0.05


# ---- feedback labels beyond the click

# The columns that existed before the feedback labels, hashed over FROZEN's rows (three days of the range
# and one live day, so both kinds of day stream are covered). EXISTING_HASH was computed ONCE with
# `_existing_hash` from the generator as it was before the feedback labels were added (synthetic.py
# without FEEDBACK_STREAM); it must never be recomputed to make this test pass: a mismatch means a change
# moved a draw of the existing columns, so every stored synthetic day (and every benchmark on one) shifts.
FROZEN = SyntheticConfig(seed=7, users=120, items=60, days=3, rows=3_000, chunk_rows=700,
                         scenarios=("s0", "s1", "s2"), start_date=20220425)
FROZEN_DATES = [*FROZEN.dates, 20260302]
EXISTING = {"user_id": "<i8", "video_id": "<i8", "date": "<i4", "time_ms": "<i8", "scenario": None,
            "is_click": "i1", "duration_ms": "<i8", "is_rand": "i1"}
EXISTING_ROWS = 4020
EXISTING_HASH = "7eceb012e6f6114d3ae15270d4d4be9d608c18e3f631c5dfcf3a58533c1836c3"


def _existing_hash(df: pd.DataFrame) -> str:
    """sha256 over the existing columns in a fixed byte layout (little-endian values, scenario as text)."""
    import hashlib

    h = hashlib.sha256()
    for col, dtype in EXISTING.items():
        h.update(col.encode())
        if dtype is None:
            h.update("\n".join(df[col].astype(str)).encode())
        else:
            h.update(np.ascontiguousarray(df[col].to_numpy().astype(dtype)).tobytes())
    return h.hexdigest()


def test_the_feedback_labels_move_no_draw_of_the_existing_columns(tmp_path: Path) -> None:
    generate(tmp_path, FROZEN, progress=False, dates=FROZEN_DATES)
    # in generation order: the store's folders group a day's rows by scenario, the generator writes them in time
    # order (a stable sort by time restores it, ties included)
    df = read_interactions(tmp_path).sort_values(["date", "time_ms"], kind="stable").reset_index(drop=True)
    assert len(df) == EXISTING_ROWS
    assert _existing_hash(df) == EXISTING_HASH


def _affinity(df: pd.DataFrame, cfg: SyntheticConfig) -> np.ndarray:
    """Each row's scenario affinity for its item's topic: the term that drives the click."""
    world, _, _ = build_world(cfg)
    scen = pd.Categorical(df["scenario"], categories=list(cfg.scenarios)).codes
    theta = world.scenario_theta(df["user_id"].to_numpy(), scen)
    return theta[np.arange(len(df)), world.item_topic[df["video_id"].to_numpy()]]


def test_feedback_labels_come_from_the_same_latent_world(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    assert all(set(df[c].unique()) <= {0, 1} for c in FEEDBACK_COLUMNS)
    click, lv = df["is_click"] == 1, df["long_view"] == 1
    # KuaiRand-like rates: long views mostly after a click, likes rarer, the rest rarer still
    assert 0.15 < df["long_view"].mean() < 0.45
    assert df["long_view"][click].mean() > 0.5 and df["long_view"][~click].mean() < 0.02
    assert 0.005 < df["is_like"].mean() < 0.04 and df["is_like"][lv].mean() > 3 * df["is_like"][~lv].mean()
    for c in ("is_follow", "is_comment", "is_forward", "is_hate", "is_profile_enter"):
        assert df[c].sum() > 0 and df[c].mean() < 0.05, c
    # among clicked rows the strong matches are long-viewed more often, and liked far more often
    aff = _affinity(df, TINY)
    strong = aff > np.median(aff[click])
    lv_lift = df["long_view"][click & strong].mean() / df["long_view"][click & ~strong].mean()
    like_lift = df["is_like"][click & strong].mean() / df["is_like"][click & ~strong].mean()
    assert lv_lift > 1.2 and like_lift > lv_lift
    # a hate lands on poor matches
    assert aff[df["is_hate"] == 1].mean() < 0.75 * aff.mean()


def test_play_time_agrees_with_long_view(tiny: tuple[Path, dict, pd.DataFrame]) -> None:
    _, _, df = tiny
    lv, play = df["long_view"] == 1, df["play_time_ms"]
    need = np.minimum(LONG_VIEW_MS, df["duration_ms"])
    assert (play[lv] >= need[lv]).all() and (play[lv] > 0).all()   # >= 18 s, or the whole (shorter) video
    assert (play[~lv] < LONG_VIEW_MS).all()
    assert (play >= 0).all()


def test_the_fingerprint_changes_with_the_generator_and_the_columns() -> None:
    fp = fingerprint(TINY)
    assert fp["generator"] == GENERATOR_VERSION and fp["columns"] == INTERACTIONS.names
    assert "long_view" in fp["columns"]
    before = {k: v for k, v in fp.items() if k not in ("generator", "columns")}   # a store from before
    assert before != fp
