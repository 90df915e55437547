"""The store as a whole: built aside, swapped in only when complete, days carried over by link."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sass_retrieval.data.schema import FEEDBACK_COLUMNS, SchemaError, day_dir, stored_dates
from sass_retrieval.data.store import (
    DayWriter,
    MissingDays,
    carry_days,
    read_interactions,
    require_days,
    scenario_counts,
    staged_store,
)
from sass_retrieval.errors import EXIT_BAD_INPUT, exit_code


def _rows(date: int, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"user_id": range(n), "video_id": range(n), "date": [date] * n, "time_ms": range(n),
                         "scenario": ["s0"] * n, "is_click": [1] * n, **{c: [0] * n for c in FEEDBACK_COLUMNS},
                         "play_time_ms": [1] * n, "duration_ms": [2] * n, "is_rand": [0] * n})


def _store(path: Path, dates: list[int]) -> Path:
    writer = DayWriter(path)
    for d in dates:
        writer.write(_rows(d))
    writer.commit()
    return path


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_a_failed_build_leaves_the_previous_store_byte_identical(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", [20220501, 20220502])
    before = _snapshot(store)
    with pytest.raises(MissingDays), staged_store(store) as new:
        _store(new, [20220502])
        require_days(new, [20220501, 20220502], "log.csv")
    assert _snapshot(store) == before
    assert [p.name for p in tmp_path.iterdir()] == ["store"]          # nothing left beside it


def test_a_complete_build_replaces_the_store(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", [20220501])
    with staged_store(store) as new:
        carried = carry_days(store, new, [20220501, 20220503])
        _store(new, [20220503])
        assert require_days(new, [20220501, 20220503], "feed") == [20220501, 20220503]
    assert carried == [20220501]
    assert stored_dates(store) == [20220501, 20220503]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_missing_days_name_the_source_and_the_days(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", [20220501])
    (day_dir(store, 20220502)).mkdir(parents=True)                    # a folder without rows is no day
    with pytest.raises(MissingDays) as info:
        require_days(store, [20220501, 20220502], "/data/log_standard_4_08_to_4_21_pure.csv")
    assert str(info.value) == ("/data/log_standard_4_08_to_4_21_pure.csv: date: rows for every requested day: "
                               "no rows for 20220502")
    assert exit_code(info.value) == EXIT_BAD_INPUT
    with pytest.raises(MissingDays, match="no rows for any day"):
        require_days(tmp_path / "empty", None, "x.csv")


def _drop_feedback(store: Path, date: int) -> Path:
    """Rewrite a day as a store from before the feedback labels wrote it (no feedback columns)."""
    part = next(day_dir(store, date).rglob("*.parquet"))
    pd.read_parquet(part).drop(columns=list(FEEDBACK_COLUMNS)).to_parquet(part, index=False)
    return part


def test_a_day_written_before_the_feedback_labels_is_named_not_a_pyarrow_error(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", [20220501, 20220502])
    part = _drop_feedback(store, 20220502)
    assert len(read_interactions(store, 20220501, 20220501)) == 3
    assert len(read_interactions(store, columns=["user_id", "is_click"])) == 6      # what it has still reads
    with pytest.raises(SchemaError) as info:
        read_interactions(store)
    assert str(part) in str(info.value) and "long_view" in str(info.value) and "ingest" in str(info.value)


def test_days_in_an_older_schema_are_not_carried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = _store(tmp_path / "old", [20220501, 20220502])
    _drop_feedback(old, 20220501)
    with caplog.at_level("WARNING"):
        assert carry_days(old, tmp_path / "new", [20220501, 20220502]) == [20220502]
    assert stored_dates(tmp_path / "new") == [20220502]
    assert "lack canonical interaction column(s)" in caplog.text and "20220501" in caplog.text


def test_days_are_partitioned_by_scenario_and_carried_with_their_folders(tmp_path: Path) -> None:
    """interactions/date=D/scenario=S/part-N.parquet; the files keep the scenario column; carry_days links the
    nested folders (a day carried over reads back the same rows)."""
    rows = pd.concat([_rows(20220501).assign(scenario="s0"), _rows(20220501).assign(scenario="a/b")])
    writer = DayWriter(tmp_path / "store")
    writer.write(rows)
    writer.write(rows.iloc[:1])
    writer.commit()
    store = tmp_path / "store"
    parts = sorted(str(f.relative_to(day_dir(store, 20220501))) for f in day_dir(store, 20220501).rglob("*.parquet"))
    assert parts == ["scenario=a%2Fb/part-00000.parquet", "scenario=s0/part-00000.parquet",
                     "scenario=s0/part-00001.parquet"]
    assert set(pd.read_parquet(day_dir(store, 20220501) / "scenario=a%2Fb" / "part-00000.parquet")["scenario"]) == {"a/b"}
    with staged_store(tmp_path / "copy") as new:
        assert carry_days(store, new, [20220501]) == [20220501]
    pd.testing.assert_frame_equal(read_interactions(tmp_path / "copy"), read_interactions(store))
    assert len(read_interactions(store)) == 7


def test_scenario_counts_equal_counting_the_read_rows_and_honour_the_days(tmp_path: Path) -> None:
    """The scenario map's counts come from one part file at a time; they must be what counting the rows gives."""
    writer = DayWriter(tmp_path / "store")
    for d, extra in ((20220501, 2), (20220502, 5)):
        writer.write(pd.concat([_rows(d), _rows(d, extra).assign(scenario="s1")]))
    writer.commit()
    store = tmp_path / "store"
    for start, end in ((None, None), (20220502, 20220502)):
        expected = read_interactions(store, start, end)["scenario"].value_counts()
        got = scenario_counts(store, start, end)
        assert got.sort_index().to_dict() == {str(k): int(v) for k, v in expected.sort_index().items()}
    assert scenario_counts(store, 20220502, 20220502).to_dict() == {"s0": 3, "s1": 5}
    assert scenario_counts(store, 20220601, 20220602).empty
