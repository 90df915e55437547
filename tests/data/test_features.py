from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.data.features import (
    PAD,
    SkippedScenario,
    history_before_day,
    pretrain_pairs,
    scenario_map,
    sequence_matrix,
    serving_scenario,
    skipped_markers,
    skipped_scenarios,
    split_scenario,
)
from sass_retrieval.data.schema import OBJECTIVES, SchemaError

USERS = pd.DataFrame({"user_id": [1, 2], "active_degree": ["a", "b"]})
ITEMS = pd.DataFrame({"video_id": [10, 11, 12, 13], "tag": [1, 2, 3, 4]})
DATES = [20220425, 20220426, 20220427]


def _log(rows: list[tuple[int, ...]]) -> pd.DataFrame:
    """rows of (user, video, date, time_ms, click[, long_view[, like]]) in one scenario; omitted labels are 0."""
    full = [(*r, *(0,) * (7 - len(r))) for r in rows]
    df = pd.DataFrame(full, columns=["user_id", "video_id", "date", "time_ms", "is_click", "long_view", "is_like"])
    df["scenario"] = "s"
    return df


LOG = _log([
    (1, 10, 20220425, 1, 1), (1, 11, 20220425, 2, 0), (1, 12, 20220426, 3, 1), (1, 13, 20220426, 4, 1),
    (1, 10, 20220427, 5, 1), (2, 11, 20220426, 6, 1), (2, 12, 20220427, 7, 0),
])


def test_features_of_day_d_use_only_earlier_days() -> None:
    f = split_scenario(LOG, USERS, ITEMS, DATES, seq_len=3)
    pos = f.positives.set_index(["user_id", "video_id", "date"])
    # user 1's clicks on 0426 see only the 0425 click (10), never each other
    for v in (12, 13):
        row = pos.loc[(1, v, 20220426)]
        assert [row[f"seq_{i}"] for i in range(3)] == [PAD, PAD, 10]
        assert (row["exp_count"], row["click_count"]) == (2, 1)
    first = pos.loc[(1, 10, 20220425)]
    assert (first["exp_count"], first["click_count"]) == (0, 0)
    assert [first[f"seq_{i}"] for i in range(3)] == [PAD, PAD, PAD]
    # item 12's snapshot for 0426 counts nothing of 0426 itself
    daily = f.item_daily.set_index(["video_id", "date"])
    assert daily.loc[(12, 20220426), "exp_count"] == 0
    assert daily.loc[(12, 20220427), "click_count"] == 1


def test_changing_a_days_labels_does_not_change_that_days_features() -> None:
    # day 0427 gets another click and a flipped label; the features of 0427's samples must not move
    flipped = pd.concat([LOG, _log([(1, 11, 20220427, 8, 1)])], ignore_index=True)
    flipped.loc[(flipped["user_id"] == 2) & (flipped["date"] == 20220427), "is_click"] = 1
    a = split_scenario(LOG, USERS, ITEMS, DATES, 3)
    b = split_scenario(flipped, USERS, ITEMS, DATES, 3)
    cols = ["exp_count", "click_count", "seq_0", "seq_1", "seq_2"]
    key = ["user_id", "video_id", "date"]
    m = a.positives.merge(b.positives, on=key, suffixes=("_a", "_b"))
    m = m[m["date"] == 20220427]
    assert len(m) > 0
    for c in cols:
        assert (m[f"{c}_a"] == m[f"{c}_b"]).all()
    da, db = a.item_daily, b.item_daily
    pd.testing.assert_frame_equal(da[da["date"] == 20220427], db[db["date"] == 20220427])


def test_serving_snapshot_and_exposure_distribution() -> None:
    f = split_scenario(LOG, USERS, ITEMS, DATES, seq_len=3)
    u1 = f.users.set_index("user_id").loc[1]
    assert [u1[f"seq_{i}"] for i in range(3)] == [12, 13, 10]
    assert (u1["exp_count"], u1["click_count"], u1["active_degree"]) == (5, 4, "a")
    assert np.isclose(f.exposure_dist["prob"].sum(), 1.0)
    assert dict(zip(f.exposure_dist["video_id"], f.exposure_dist["exposures"], strict=True)) == {10: 2, 11: 2, 12: 2, 13: 1}


def test_sequence_matrix_left_pads() -> None:
    clicks = LOG[LOG["is_click"] == 1].sort_values(["user_id", "time_ms"])
    keys, mat = sequence_matrix(clicks, 2, before_day=False)
    assert keys.tolist() == [1, 2]
    assert mat.tolist() == [[13, 10], [PAD, 11]]


def test_pretrain_pairs_one_per_scenario_combination() -> None:
    df = pd.DataFrame({"user_id": [1, 1, 1, 2, 3, 3], "scenario": ["a", "b", "c", "a", "a", "a"],
                       "date": [20220401] * 6})
    pairs = pretrain_pairs(df, "user_id")
    assert sorted(map(tuple, pairs[["id", "scenario_a", "scenario_b"]].values.tolist())) == [
        (1, "a", "b"), (1, "a", "c"), (1, "b", "c")]


