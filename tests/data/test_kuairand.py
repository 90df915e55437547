from __future__ import annotations

import pytest

from sass_retrieval.data.kuairand import SourceError, import_kuairand
from sass_retrieval.data.schema import SchemaError, stored_dates
from sass_retrieval.data.store import read_interactions, read_items, read_users

from support import SHARED, needs_kuairand


@needs_kuairand
def test_imports_the_shared_release(tmp_path) -> None:
    summary = import_kuairand(SHARED, tmp_path, chunk_rows=50_000, progress=False)
    assert summary["rows"] == 185_061
    assert stored_dates(tmp_path)[0] == 20220425 and stored_dates(tmp_path)[-1] == 20220505
    df = read_interactions(tmp_path)
    assert len(df) == 185_061
    assert set(df["scenario"].unique()) <= {str(t) for t in range(15)}
    assert (df["scenario"] == "1").mean() > 0.7
    assert 0.4 < df["is_click"].mean() < 0.5
    assert len(read_users(tmp_path)) == 27_285 and len(read_items(tmp_path)) == 7_583


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


HEADER = "user_id,video_id,date,time_ms,is_click,play_time_ms,duration_ms,is_rand,tab\n"


def test_a_truncated_log_names_file_column_and_line(tmp_path) -> None:
    text = HEADER + "1,2,20220425,1650816000000,1,10,1000,0,1\n1,2,20220425,16508160"   # cut mid-row
    _tiny_release(tmp_path / "r", text)
    with pytest.raises(SchemaError, match=r"log_standard_x.csv: column 'is_click'.*line 3"):
        import_kuairand(tmp_path / "r", tmp_path / "store", progress=False)
    assert not (tmp_path / "store" / "interactions").exists() or not stored_dates(tmp_path / "store")


def test_a_valid_tiny_release_imports(tmp_path) -> None:
    _tiny_release(tmp_path / "r", HEADER + "1,2,20220425,1650816000000,1,10,1000,0,1\n")
    assert import_kuairand(tmp_path / "r", tmp_path / "store", progress=False)["rows"] == 1
