"""rank.features: the counts against a slow pandas reference, unknown ids, no leakage, files round-trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rank.world import make_frame, make_items, zero_score

from sass_retrieval.errors import BadInputError
from sass_retrieval.rank.features import (
    FEATURE_NAMES,
    FEATURES,
    SMOOTHING,
    RankStats,
    duration_bucket,
    feature_matrix,
    training_rows,
)


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    items = make_items(n_videos=120, n_tags=6, n_authors=15, seed=3)
    return items, make_frame(items, n_users=40, days=3, rows_per_day=1500, seed=3)


def reference(frame: pd.DataFrame, items: pd.DataFrame, scenario: str, users, videos) -> pd.DataFrame:
    """The features, the slow way: a pandas filter per candidate."""
    f = frame.merge(items[["video_id", "tag", "author_id"]], on="video_id", how="left")
    prior = frame.loc[frame.scenario == scenario, "is_click"].mean() if (frame.scenario == scenario).any() \
        else frame["is_click"].mean()
    out = []
    for u, v in zip(users, videos, strict=True):
        item = items[items.video_id == v]
        tag = int(item.tag.iloc[0]) if len(item) else -1
        author = int(item.author_id.iloc[0]) if len(item) else -1
        row = {}
        for key, value in (("tag", tag), ("author", author)):
            col = "tag" if key == "tag" else "author_id"
            m = (f.user_id == u) & (f[col] == value) & (value != -1)
            c, e = f.loc[m, "is_click"].sum(), m.sum()
            row[f"user_{key}_clicks"], row[f"user_{key}_exposures"] = c, e
            row[f"user_{key}_ctr"] = (c + SMOOTHING * prior) / (e + SMOOTHING)
        mine = frame.user_id == u
        row["user_scenario_share"] = (mine & (frame.scenario == scenario)).sum() / mine.sum() if mine.any() else 0.0
        m = (frame.video_id == v) & (frame.scenario == scenario)
        row["item_scenario_ctr"] = (frame.loc[m, "is_click"].sum() + SMOOTHING * prior) / (m.sum() + SMOOTHING)
        row["item_scenario_exposures"] = m.sum()
        out.append(row)
    return pd.DataFrame(out)


@pytest.mark.parametrize("scenario", ["a", "c", "never_seen"])
def test_lookups_equal_a_slow_pandas_reference_including_unknown_ids(world, scenario: str) -> None:
    items, frame = world
    rng = np.random.default_rng(1)
    users = np.r_[rng.integers(1, 41, 60), [999, 999]]                     # 999: a user never seen
    videos = np.r_[rng.choice(items.video_id, 60), [5, items.video_id.iloc[0]]]  # 5: a video not in the items
    stats = RankStats.from_frame(frame, items)
    got = feature_matrix(stats, scenario, users, videos, np.arange(62, dtype=np.float32))
    want = reference(frame, items, scenario, users, videos)
    for col in want.columns:
        np.testing.assert_allclose(got[col], want[col].to_numpy(np.float64), rtol=1e-5, err_msg=col)
    assert list(got) == list(FEATURE_NAMES)
    np.testing.assert_array_equal(got["retrieval_score"], np.arange(62))
    # the unknown user and video: zero counts, the scenario's prior rate
    prior = stats.prior(scenario)
    for name in ("user_tag_clicks", "user_tag_exposures", "user_author_clicks", "user_scenario_share"):
        assert got[name][-2:].tolist() == [0.0, 0.0], name
    assert got["user_tag_ctr"][-1] == pytest.approx(prior)
    assert got["item_scenario_exposures"][-2] == 0 and got["item_scenario_ctr"][-2] == pytest.approx(prior)
    assert got["duration_bucket"][-2] == 0 and got["video_type"][-2] == -1


def test_prior_is_the_scenario_mean_and_the_global_mean_for_an_unknown_scenario(world) -> None:
    items, frame = world
    stats = RankStats.from_frame(frame, items)
    assert stats.prior("b") == pytest.approx(frame.loc[frame.scenario == "b", "is_click"].mean())
    assert stats.prior("zzz") == pytest.approx(frame["is_click"].mean())


def test_categorical_codes_and_duration_buckets(world) -> None:
    items, frame = world
    stats = RankStats.from_frame(frame, items)
    v = items.video_id.to_numpy()
    got = feature_matrix(stats, "a", np.ones(len(v), dtype=np.int64), v, np.zeros(len(v)),
                         names=["video_type", "upload_type", "duration_bucket"])
    assert list(got) == ["video_type", "upload_type", "duration_bucket"]
    for name in ("video_type", "upload_type"):     # same string <-> same code
        codes = pd.Series(got[name]).groupby(items[name].to_numpy()).nunique()
        assert (codes == 1).all() and pd.Series(got[name]).nunique() == items[name].nunique()
    b = duration_bucket(np.array([np.nan, 0.0, 1000.0, 10_000.0, 100_000.0, 1e9]))
    assert b[0] == b[1] == 0 and list(b[2:]) == sorted(b[2:]) and len(set(b[2:])) == 4


def test_no_leakage_a_days_labels_never_reach_its_own_features(world) -> None:
    items, frame = world
    days = sorted(frame.date.unique())
    rows = training_rows(frame, items, days, zero_score)
    assert sorted(rows.date.unique()) == days[1:]                           # the first day has no history: skipped
    flipped = frame.copy()
    last = flipped.date == days[-1]
    flipped.loc[last, "is_click"] = 1 - flipped.loc[last, "is_click"]
    again = training_rows(flipped, items, days, zero_score)
    numeric = [f.name for f in FEATURES]
    pd.testing.assert_frame_equal(rows[numeric], again[numeric])            # day d's labels changed nothing of day d
    assert (rows.loc[rows.date == days[-1], "is_click"].to_numpy()
            != again.loc[again.date == days[-1], "is_click"].to_numpy()).all()
    # each day's features are exactly those counted from the earlier days
    d = days[-1]
    part = rows[rows.date == d]
    for scenario in ("a", "b"):
        p = part[part.scenario == scenario]
        want = feature_matrix(RankStats.from_frame(frame[frame.date < d], items), scenario, p.user_id.to_numpy(),
                              p.video_id.to_numpy(), np.zeros(len(p)))
        for name in numeric:
            np.testing.assert_array_equal(p[name].to_numpy(), want[name], err_msg=name)
    # and a click of day d does count for day d+1: the history grows
    assert rows.loc[rows.date == days[-1], "user_tag_exposures"].mean() > \
        rows.loc[rows.date == days[1], "user_tag_exposures"].mean()


def test_training_rows_columns_and_retrieval_scores_come_from_score_fn(world) -> None:
    items, frame = world
    calls = []

    def score_fn(scenario, users, videos):
        calls.append(scenario)
        return (users * 1000 + videos).astype(np.float32)

    rows = training_rows(frame, items, [20220502], score_fn)
    assert set(rows.columns) == {*FEATURE_NAMES, "is_click", "scenario", "user_id", "video_id", "date"}
    assert len(rows) == (frame.date == 20220502).sum() and sorted(calls) == ["a", "b", "c"]
    np.testing.assert_allclose(rows.retrieval_score, (rows.user_id * 1000 + rows.video_id).astype(np.float32))
    assert training_rows(frame, items, [20220501, 20990101], zero_score).empty   # no history / no rows: skipped


def test_save_load_round_trip_gives_identical_features(world, tmp_path) -> None:
    items, frame = world
    stats = RankStats.from_frame(frame, items)
    stats.save(tmp_path / "stats")
    assert not list((tmp_path / "stats").glob("*.pkl"))
    back = RankStats.load(tmp_path / "stats")
    rng = np.random.default_rng(0)
    users, videos = rng.integers(0, 45, 200), rng.choice(np.r_[items.video_id, [1, 2]], 200)
    for scenario in ("a", "c", "zzz"):
        a = feature_matrix(stats, scenario, users, videos, np.zeros(200))
        b = feature_matrix(back, scenario, users, videos, np.zeros(200))
        for name in FEATURE_NAMES:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_bad_input_names_the_problem(world) -> None:
    items, frame = world
    with pytest.raises(BadInputError, match="is_click"):
        RankStats.from_frame(frame.drop(columns="is_click"), items)
    stats = RankStats.from_frame(frame, items)
    with pytest.raises(BadInputError, match="bogus"):
        feature_matrix(stats, "a", np.ones(2), np.ones(2), np.ones(2), names=["bogus"])
    with pytest.raises(BadInputError, match="one entry per candidate"):
        feature_matrix(stats, "a", np.ones(2), np.ones(3), np.ones(2))


def test_params_schema_knows_the_same_feature_names() -> None:
    from sass_retrieval.params_schema import RANK_FEATURE_NAMES

    assert RANK_FEATURE_NAMES == FEATURE_NAMES