def test_pretrain_pair_last_date_is_when_both_scenarios_had_been_seen() -> None:
    df = pd.DataFrame({"user_id": [1, 1, 1, 1], "scenario": ["a", "b", "a", "c"],
                       "date": [20220401, 20220402, 20220405, 20220403]})
    pairs = pretrain_pairs(df, "user_id").set_index(["scenario_a", "scenario_b"])["last_date"].to_dict()
    assert pairs == {("a", "b"): 20220402, ("a", "c"): 20220403, ("b", "c"): 20220402}


def test_small_and_undeclared_scenarios_map_to_other() -> None:
    m = scenario_map(pd.Series({"1": 5000, "0": 900, "9": 20}), ["1", "0"], 1000)
    assert m.reported == ("1",)
    assert m.apply(pd.Series(["1", "0", "9"])).tolist() == ["1", "other", "other"]
    assert m.names == ["1", "other"]


def test_a_declared_scenario_without_rows_is_never_reported_even_with_min_rows_0() -> None:
    m = scenario_map(pd.Series({"s0": 50}), ["s0", "s9"], 0)
    assert m.reported == ("s0",) and m.names == ["s0"]
    assert m.rows == {"s0": 50} and m.min_rows == 0


def test_serving_scenario_is_itself_then_other_then_the_largest() -> None:
    rows = {"s0": 10, "s1": 500, "s2": 3}
    assert serving_scenario("s0", ["s0", "s1", "other"], rows) == "s0"
    assert serving_scenario("s2", ["s0", "s1", "other"], rows) == "other"
    assert serving_scenario("s2", ["s0", "s1"], rows) == "s1"           # no 'other' trained: the largest
    assert serving_scenario("s2", ["s0", "s1"], {}) == "s0"             # ties: the first trained
    with pytest.raises(ValueError, match="nothing can serve"):
        serving_scenario("s2", [], rows)


def test_skipped_scenarios_say_why_and_what_serves_them(tmp_path) -> None:
    m = scenario_map(pd.Series({"s0": 5000, "s1": 40}), ["s0", "s1", "s2"], 1000)
    with_other = skipped_scenarios(["s0", "s1", "s2", "other"], m, ["s0", "other"])
    assert set(with_other) == {"s1", "s2"}
    assert with_other["s1"] == SkippedScenario("s1", "40 training rows in the window, fewer than "
                                               "scenarios.min_scenario_rows (1000)", 40, 1000, "other")
    assert with_other["s2"].rows == 0 and with_other["s2"].reason == "no training rows in the window"
    # 'other' not listed: the small scenarios' rows are dropped, the largest scenario serves them
    without = skipped_scenarios(["s0", "s1", "s2"], m, ["s0"])
    assert {s: k.served_by for s, k in without.items()} == {"s1": "s0", "s2": "s0"}
    # a declared 'other' that nothing maps to is skipped too
    big = scenario_map(pd.Series({"s0": 5000}), ["s0"], 1000)
    assert skipped_scenarios(["s0", "other"], big, ["s0"])["other"].served_by == "s0"
    # the marker round-trips, and a folder of scenario folders lists its markers
    with_other["s1"].write(tmp_path / "s1")
    (tmp_path / "s0").mkdir()
    assert skipped_markers(tmp_path) == {"s1": with_other["s1"]}
    assert SkippedScenario.read(tmp_path / "s0") is None


def test_no_test_window_rows_reach_the_split(tiny_project) -> None:
    w = tiny_project["window"]
    for s in tiny_project["scenarios"]:
        pos = pd.read_parquet(tiny_project["features"] / s / "positives.parquet")
        assert pos["date"].max() <= w.train_end
        daily = pd.read_parquet(tiny_project["features"] / s / "item_daily.parquet")
        assert set(daily["date"]) <= set(w.train_dates)


# ---- positives of every objective (schema.OBJECTIVES)

# user 1 clicks 10 on 0425 and 13 on 0426; the other positives are a long view or a like without a click
MULTI = _log([
    (1, 10, 20220425, 1, 1, 1, 0), (1, 11, 20220425, 2, 0), (1, 12, 20220426, 3, 0, 1, 0),
    (1, 13, 20220426, 4, 1), (1, 11, 20220427, 5, 0, 0, 1), (1, 10, 20220427, 6, 1, 1, 1),
    (2, 11, 20220426, 7, 0, 1, 0), (2, 12, 20220427, 8, 0),
])


