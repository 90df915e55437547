"""The DuckDB split (data.split_sql, what the split stage runs) writes exactly the tables of the pandas reference
(data.features.split_scenario / pretrain_pairs, the spec): same columns, dtypes as pandas reads them back, values
and row order; and the same stats.json. On the tiny synthetic store and on a store of edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.data.engine import connect, interaction_files
from sass_retrieval.data.features import (
    OTHER,
    SPLIT_TABLES,
    scenario_map,
    split_meta,
    write_pairs_split,
    write_scenario_split,
)
from sass_retrieval.data.schema import FEEDBACK_COLUMNS, ITEMS, USERS
from sass_retrieval.data.split_sql import write_pairs_split_sql, write_scenario_split_sql
from sass_retrieval.data.store import DayWriter, read_interactions, read_items, read_users, write_table
from sass_retrieval.data.synthetic import SyntheticConfig, generate

SEQ_LEN = 5


def _assert_same_split(store: Path, dates: list[int], declared: list[str], min_rows: int, tmp: Path,
                       seq_len: int = SEQ_LEN) -> dict:
    """Every scenario's folder and the pairs', by the reference and by DuckDB; asserts them equal."""
    train = read_interactions(store, dates[0], dates[-1])
    smap = scenario_map(train["scenario"].value_counts(), declared, min_rows)
    train["scenario"] = smap.apply(train["scenario"])
    meta = split_meta(smap.names, list(smap.reported), smap.mapping, dates, [], seq_len)
    users, items = read_users(store), read_items(store)
    files = interaction_files(store, dates)
    con = connect(512, threads=2, temp_dir=tmp / "duck")
    stats = {}
    for s in smap.names:
        ref = write_scenario_split(tmp / "ref" / s, train, s, users, items, meta)
        got = write_scenario_split_sql(con, files, store, tmp / "sql" / s, s, smap.mapping, meta)
        assert got == ref, s
        assert json.loads((tmp / "sql" / s / "stats.json").read_text()) == json.loads(
            (tmp / "ref" / s / "stats.json").read_text())
        assert (tmp / "sql" / s / "meta.json").read_text() == (tmp / "ref" / s / "meta.json").read_text()
        for table in SPLIT_TABLES:
            a = pd.read_parquet(tmp / "ref" / s / f"{table}.parquet")
            b = pd.read_parquet(tmp / "sql" / s / f"{table}.parquet")
            pd.testing.assert_frame_equal(b, a, check_exact=True, obj=f"{s}/{table}")
        stats[s] = ref
    ref = write_pairs_split(tmp / "ref" / "pairs", train, meta)
    got = write_pairs_split_sql(con, files, tmp / "sql" / "pairs", smap.names, smap.mapping, meta)
    assert got == ref
    for table in ("users", "items"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp / "sql" / "pairs" / f"{table}.parquet"),
                                      pd.read_parquet(tmp / "ref" / "pairs" / f"{table}.parquet"),
                                      check_exact=True, obj=f"pairs/{table}")
    stats["pairs"] = ref
    return stats


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The tiny project's synthetic store (tests/support.py TINY_OVERRIDES' data.synthetic)."""
    cfg = SyntheticConfig(seed=5, users=300, items=150, scenarios=("s0", "s1", "s2"), days=5, rows=8000,
                          start_date=20220425, chunk_rows=1500)
    store = tmp_path_factory.mktemp("tiny") / "store"
    generate(store, cfg, progress=False)
    return store, cfg.dates[:3]


def test_the_tiny_store_splits_the_same(tiny_store: tuple[Path, list[int]], tmp_path: Path) -> None:
    store, dates = tiny_store
    stats = _assert_same_split(store, dates, ["s0", "s1", "s2"], 100, tmp_path)
    assert set(stats) == {"s0", "s1", "s2", "pairs"}
    assert all(stats[s]["positive_rows"] >= stats[s]["positives"] > 0 for s in ("s0", "s1", "s2"))
    assert stats["s0"]["positive_rows"] > stats["s0"]["positives"]          # non-click positives were compared
    assert stats["pairs"]["user_pairs"] > 0 and stats["pairs"]["item_pairs"] > 0


def test_scenarios_mapped_to_other_split_the_same(tiny_store: tuple[Path, list[int]], tmp_path: Path) -> None:
    store, dates = tiny_store
    stats = _assert_same_split(store, dates, ["s0"], 1, tmp_path, seq_len=3)   # s1 and s2 become 'other'
    assert set(stats) == {"s0", OTHER, "pairs"} and stats[OTHER]["rows"] > 1000


D1, D2, D3 = 20220501, 20220502, 20220503
DAY_MS = 86_400_000


