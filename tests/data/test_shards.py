"""The training shards (data.shards): every trained scenario's positives rows with their scenario, in one seeded
random order, in row groups of the configured size; meta.json checked against the split it was written from."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import TINY_SCENARIOS

from sass_retrieval.data.engine import connect
from sass_retrieval.data.shards import SCENARIO, check_shards, split_rows, trained_scenarios, write_shards
from sass_retrieval.errors import MissingPrerequisiteError

ROWS = 50   # rows per row group: many row groups of the tiny split


def shards(features, out, seed: int = 0, rows: int = ROWS, file_row_groups: int = 256,
           min_row_groups: int = 1) -> dict:
    con = connect(512, threads=2, temp_dir=out.with_name(out.name + "-spill"))
    try:
        return write_shards(con, features, trained_scenarios(features, TINY_SCENARIOS), seed, out, rows,
                            file_row_groups, min_row_groups)
    finally:
        con.close()


def read(out, meta: dict) -> pd.DataFrame:
    return pd.concat([pq.read_table(out / f).to_pandas() for f in meta["files"]], ignore_index=True)


@pytest.fixture(scope="module")
def written(tiny_project, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shards")
    return {"meta": shards(tiny_project["features"], root / "a"), "out": root / "a", "root": root,
            "features": tiny_project["features"]}


def test_the_shards_hold_every_scenarios_positives_with_its_name(written) -> None:
    got = read(written["out"], written["meta"])
    expected = pd.concat([pd.read_parquet(written["features"] / s / "positives.parquet").assign(**{SCENARIO: s})
                          for s in TINY_SCENARIOS], ignore_index=True)
    assert len(got) == len(expected) > 1000 and set(got.columns) == set(expected.columns)
    cols = sorted(expected.columns)
    key = lambda df: df[cols].astype(str).agg("|".join, axis=1).sort_values().to_numpy()   # noqa: E731
    assert np.array_equal(key(got), key(expected))
    meta = written["meta"]
    assert meta["source_rows"] == split_rows(written["features"], TINY_SCENARIOS)
    per_day = got.groupby([SCENARIO, "date"]).size()
    assert {s: {str(d): int(n) for (t, d), n in per_day.items() if t == s} for s in TINY_SCENARIOS} == meta["rows"]


def test_row_groups_have_the_configured_size_and_mix_scenarios_and_users(written) -> None:
    meta, out = written["meta"], written["out"]
    f = pq.ParquetFile(out / meta["files"][0])
    sizes = [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)]
    assert sizes == meta["row_groups"] and len(sizes) > 10 and meta["row_group_rows"] == ROWS
    assert all(n == ROWS for n in sizes[:-1]) and 0 < sizes[-1] <= ROWS
    first = f.read_row_group(0).to_pandas()
    assert first[SCENARIO].nunique() == len(TINY_SCENARIOS) and first["user_id"].nunique() > ROWS // 2
    users = read(out, meta)["user_id"].to_numpy()
    assert not (np.diff(users) >= 0).all()      # not sorted by user any more


def test_the_same_seed_gives_the_same_order_another_seed_another(written) -> None:
    root, features = written["root"], written["features"]
    a = read(written["out"], written["meta"])
    again = shards(features, root / "again")
    other = shards(features, root / "other", seed=1)
    assert read(root / "again", again).equals(a)
    b = read(root / "other", other)
    assert not b.equals(a) and len(b) == len(a)
    assert json.loads((root / "again/meta.json").read_text()) == written["meta"]


def test_a_small_window_gets_smaller_row_groups_for_the_ranks(written) -> None:
    n = sum(written["meta"]["source_rows"].values())
    meta = shards(written["features"], written["root"] / "small", rows=10 * n, min_row_groups=16)
    assert meta["row_group_rows"] == -(-n // 16) and len(meta["row_groups"]) == 16
    assert meta["row_groups"][:-1] == [meta["row_group_rows"]] * 15 and sum(meta["row_groups"]) == n
    assert read(written["root"] / "small", meta).equals(read(written["out"], written["meta"]))   # the same order


def test_files_hold_at_most_file_row_groups(written) -> None:
    meta = shards(written["features"], written["root"] / "files", file_row_groups=4)
    groups = [pq.ParquetFile(written["root"] / "files" / f).num_row_groups for f in meta["files"]]
    assert len(groups) > 2 and all(g == 4 for g in groups[:-1]) and sum(groups) == len(meta["row_groups"])
    assert read(written["root"] / "files", meta).equals(read(written["out"], written["meta"]))


def test_the_check_names_shards_of_another_split(written, tmp_path) -> None:
    out, features, meta = written["out"], written["features"], written["meta"]
    rows = split_rows(features, TINY_SCENARIOS)
    assert check_shards(out, TINY_SCENARIOS, meta["train_dates"], rows) == meta
    with pytest.raises(MissingPrerequisiteError, match="scenarios: written for"):
        check_shards(out, TINY_SCENARIOS[:2], meta["train_dates"], rows)
    with pytest.raises(MissingPrerequisiteError, match="train_dates"):
        check_shards(out, TINY_SCENARIOS, meta["train_dates"][1:], rows)
    with pytest.raises(MissingPrerequisiteError, match="source_rows"):
        check_shards(out, TINY_SCENARIOS, meta["train_dates"], {**rows, "s0": rows["s0"] + 1})
    with pytest.raises(MissingPrerequisiteError, match="no training shards"):
        check_shards(tmp_path / "none", TINY_SCENARIOS, meta["train_dates"], rows)


def test_a_skipped_scenario_has_no_shard_rows(written, tmp_path) -> None:
    features = tmp_path / "features"
    shutil.copytree(written["features"], features)
    shutil.rmtree(features / "s2")
    (features / "s2").mkdir()
    (features / "s2" / "skipped.json").write_text("{}")
    assert trained_scenarios(features, TINY_SCENARIOS) == ["s0", "s1"]
    con = connect(512, threads=1, temp_dir=tmp_path / "spill")
    try:
        meta = write_shards(con, features, trained_scenarios(features, TINY_SCENARIOS), 0, tmp_path / "out", ROWS)
    finally:
        con.close()
    assert meta["scenarios"] == ["s0", "s1"] and set(read(tmp_path / "out", meta)[SCENARIO]) == {"s0", "s1"}
