from __future__ import annotations

from pathlib import Path

import pytest
from support import SHARED, needs_kuairand

from sass_retrieval.config import load_params
from sass_retrieval.data.kuairand import SourceError, import_kuairand
from sass_retrieval.data.schema import FEEDBACK_COLUMNS, SchemaError, stored_dates
from sass_retrieval.data.store import read_interactions, read_items, read_users
from sass_retrieval.data.validation import validate_store


@needs_kuairand
def test_imports_the_shared_release_and_it_passes_validation(tmp_path) -> None:
    summary = import_kuairand(SHARED, tmp_path, chunk_rows=50_000, progress=False)
    assert summary["rows"] == 185_061
    assert stored_dates(tmp_path)[0] == 20220425 and stored_dates(tmp_path)[-1] == 20220505
    df = read_interactions(tmp_path)
    assert len(df) == 185_061
    assert set(df["scenario"].unique()) <= {str(t) for t in range(15)}
    assert (df["scenario"] == "1").mean() > 0.7
    assert 0.4 < df["is_click"].mean() < 0.5
    assert len(read_users(tmp_path)) == 27_285 and len(read_items(tmp_path)) == 7_583
    # the feedback labels come through as logged (rates measured on the release file)
    assert round(df["long_view"].mean(), 3) == 0.311 and round(df["is_like"].mean(), 3) == 0.017
    assert round(df["is_hate"].mean(), 4) == 0.0008
    assert all(set(df[c].unique()) <= {0, 1} for c in FEEDBACK_COLUMNS)
    assert all(str(df[c].dtype) == "int8" for c in FEEDBACK_COLUMNS)
    lv, play = df["long_view"] == 1, df["play_time_ms"]
    assert not (~lv & (play >= 18_000)).any() and play[lv].min() == 5029     # the play-time rule holds exactly
    assert int((lv & (df["is_click"] == 0)).sum()) == 181
    assert int(((df["is_like"] == 1) & (df["is_click"] == 0)).sum()) == 566
    # and the real release passes validation under the shipped rules (labels, play-time rule and all)
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    report = validate_store(tmp_path, stored_dates(tmp_path), [str(t) for t in range(15)], params.validation,
                            tmp_path / "report")
    assert report["success"] is True
    rule = [e for e in report["suites"]["interactions"]["expectations"]
            if e["column"] == "long_view_play_time_consistent"]
    assert rule and rule[0]["success"] and rule[0]["observed"]["unexpected_count"] == 0


@needs_kuairand
def test_several_log_files_are_read_like_the_full_release(tmp_path) -> None:
    import pandas as pd

    src = tmp_path / "release"
    src.mkdir()
    log = pd.read_csv(SHARED / "log_standard_20220425_to_20220505_pure.csv", nrows=3000)
    log.iloc[:1500].to_csv(src / "log_standard_4_08_to_4_21_pure.csv", index=False)
    log.iloc[1500:].to_csv(src / "log_standard_4_22_to_5_08_pure.csv", index=False)
    for name in ("user_features_pure.csv", "video_features_basic_pure.csv"):
        (src / name).symlink_to(SHARED / name)
    assert import_kuairand(src, tmp_path / "store", progress=False)["rows"] == 3000


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(SourceError, match="log_standard"):
        import_kuairand(tmp_path, tmp_path / "store", progress=False)


def test_missing_log_column_is_named(tmp_path) -> None:
    (tmp_path / "log_standard_x.csv").write_text("user_id,video_id,date\n1,2,20220425\n")
    (tmp_path / "user_features_pure.csv").write_text("user_id\n1\n")
    (tmp_path / "video_features_basic_pure.csv").write_text("video_id\n2\n")
    with pytest.raises(SchemaError, match=r"user_features_pure.csv.*user_active_degree"):
        import_kuairand(tmp_path, tmp_path / "store", progress=False)


def _tiny_release(root, log_text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "log_standard_x.csv").write_text(log_text)
    cols = ("user_id,user_active_degree,is_live_streamer,is_video_author,follow_user_num_range,fans_user_num_range,"
            "friend_user_num_range,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18)))
    (root / "user_features_pure.csv").write_text(cols + "\n1,full_active,0,0,0,0,0,0" + ",0" * 18 + "\n")
    (root / "video_features_basic_pure.csv").write_text(
        "video_id,author_id,video_type,upload_type,video_duration,tag\n2,5,NORMAL,a,1000,3\n")


LOG_FIELDS = ("user_id", "video_id", "date", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
              "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "is_profile_enter", "is_rand", "tab")
HEADER = ",".join(LOG_FIELDS) + "\n"
# one clicked, long-viewed (20 s of a 30 s video) and liked exposure in tab 1
ROW = "1,2,20220425,1650816000000,1,1,0,0,0,0,1,20000,30000,0,0,1\n"


def test_a_truncated_log_names_file_column_and_line(tmp_path) -> None:
    text = HEADER + ROW + "1,2,20220425,16508160"   # cut mid-row
    _tiny_release(tmp_path / "r", text)
    with pytest.raises(SchemaError, match=r"log_standard_x.csv: column 'is_click'.*line 3"):
        import_kuairand(tmp_path / "r", tmp_path / "store", progress=False)
    assert not (tmp_path / "store" / "interactions").exists() or not stored_dates(tmp_path / "store")


def test_a_valid_tiny_release_imports(tmp_path) -> None:
    _tiny_release(tmp_path / "r", HEADER + ROW)
    assert import_kuairand(tmp_path / "r", tmp_path / "store", progress=False)["rows"] == 1
    row = read_interactions(tmp_path / "store").iloc[0]
    assert (row["is_click"], row["long_view"], row["is_like"], row["is_hate"], row["play_time_ms"]) == (1, 1, 1, 0, 20000)
    assert read_interactions(tmp_path / "store")["long_view"].dtype == "int8"


def test_a_log_without_long_view_names_the_file_and_the_column(tmp_path) -> None:
    """An export that dropped a feedback label must stop the import: a store whose long_view silently
    defaulted to 0 would train and evaluate the long-view objective on nothing."""
    keep = [i for i, f in enumerate(LOG_FIELDS) if f != "long_view"]
    cut = lambda line: ",".join(line.rstrip("\n").split(",")[i] for i in keep) + "\n"  # noqa: E731
    _tiny_release(tmp_path / "r", cut(HEADER) + cut(ROW))
    with pytest.raises(SchemaError) as info:
        import_kuairand(tmp_path / "r", tmp_path / "store", progress=False)
    msg = str(info.value)
    assert "log_standard_x.csv" in msg and "long_view" in msg and "\n" not in msg
    assert not (tmp_path / "store" / "interactions").exists() or not stored_dates(tmp_path / "store")


def test_a_benchmark_store_is_imported_afresh_whatever_the_work_folder_held(tmp_path) -> None:
    """experiment.fresh_kuairand_store: a store an earlier importer left in a benchmark's work folder is replaced,
    never scored as today's (a recorded multi-objective run could not be reproduced from the commit it named)."""
    from sass_retrieval.experiment import fresh_kuairand_store

    _tiny_release(tmp_path / "r", HEADER + ROW)
    stale = tmp_path / "work" / "store" / "interactions" / "date=20220101"
    stale.mkdir(parents=True)
    (stale / "part.parquet").write_text("left by an older importer")
    store = fresh_kuairand_store(tmp_path / "r", tmp_path / "work")
    assert store == tmp_path / "work" / "store" and not stale.exists()
    assert stored_dates(store) == [20220425] and len(read_interactions(store)) == 1