def test_positives_are_the_union_of_the_objectives_with_their_labels() -> None:
    f = split_scenario(MULTI, USERS, ITEMS, DATES, seq_len=3)
    pos = f.positives
    assert list(pos.columns[:6]) == ["user_id", "video_id", "date", "is_click", "long_view", "is_like"]
    assert all(str(pos[c].dtype) == "int8" for c in OBJECTIVES.values())
    # every row positive for some objective, in (user, time, video) order, with the source row's labels
    assert pos[["user_id", "video_id", "date", "is_click", "long_view", "is_like"]].values.tolist() == [
        [1, 10, 20220425, 1, 1, 0], [1, 12, 20220426, 0, 1, 0], [1, 13, 20220426, 1, 0, 0],
        [1, 11, 20220427, 0, 0, 1], [1, 10, 20220427, 1, 1, 1], [2, 11, 20220426, 0, 1, 0]]
    seq = pos[[f"seq_{i}" for i in range(3)]].values.tolist()
    # click histories as of before the row's day, for every objective's rows
    assert seq == [[PAD, PAD, PAD], [PAD, PAD, 10], [PAD, PAD, 10], [PAD, 10, 13], [PAD, 10, 13], [PAD, PAD, PAD]]
    assert pos[["exp_count", "click_count"]].values.tolist() == [[0, 0], [2, 1], [2, 1], [4, 2], [4, 2], [0, 0]]


def test_the_click_rows_of_the_union_are_the_click_positives_unchanged() -> None:
    """Filtering is_click == 1 gives, bit for bit, the positives of the same log without the other labels."""
    multi = split_scenario(MULTI, USERS, ITEMS, DATES, seq_len=3).positives
    clicks_only = split_scenario(MULTI.assign(long_view=0, is_like=0), USERS, ITEMS, DATES, seq_len=3).positives
    assert (clicks_only["is_click"] == 1).all()
    got = multi[multi["is_click"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.drop(columns=["long_view", "is_like"]),
                                  clicks_only.drop(columns=["long_view", "is_like"]))
    # the other tables do not depend on the extra labels at all
    a = split_scenario(MULTI, USERS, ITEMS, DATES, seq_len=3)
    b = split_scenario(MULTI.assign(long_view=0, is_like=0), USERS, ITEMS, DATES, seq_len=3)
    for name in ("users", "items", "item_daily", "exposure_dist"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_a_log_without_an_objective_label_is_refused() -> None:
    with pytest.raises(SchemaError, match="is_like"):
        split_scenario(MULTI.drop(columns="is_like"), USERS, ITEMS, DATES, seq_len=3)


def test_history_before_day_cuts_by_date_even_out_of_time_order() -> None:
    # KuaiRand dates some 23:xx exposures on the next day: a click dated 0426 may precede one dated 0425
    clicks = pd.DataFrame({"user_id": [1, 1, 1], "video_id": [10, 11, 12], "time_ms": [1, 2, 3],
                           "date": [20220426, 20220425, 20220426]})
    rows = pd.DataFrame({"user_id": [1, 1, 9], "date": [20220426, 20220427, 20220426]})
    assert history_before_day(clicks, rows, 3).tolist() == [[PAD, PAD, 11], [11, 10, 12], [PAD, PAD, PAD]]


def _naive_histories(train: pd.DataFrame, pos: pd.DataFrame, seq_len: int) -> list[list[int]]:
    """Row by row: the user's last seq_len clicks (time order) on days before the row's date."""
    clicks = train[train["is_click"] == 1].sort_values(["user_id", "time_ms", "video_id"])
    by_user = {u: list(zip(g["date"], g["video_id"], strict=True)) for u, g in clicks.groupby("user_id")}
    out = []
    for u, d in zip(pos["user_id"], pos["date"], strict=True):
        hist = [v for day, v in by_user.get(u, []) if day < d][-seq_len:]
        out.append([PAD] * (seq_len - len(hist)) + hist)
    return out


def test_no_positive_history_holds_a_click_of_its_own_day_or_later(tiny_project) -> None:
    from sass_retrieval.data.store import read_interactions

    w = tiny_project["window"]
    train = read_interactions(tiny_project["store"], w.train_start, w.train_end)
    for s in tiny_project["scenarios"]:
        pos = pd.read_parquet(tiny_project["features"] / s / "positives.parquet")
        assert (pos["is_click"] == 0).any() and (pos["is_click"] == 1).any()   # both kinds are checked
        seq_len = sum(c.startswith("seq_") for c in pos.columns)
        got = pos[[f"seq_{i}" for i in range(seq_len)]].values.tolist()
        assert got == _naive_histories(train[train["scenario"] == s], pos, seq_len), s


def test_scenario_map_apply_names_every_row_as_the_per_row_lookup_does() -> None:
    """apply looks each distinct raw name up once; rows missing a name or with an unknown one become 'other'."""
    from sass_retrieval.data.features import OTHER, ScenarioMap

    smap = ScenarioMap(reported=("a", "1"), mapping={"a": "a", "b": OTHER, "1": "1"})
    raw = pd.Series(["a", "b", None, "z", "a", "1"], dtype="string", index=[5, 4, 3, 2, 1, 0])
    got = smap.apply(raw)
    assert got.tolist() == [smap.mapping.get(str(r), OTHER) if r is not pd.NA else OTHER for r in raw]
    assert got.tolist() == ["a", OTHER, OTHER, OTHER, "a", "1"] and list(got.index) == list(raw.index)
    assert str(got.dtype) == "string" and smap.apply(pd.Series([1, 2, 1])).tolist() == ["1", OTHER, "1"]