def _edge_rows() -> pd.DataFrame:
    """(user, video, date, time offset within the window, click, long view, like, scenario)."""
    t = lambda day, ms: (day - D1) * DAY_MS + ms  # noqa: E731
    rows = [
        # user 1: clicks on every day, more than seq_len of them, ties in time_ms, a like without a click
        *[(1, 100 + i, D1, t(D1, 10 + i // 2), 1, 0, 0, "a") for i in range(7)],
        (1, 200, D2, t(D2, 5), 0, 0, 1, "a"), (1, 201, D2, t(D2, 6), 1, 1, 0, "a"), (1, 202, D2, t(D2, 6), 1, 0, 1, "a"),
        (1, 203, D3, t(D3, 1), 1, 0, 0, "a"), (1, 204, D3, t(D3, 2), 0, 1, 0, "a"),
        # an exact duplicate row, and a row equal on (user, time, video) with other labels
        (1, 203, D3, t(D3, 1), 1, 0, 0, "a"), (1, 204, D3, t(D3, 2), 0, 0, 1, "a"),
        # user 2: first click on the last day; a long view without a click before it
        (2, 100, D1, t(D1, 1), 0, 0, 0, "a"), (2, 101, D2, t(D2, 1), 0, 1, 0, "a"), (2, 102, D3, t(D3, 1), 1, 0, 0, "a"),
        # user 3: a row dated the next day before a row of the earlier day in time (KuaiRand's 23:xx rows)
        (3, 110, D1, t(D1, 1), 1, 0, 0, "a"), (3, 111, D2, t(D1, 2), 1, 0, 0, "a"), (3, 112, D1, t(D1, 3), 1, 0, 0, "a"),
        (3, 113, D2, t(D2, 4), 1, 0, 1, "a"), (3, 114, D2, t(D2, 5), 0, 1, 0, "a"), (3, 115, D3, t(D3, 1), 1, 0, 0, "a"),
        # user 4: never clicks, likes; not in the users table; item 900 not in the items table
        (4, 900, D2, t(D2, 1), 0, 0, 1, "a"), (4, 100, D3, t(D3, 1), 0, 1, 1, "b"),
        # the same ids in other raw scenarios ("b", "c" map to 'other' when undeclared)
        (1, 100, D2, t(D2, 9), 1, 0, 0, "b"), (2, 101, D3, t(D3, 9), 0, 0, 0, "c"), (3, 110, D1, t(D1, 9), 1, 1, 1, "c"),
        (1, 101, D3, t(D3, 9), 1, 0, 0, "c"),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "video_id", "date", "time_ms", "is_click", "long_view", "is_like",
                                     "scenario"])
    df["time_ms"] += 1_651_334_400_000
    for c in FEEDBACK_COLUMNS:
        if c not in df:
            df[c] = 0
    return df.assign(play_time_ms=0, duration_ms=1000, is_rand=0)


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("edge") / "store"
    df = _edge_rows()
    writer = DayWriter(store)
    writer.write(df.iloc[::2])        # two part files per (day, scenario) in places
    writer.write(df.iloc[1::2])
    writer.commit()
    users = pd.DataFrame({"user_id": [1, 2, 3], **{c: "x" for c in USERS.names if USERS.dtypes[c] == "string"}})
    for c in USERS.names:
        if c not in users:
            users[c] = np.int64(0) if USERS.dtypes[c] == "int64" else np.int8(1)
    items = pd.DataFrame({"video_id": sorted(set(df["video_id"]) - {900}), "author_id": 7, "tag": 3,
                          "video_type": "NORMAL", "upload_type": None, "video_duration_ms": np.nan})
    write_table(users, store, USERS)
    write_table(items, store, ITEMS)
    return store


@pytest.mark.parametrize("seq_len", [1, 3, 5])
def test_edge_cases_split_the_same(edge_store: Path, tmp_path: Path, seq_len: int) -> None:
    stats = _assert_same_split(edge_store, [D1, D2, D3], ["a"], 1, tmp_path, seq_len=seq_len)
    assert set(stats) == {"a", OTHER, "pairs"}
    pos = pd.read_parquet(tmp_path / "sql" / "a" / "positives.parquet")
    first = pos[(pos["user_id"] == 2) & (pos["is_click"] == 1)]
    assert (first["date"] == D3).all() and (first[[f"seq_{i}" for i in range(seq_len)]] == -1).all().all()
    users = pd.read_parquet(tmp_path / "sql" / "a" / "users.parquet")
    assert users.loc[users["user_id"] == 4, "is_live_streamer"].isna().all()      # not in the users table


def test_the_histories_are_the_ones_the_spec_states(edge_store: Path, tmp_path: Path) -> None:
    """Not only equal to the reference: user 3's click on D1 after its D2-dated row sees that row (time order
    cut), its like-only row on D2 sees the D1 clicks only (date cut)."""
    _assert_same_split(edge_store, [D1, D2, D3], ["a"], 1, tmp_path, seq_len=3)
    pos = pd.read_parquet(tmp_path / "sql" / "a" / "positives.parquet")
    u3 = pos[pos["user_id"] == 3].set_index("video_id")[["seq_0", "seq_1", "seq_2"]]
    assert u3.loc[112].tolist() == [-1, 110, 111]
    assert u3.loc[114].tolist() == [-1, 110, 112]
