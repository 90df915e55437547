"""Stage `ingest`: the synthetic source as a daily feed, and a bad source that leaves the previous store.

The failure tests run the entry points as a person and dvc.yaml do (`sass ingest`, `python -m
pipelines.ingest`, in a subprocess) and check what they print, the exit code and the store left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import cwd, write_project

from pipelines import ingest
from sass_retrieval.config import load_params, update_params_file
from sass_retrieval.data.kuairand import ITEM_FILE, LOG_COLUMNS, USER_FILE
from sass_retrieval.data.schema import FEEDBACK_COLUMNS, stored_dates
from sass_retrieval.data.store import read_interactions
from sass_retrieval.data.synthetic import SyntheticConfig, generate
from sass_retrieval.errors import EXIT_BAD_INPUT

REPO = Path(__file__).resolve().parents[2]


def _summary(root: Path) -> dict:
    return json.loads((root / "data/store/ingest.json").read_text())


def test_the_synthetic_feed_writes_the_window_of_any_day_and_generates_only_what_is_new(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", window__end_date=20260310)   # train 3 + test 2 days
    with cwd(root):
        assert ingest.main([]) == 0
        assert stored_dates(root / "data/store") == [20260306, 20260307, 20260308, 20260309, 20260310]
        assert _summary(root)["generated"] == stored_dates(root / "data/store")
        update_params_file(root / "params.yaml", {"window.end_date": 20260311})   # the next day's run
        assert ingest.main([]) == 0
    assert stored_dates(root / "data/store") == [20260307, 20260308, 20260309, 20260310, 20260311]
    assert _summary(root)["kept"] == [20260307, 20260308, 20260309, 20260310]
    assert _summary(root)["generated"] == [20260311]
    # a kept day and a new day are what a fresh generation of that day alone writes
    cfg = SyntheticConfig.from_params(load_params(root / "params.yaml"))
    generate(tmp_path / "fresh", cfg, progress=False, dates=[20260307, 20260311])
    for day in (20260307, 20260311):
        pd.testing.assert_frame_equal(read_interactions(root / "data/store", day, day),
                                      read_interactions(tmp_path / "fresh", day, day))


def test_a_store_from_before_the_feedback_labels_is_regenerated_not_carried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A synthetic store written by the previous generator (no feedback columns, an older fingerprint in
    ingest.json) must not be kept day by day: validation would reject every file of it."""
    root = write_project(tmp_path / "p", window__end_date=20260310)
    store = root / "data/store"
    with cwd(root):
        assert ingest.main([]) == 0
    fresh = read_interactions(store)
    summary = _summary(root)
    summary["synthetic"] = {k: v for k, v in summary["synthetic"].items() if k not in ("generator", "columns")}
    (store / "ingest.json").write_text(json.dumps(summary))
    for part in store.glob("interactions/date=*/scenario=*/*.parquet"):
        pd.read_parquet(part).drop(columns=list(FEEDBACK_COLUMNS)).to_parquet(part, index=False)
    with cwd(root), caplog.at_level("INFO", logger="ingest"):
        assert ingest.main([]) == 0
    assert _summary(root)["kept"] == [] and _summary(root)["generated"] == stored_dates(store)
    assert "another generator config or version (differs in: columns, generator)" in caplog.text
    pd.testing.assert_frame_equal(read_interactions(store), fresh)


def test_auto_is_the_generators_fixed_range(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")                                 # window.end_date: auto
    with cwd(root):
        assert ingest.main([]) == 0
    assert stored_dates(root / "data/store") == SyntheticConfig.from_params(load_params(root / "params.yaml")).dates


def _release(folder: Path) -> Path:
    """A KuaiRand-shaped release whose log has a header and no rows."""
    folder.mkdir()
    (folder / "log_standard_4_22_to_5_08_pure.csv").write_text(",".join(LOG_COLUMNS) + "\n")
    users = {"user_id": [1], "user_active_degree": ["full_active"], "is_live_streamer": [0], "is_video_author": [0],
             "follow_user_num_range": ["0"], "fans_user_num_range": ["0"], "friend_user_num_range": ["0"],
             "register_days_range": ["730+"], **{f"onehot_feat{i}": [0] for i in range(18)}}
    pd.DataFrame(users).to_csv(folder / USER_FILE, index=False)
    pd.DataFrame({"video_id": [1], "author_id": [1], "video_type": ["NORMAL"], "upload_type": ["Web"],
                  "video_duration": [1000.0], "tag": ["1"]}).to_csv(folder / ITEM_FILE, index=False)
    return folder


def _run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SASS_DEBUG"}
    environ.update(PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", **env)
    return subprocess.run([sys.executable, *args], cwd=root, env=environ, capture_output=True, text=True, timeout=300)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("entry", [["-m", "pipelines.ingest"], ["-m", "sass_retrieval.cli", "ingest"]])
def test_a_header_only_log_fails_ingest_and_keeps_the_previous_store(tmp_path: Path, entry: list[str]) -> None:
    root = write_project(tmp_path / "p")
    with cwd(root):
        assert ingest.main([]) == 0
    before = _files(root / "data/store")
    release = _release(tmp_path / "release")
    res = _run(root, *entry, "--source", "kuairand", "--kuairand-dir", str(release))
    assert res.returncode == EXIT_BAD_INPUT, res.stderr
    assert res.stderr.splitlines() == [f"error: {release / 'log_standard_4_22_to_5_08_pure.csv'}: rows: at least "
                                       "one data row: 0 rows (header-only file)"], res.stderr
    assert _files(root / "data/store") == before
    assert sorted(p.name for p in (root / "data").iterdir()) == ["store"]   # no half-built store beside it


def test_a_missing_release_folder_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    cmd = ["-m", "sass_retrieval.cli", "ingest", "--source", "kuairand", "--kuairand-dir", "/nonexistent"]
    res = _run(root, *cmd)
    assert res.returncode == EXIT_BAD_INPUT
    assert res.stderr.splitlines() == ["error: /nonexistent: KuaiRand release folder (data.kuairand_dir, "
                                       "--kuairand-dir): not found"], res.stderr
    debug = _run(root, *cmd, "--debug")
    assert debug.returncode == EXIT_BAD_INPUT
    assert "Traceback (most recent call last)" in debug.stderr and "SourceError" in debug.stderr
    assert debug.stderr.splitlines()[-1] == res.stderr.strip()
    assert "Traceback" in _run(root, *cmd, SASS_DEBUG="1").stderr
    assert not (root / "data/store").exists()
