from __future__ import annotations

import pandas as pd
import pytest

from sass_retrieval.data.schema import (
    FEEDBACK_COLUMNS,
    INTERACTIONS,
    ITEMS,
    OBJECTIVES,
    USERS,
    SchemaError,
    conform,
    stored_dates,
)
from sass_retrieval.data.store import DayWriter, read_interactions, read_items, write_table


def _rows(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": range(n), "video_id": [10 + i for i in range(n)], "date": [20220425] * 3 + [20220426] * (n - 3),
        "time_ms": [1650816000000 + i for i in range(n)], "scenario": ["1"] * n, "is_click": [1, 0] * (n // 2),
        **{c: [0, 1] * (n // 2) for c in FEEDBACK_COLUMNS},
        "play_time_ms": [0] * n, "duration_ms": [1000] * n, "is_rand": [0] * n,
    })


def test_interactions_round_trip_through_daily_partitions(tmp_path) -> None:
    w = DayWriter(tmp_path)
    w.write(_rows())
    assert w.commit() == [20220425, 20220426]
    assert stored_dates(tmp_path) == [20220425, 20220426]
    back = read_interactions(tmp_path).sort_values("user_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, conform(_rows(), INTERACTIONS))
    assert {c: str(t) for c, t in back.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                           for c, t in INTERACTIONS.dtypes.items()}


def test_reingesting_a_day_replaces_it_instead_of_duplicating(tmp_path) -> None:
    for _ in range(2):
        w = DayWriter(tmp_path)
        w.write(_rows())
        w.commit()
    assert len(read_interactions(tmp_path)) == 6


def test_feedback_labels_are_int8_columns_and_objectives_name_label_columns() -> None:
    labels = ["is_click", *FEEDBACK_COLUMNS]
    assert INTERACTIONS.names[INTERACTIONS.names.index("is_click"):][:len(labels)] == labels   # one group
    assert all(INTERACTIONS.column(c).dtype == "int8" and INTERACTIONS.column(c).meaning.startswith("label:")
               for c in labels)
    assert OBJECTIVES == {"click": "is_click", "long_view": "long_view", "like": "is_like"}
    assert set(OBJECTIVES.values()) <= set(labels)
    with pytest.raises(SchemaError, match="long_view"):
        conform(_rows().drop(columns="long_view"), INTERACTIONS, source="x.parquet")


def test_missing_column_names_table_and_column() -> None:
    with pytest.raises(SchemaError, match=r"interactions.*is_click"):
        conform(_rows().drop(columns="is_click"), INTERACTIONS, source="x.parquet")


def test_uncastable_column_names_it() -> None:
    bad = _rows()
    bad["user_id"] = "abc"
    with pytest.raises(SchemaError, match="user_id"):
        conform(bad, INTERACTIONS)


def test_item_table_round_trip(tmp_path) -> None:
    items = pd.DataFrame({"video_id": [1, 2], "author_id": [5, -1], "tag": [3, -1], "video_type": ["NORMAL", "AD"],
                          "upload_type": ["a", "b"], "video_duration_ms": [1000.0, None]})
    write_table(items, tmp_path, ITEMS)
    pd.testing.assert_frame_equal(read_items(tmp_path), conform(items, ITEMS))
    assert USERS.key == ("user_id",)
