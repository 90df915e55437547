"""The ctnet recipe: a daily source and continually transferred targets, on the tiny synthetic bank."""

from __future__ import annotations

import copy

import pytest
import torch
from support import TINY_PARAMS, merged

from sass_retrieval.models.ctnet import CTNet
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.checkpoint import (
    CheckpointError,
    load_ctnet,
    load_model,
    save_checkpoint,
    save_ctnet,
)
from sass_retrieval.train.ctnet import largest_scenario, source_and_targets, train_ctnet


def _params(**ctnet) -> dict:
    return merged(TINY_PARAMS, {"model": {"user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97,
                                          "hidden": 16, "emb_dim": 8, "field_dim": 4},
                                "finetune": {"epochs": 1, "early_stopping": False, "max_steps_per_epoch": 3},
                                "train": {"checkpoint_every": 0},
                                "ctnet": {"source": "largest", "adapters": True, "init": "all", **ctnet}})


def test_source_serves_the_largest_scenario_and_every_other_gets_a_target(tiny_bank, tmp_path) -> None:
    bank, _ = tiny_bank
    source, models, report = train_ctnet(bank, _params(), 0, tmp_path, progress=False)
    large = largest_scenario(bank)
    assert models[large] is source and set(models) == set(bank.scenarios)
    assert all(isinstance(models[s], CTNet) for s in report["targets"])
    assert len(bank.per[large].pos_user) == max(len(bank.per[s].pos_user) for s in bank.scenarios)
    # the source the targets read is a frozen copy, bit-identical to the trained source
    for s in report["targets"]:
        assert all(torch.equal(a, b) for a, b in zip(models[s].source.state_dict().values(),
                                                    source.state_dict().values(), strict=True))
    assert source_and_targets(bank, "all")[1] is None


def test_next_day_reloads_the_new_source_and_keeps_the_targets(tiny_bank, tmp_path) -> None:
    """Day 2 warm-starts the source and the targets; the targets' adapters then read day 2's source."""
    bank, _ = tiny_bank
    src1, day1, rep = train_ctnet(bank, _params(), 0, tmp_path / "d1", progress=False)
    src2, day2, _ = train_ctnet(bank, _params(), 1, tmp_path / "d2", source_init=src1,
                                target_inits={s: day1[s] for s in rep["targets"]}, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(src1.state_dict().values(), src2.state_dict().values(),
                                                     strict=True))
    s = rep["targets"][0]
    assert all(torch.equal(a, b) for a, b in zip(day2[s].source.state_dict().values(),
                                                src2.state_dict().values(), strict=True))
    # one-time transfer: the adapters keep reading the first day's source
    _, one_time, _ = train_ctnet(bank, _params(), 1, tmp_path / "d2b", source_init=src1, adapter_source=src1,
                                 target_inits={s: day1[s] for s in rep["targets"]}, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(one_time[s].source.state_dict().values(),
                                                src1.state_dict().values(), strict=True))


def test_pretrain_then_finetune_variants(tiny_bank, tmp_path) -> None:
    bank, _ = tiny_bank
    _, models, rep = train_ctnet(bank, _params(adapters=False, init="embeddings"), 0, tmp_path, progress=False)
    assert all(type(models[s]) is RetrievalModel for s in rep["targets"])


def test_ctnet_checkpoint_round_trip_and_a_missing_source(tiny_bank, tmp_path) -> None:
    bank, _ = tiny_bank
    source, models, rep = train_ctnet(bank, _params(), 0, tmp_path / "train", progress=False)
    s = rep["targets"][0]
    save_checkpoint(tmp_path / "source.pt", source)
    save_ctnet(tmp_path / f"target_{s}.pt", models[s], tmp_path / "source.pt")
    loaded, _ = load_ctnet(tmp_path / f"target_{s}.pt", tmp_path / "source.pt")
    b = bank.serving_user_batch(bank.user_rows(bank.user_ids[:5]), s)
    models[s].eval()
    with torch.no_grad():
        assert torch.allclose(loaded.user_vectors(b)[0], models[s].user_vectors(b)[0])
    # another source: refused for serving, accepted for tomorrow's warm start
    other = copy.deepcopy(source)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_checkpoint(tmp_path / "source2.pt", other)
    with pytest.raises(CheckpointError, match="another source"):
        load_ctnet(tmp_path / f"target_{s}.pt", tmp_path / "source2.pt")
    load_ctnet(tmp_path / f"target_{s}.pt", tmp_path / "source2.pt", same_source=False)
    (tmp_path / "source.pt").unlink()
    with pytest.raises(CheckpointError, match="needs its source model"):
        load_ctnet(tmp_path / f"target_{s}.pt", tmp_path / "source.pt")
    assert load_model(tmp_path / "source2.pt")[0].cfg.arch == "dssm"
