"""The streamed training input (train.stream): the same rows as the in-memory positives, single-day batches, a
rank split that covers the epoch once, a deterministic order, and resume by skipping batches; then fine-tuning
the tiny project with train.input: stream."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from support import TINY_SCENARIOS, cwd, tiny_params, write_project

from sass_retrieval.data.engine import connect
from sass_retrieval.data.shards import trained_scenarios, write_shards
from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.errors import MissingPrerequisiteError
from sass_retrieval.models.bank import load_bank
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.finetune import _positives, finetune
from sass_retrieval.train.recipes import finetune_job
from sass_retrieval.train.stream import PositiveStream, positive_ids, stream_loader

ROW_GROUP = 40    # rows per row group of the test's shards: many row groups


@pytest.fixture(scope="module")
def grouped(tiny_project: dict, tiny_bank, tmp_path_factory) -> dict:
    """The tiny split's training shards (data.shards) in small row groups, and its banks: every positive in
    memory, and streaming from the shards (the newest day in memory)."""
    features, root = tiny_project["features"], tmp_path_factory.mktemp("grouped")
    con = connect(512, threads=2, temp_dir=root / "spill")
    try:
        meta = write_shards(con, features, trained_scenarios(features, TINY_SCENARIOS), 0, root / "shards", ROW_GROUP)
    finally:
        con.close()
    assert len(meta["row_groups"]) > 3 * len(TINY_SCENARIOS)
    _, cfg = tiny_bank
    users, items = read_users(tiny_project["store"]), read_items(tiny_project["store"])
    memory = load_bank(features, users, items, cfg)
    n = len(memory.train_dates)
    streaming = load_bank(features, users, items, cfg, memory_days=frozenset({n - 1}), shards_dir=root / "shards")
    return {"memory": memory, "streaming": streaming, "cfg": cfg, "days": set(range(n)), "shards": root / "shards",
            "features": features, "users": users, "items": items}


def rows(pos: dict[str, np.ndarray]) -> np.ndarray:
    """Every row as one int64 vector (scen, user, item, day, seq, stats bits, labels), sorted: a multiset."""
    cols = [pos["scen"][:, None], pos["user"][:, None], pos["item"][:, None], pos["day"][:, None],
            pos["seq"].astype(np.int64), pos["stats"].astype(np.float32).view(np.int32).astype(np.int64)]
    if "labels" in pos:
        cols.append(pos["labels"].astype(np.int64))
    m = np.concatenate(cols, axis=1)
    return m[np.lexsort(m.T[::-1])]


def epoch(stream: PositiveStream, e: int = 0, start: int = 0) -> list[tuple[int, dict[str, np.ndarray]]]:
    stream.set_epoch(e, start)
    return list(stream_loader(stream))


def joined(batches: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for _, b in batches]) for k in batches[0][1]}


@pytest.mark.parametrize("objective,labels", [("click", False), ("long_view", False), ("click", True)])
def test_an_epoch_streams_exactly_the_in_memory_positives(grouped, objective, labels) -> None:
    bank, days = grouped["streaming"], grouped["days"] - {0}
    expected = _positives(grouped["memory"], TINY_SCENARIOS, days, objective, labels)
    stream = PositiveStream(bank, TINY_SCENARIOS, days, objective, labels, batch_size=64, shuffle_buffer=300, seed=1)
    batches = epoch(stream)
    got = joined(batches)
    assert set(got) == set(expected)
    assert all(got[k].dtype == expected[k].dtype for k in got)
    assert len(got["user"]) == len(expected["user"]) > 0
    assert np.array_equal(rows(got), rows(expected))
    assert 0 not in set(got["day"].tolist())
    if labels:
        assert got["labels"].any(1).all() and not got["labels"][:, 0].all()   # other objectives' rows too


def test_batches_are_single_day_at_most_batch_size_and_counted_up_front(grouped) -> None:
    days = grouped["days"]
    stream = PositiveStream(grouped["streaming"], TINY_SCENARIOS, days, batch_size=50, shuffle_buffer=200, seed=0)
    batches = epoch(stream)
    assert [k for k, _ in batches] == list(range(len(batches)))
    assert all(len(np.unique(b["day"])) == 1 and 0 < len(b["day"]) <= 50 for _, b in batches)
    per_day = np.bincount(_positives(grouped["memory"], TINY_SCENARIOS, days)["day"])
    assert len(batches) == stream.steps(0) == int(np.ceil(per_day / 50).sum())
    short_days = [int(b["day"][0]) for _, b in batches if len(b["day"]) < 50]
    assert len(short_days) == len(set(short_days)) == int((per_day % 50 > 0).sum())   # one short batch per day


def test_two_ranks_split_the_row_groups_and_cover_the_epoch_once(grouped) -> None:
    bank, days = grouped["streaming"], grouped["days"]
    every = rows(_positives(grouped["memory"], TINY_SCENARIOS, days))

    def rank(r: int, equalise: bool) -> PositiveStream:
        return PositiveStream(bank, TINY_SCENARIOS, days, batch_size=40, shuffle_buffer=200, seed=2, rank=r,
                              world=2, equalise=equalise)

    whole = [epoch(rank(r, False)) for r in (0, 1)]
    parts = [rows(joined(b)) for b in whole]
    assert len(parts[0]) and len(parts[1])
    assert np.array_equal(rows(joined(whole[0] + whole[1])), every)      # disjoint, and the union is the epoch
    shards = [set(rank(r, False).rank_shards(0, r)) for r in (0, 1)]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == len(rank(0, False).shards)
    equal = [epoch(rank(r, True)) for r in (0, 1)]
    assert len(equal[0]) == len(equal[1]) == min(len(b) for b in whole) == rank(0, True).steps(0) // 2


def test_the_same_seed_gives_the_same_batches_and_a_resumed_epoch_the_rest(grouped) -> None:
    bank, days = grouped["streaming"], grouped["days"]

    def stream(seed: int) -> PositiveStream:
        return PositiveStream(bank, TINY_SCENARIOS, days, labels=True, batch_size=32, shuffle_buffer=256, seed=seed)

    a, b = epoch(stream(7), 1), epoch(stream(7), 1)
    assert len(a) == len(b) > 6
    assert all(ka == kb and all(np.array_equal(x[k], y[k]) for k in x) for (ka, x), (kb, y) in zip(a, b, strict=True))
    other = epoch(stream(7), 2)
    assert any(not np.array_equal(x["user"], y["user"]) for (_, x), (_, y) in zip(a, other, strict=False))
    resumed = epoch(stream(7), 1, start=5)
    assert [k for k, _ in resumed] == [k for k, _ in a[5:]]
    assert all(all(np.array_equal(x[k], y[k]) for k in x) for (_, x), (_, y) in zip(a[5:], resumed, strict=True))


def test_batches_mix_scenarios_and_users_as_the_in_memory_plan(grouped) -> None:
    stream = PositiveStream(grouped["streaming"], TINY_SCENARIOS, grouped["days"], batch_size=64, shuffle_buffer=200,
                            seed=3)
    full = [b for _, b in epoch(stream) if len(b["day"]) == 64]
    assert len(full) > 5
    assert all(len(np.unique(b["scen"])) == len(TINY_SCENARIOS) for b in full)      # every batch: every scenario
    assert all(len(np.unique(b["user"])) > 32 for b in full)                         # and many users
    one = PositiveStream(grouped["streaming"], ["s1"], grouped["days"], batch_size=64, shuffle_buffer=200, seed=3)
    got = joined(epoch(one))
    assert set(got["scen"].tolist()) == {grouped["streaming"].scen_index("s1")}      # a job's scenarios only
    assert np.array_equal(rows(got), rows(_positives(grouped["memory"], ["s1"], grouped["days"])))


def test_the_stream_fails_in_one_line_without_the_shards_of_its_split(grouped, tmp_path) -> None:
    bank = grouped["streaming"]

    def with_shards(folder) -> object:
        return replace(bank, positive_files=replace(bank.positive_files, shards_dir=folder))

    with pytest.raises(MissingPrerequisiteError, match="shards_dir"):
        PositiveStream(with_shards(None), TINY_SCENARIOS, grouped["days"])
    with pytest.raises(MissingPrerequisiteError, match="no training shards"):
        PositiveStream(with_shards(tmp_path / "missing"), TINY_SCENARIOS, grouped["days"])
    stale = tmp_path / "stale"
    shutil.copytree(grouped["shards"], stale)
    meta = json.loads((stale / "meta.json").read_text())
    (stale / "meta.json").write_text(json.dumps({**meta, "train_dates": meta["train_dates"][1:]}))
    with pytest.raises(MissingPrerequisiteError, match="train_dates: written for"):
        PositiveStream(with_shards(stale), TINY_SCENARIOS, grouped["days"])
    (stale / "meta.json").write_text(json.dumps({**meta, "scenarios": ["s0", "s1"]}))
    with pytest.raises(MissingPrerequisiteError, match="scenarios: written for"):
        PositiveStream(with_shards(stale), TINY_SCENARIOS, grouped["days"])


def test_a_streaming_bank_holds_the_held_out_day_only(grouped) -> None:
    memory, streaming = grouped["memory"], grouped["streaming"]
    newest = len(memory.train_dates) - 1
    assert np.array_equal(streaming.user_ids, memory.user_ids)     # the same id universe, hence the same vectors
    held = _positives(streaming, TINY_SCENARIOS, {newest}, labels=True)
    assert np.array_equal(rows(held), rows(_positives(memory, TINY_SCENARIOS, {newest}, labels=True)))
    assert sum(len(streaming.per[s].mt_user) for s in TINY_SCENARIOS) == len(held["user"])
    with pytest.raises(ValueError, match="holds the positives of days"):
        _positives(streaming, TINY_SCENARIOS, {0})
    ids = positive_ids(streaming, TINY_SCENARIOS, grouped["days"], "like")
    ref = _positives(memory, TINY_SCENARIOS, grouped["days"], "like")
    key = ("scen", "user", "item", "day")
    assert np.array_equal(*(np.sort(np.stack([p[k] for k in key], 1), axis=0) for p in (ids, ref)))


def test_finetuning_with_the_stream_trains_the_held_out_selection(grouped, tmp_path) -> None:
    params = tiny_params({"finetune": {"epochs": 2, "batch_size": 64, "negatives": 16, "early_stopping": True,
                                       "patience": 1, "refit": "holdout", "prior_grid": [0.5]},
                          "train": {"input": "stream", "shuffle_buffer": 256, "checkpoint_every": 0}})
    job = finetune_job(params, seed=0, progress=False)
    assert job.input == "stream" and job.shuffle_buffer == 256
    torch.manual_seed(0)
    report = finetune(RetrievalModel(grouped["cfg"]), grouped["streaming"], job, tmp_path)
    assert report["select"]["steps"] > 0 and report["refit"]["steps"] > 0
    assert report["best_epoch"] >= 1 and np.isfinite(report["validation"][0]["val_ndcg@50"])
    with pytest.raises(ValueError, match="holds the positives of days"):   # the memory input cannot use it
        finetune(RetrievalModel(grouped["cfg"]), grouped["streaming"],
                 finetune_job(tiny_params({"train": {"input": "memory"}}), seed=0, progress=False), tmp_path / "m")


@pytest.mark.slow
def test_the_train_stage_with_the_stream_writes_a_model(tmp_path) -> None:
    from pipelines import ingest, shards, split, train
    from sass_retrieval.models.checkpoint import load_model

    root = write_project(tmp_path / "p", train__input="stream", train__shuffle_buffer=512, finetune__epochs=1)
    with cwd(root):
        assert ingest.main([]) == 0
        for s in TINY_SCENARIOS:
            assert split.main(["--scenario", s]) == 0
        assert split.main(["--pairs"]) == 0
        with pytest.raises(MissingPrerequisiteError, match="no training shards"):
            train.main(["--row", "dssm_mixed", "--no-progress"])
        assert shards.main([]) == 0
        assert train.main(["--row", "dssm_mixed", "--no-progress"]) == 0
    model, manifest = load_model(root / "models/dssm_mixed/model.pt")
    assert manifest["meta"]["row"] == "dssm_mixed" and isinstance(model, RetrievalModel)


