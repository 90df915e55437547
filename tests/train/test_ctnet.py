"""The ctnet recipe: a daily source and continually transferred targets, on the tiny synthetic bank."""

from __future__ import annotations

import copy

import pytest
import torch
from support import tiny_params

from sass_retrieval.models.checkpoint import CheckpointError, load_ctnet, load_model
from sass_retrieval.models.ctnet import CTNet
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.params_schema import Params
from sass_retrieval.train.checkpoint import save_checkpoint, save_ctnet
from sass_retrieval.train.ctnet import largest_scenario, source_and_targets, source_view, train_ctnet


def _params(finetune: dict | None = None, **ctnet) -> Params:
    return tiny_params({"model": {"user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97,
                                          "hidden": 16, "emb_dim": 8, "field_dim": 4},
                        "finetune": {"epochs": 1, "early_stopping": False, "max_steps_per_epoch": 3, **(finetune or {})},
                        "train": {"checkpoint_every": 0},
                        "ctnet": {"source": "largest", "adapters": True, "init": "all", "anchor_l2": 0.0, **ctnet}})


def test_source_serves_the_largest_scenario_and_every_other_gets_a_target(tiny_bank, tmp_path) -> None:
    bank, _ = tiny_bank
    source, models, report = train_ctnet(bank, _params(), 0, tmp_path, progress=False)
    large = largest_scenario(bank)
    assert models[large] is source and set(models) == set(bank.scenarios)
    assert all(isinstance(models[s], CTNet) for s in report["targets"])
    # the report says how far each target's adapters move its served unit vectors (a distance in [0, 2])
    assert all(0.0 <= report[s]["adapter_effect"][side] <= 2.0 for s in report["targets"] for side in ("user", "item"))
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


def test_a_scratch_target_is_its_own_model_drawn_as_dssm_single_draws_it(tiny_bank) -> None:
    """ctnet.init=scratch (the paper's setting): the first day's target shares no weight with the source and
    starts exactly where dssm_single's model of that scenario starts; the other modes copy the source."""
    from sass_retrieval.models.bank import model_config
    from sass_retrieval.train.ctnet import target_from_source
    from sass_retrieval.train.loop import seed_everything

    bank, _ = tiny_bank
    cfg = model_config(_params(), bank.scenarios, "dssm")
    seed_everything(1)
    source = RetrievalModel(cfg)
    seed_everything(0)
    single = RetrievalModel(cfg)
    seed_everything(0)
    scratch = target_from_source(source, cfg, "scratch")
    assert all(torch.equal(a, b) for a, b in zip(scratch.state_dict().values(), single.state_dict().values(),
                                                strict=True))
    assert not torch.equal(scratch.user_emb.weight, source.user_emb.weight)
    assert torch.equal(target_from_source(source, cfg, "embeddings").user_emb.weight, source.user_emb.weight)
    with pytest.raises(ValueError, match="ctnet.init must be one of"):
        target_from_source(source, cfg, "half")
    # a view: every scenario starts with the viewed scenario's embedding, the rest is the source's
    large = bank.scenarios[-1]
    viewed = target_from_source(source, cfg, "all", large)
    assert all(torch.equal(row, source.scen_emb.weight[bank.scenarios.index(large)]) for row in viewed.scen_emb.weight)
    assert torch.equal(viewed.video_emb.weight, source.video_emb.weight)


def test_anchor_l2_keeps_each_target_near_its_warm_start(tiny_bank, tmp_path) -> None:
    """ctnet.anchor_l2 (L2-SP): the same day trained with a strong pull ends with every target's towers closer
    to the source it started from than without it."""
    bank, _ = tiny_bank
    drift = {}
    for l2 in (0.0, 10.0):
        p = _params({"max_steps_per_epoch": 6, "scenario_l2": 0.0}, anchor_l2=l2)
        _, models, rep = train_ctnet(bank, p, 0, tmp_path / str(l2),
                                     progress=False)
        drift[l2] = sum(models[s].scenario_drift().item() for s in rep["targets"])
    assert drift[0.0] > 0.0
    assert drift[10.0] < 0.5 * drift[0.0]


def test_a_source_trained_on_every_scenario_serves_the_largest_at_its_own_epoch(tiny_bank, tmp_path,
                                                                                monkeypatch) -> None:
    """ctnet.source=all: scripted validation, the macro average peaks at epoch 1 and the largest scenario at
    epoch 3. The largest scenario is served by epoch 3's model (as dssm_mixed's would be); the source the targets
    read and start from is the macro pick, epoch 1's."""
    import sass_retrieval.train.finetune as ft

    bank, _ = tiny_bank
    large = largest_scenario(bank)
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted(model, bank_, pos, scenarios, k=50, days=None):
        if len(scenarios) > 1:            # the source's selection; the targets' (one scenario each) score flat
            snapshots.append(copy.deepcopy(model.state_dict()))
            e = len(snapshots)
            return {n: (1.0 if e == 3 else 0.5) if n == large else (1.0 if e == 1 else 0.1) for n in scenarios}
        return {n: 0.5 for n in scenarios}

    monkeypatch.setattr(ft, "validate_scenarios", scripted)
    p = _params({"epochs": 6, "early_stopping": True, "patience": 2, "min_epochs": 1, "refit": "none",
                 "prior_grid": [], "own_epoch_min_clicks": 1}, source="all")
    source, models, rep = train_ctnet(bank, p, 0, tmp_path, progress=False)
    assert models[large] is not source and rep["source"]["own_models"] == [large]
    assert all(torch.equal(v, snapshots[2][k]) for k, v in models[large].state_dict().items())
    assert all(torch.equal(v, snapshots[0][k]) for k, v in source.state_dict().items())
    t = rep["targets"][0]
    assert all(torch.equal(v, snapshots[0][k]) for k, v in models[t].source.state_dict().items())
    # source=largest trains on one scenario: its epoch is the macro epoch, the source serves it
    source, models, _ = train_ctnet(bank, p.override({"ctnet.source": "largest"}), 0, tmp_path / "l",
                                    progress=False)
    assert models[large] is source


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


def test_a_day_that_cannot_continue_yesterdays_models_names_the_key(tiny_bank, tmp_path) -> None:
    """A changed scenario set or model shape on an incremental day: one line naming the key, not torch's
    size-mismatch dump (the ctnet row loads yesterday's source and targets itself)."""
    from dataclasses import replace

    from sass_retrieval.config import ConfigError

    bank, _ = tiny_bank
    src1, day1, rep = train_ctnet(bank, _params(), 0, tmp_path / "d1", progress=False)
    other = RetrievalModel(replace(src1.cfg, scenarios=[*src1.cfg.scenarios, "new_tab"]))
    with pytest.raises(ConfigError, match="scenarios.names.*yesterday's ctnet source"):
        train_ctnet(bank, _params(), 1, tmp_path / "d2", source_init=other, progress=False)
    s = rep["targets"][0]
    wider = RetrievalModel(replace(src1.cfg, hidden=32))
    with pytest.raises(ConfigError, match=f"model.hidden.*yesterday's ctnet target of scenario {s}"):
        train_ctnet(bank, _params(), 1, tmp_path / "d3", source_init=src1, target_inits={s: wider}, progress=False)


def test_the_source_view_is_the_largest_scenario_only_for_a_source_trained_on_it_alone(tiny_bank, tmp_path) -> None:
    """ctnet.source_view=largest shows a largest-only source every target's rows as its own scenario's; a source
    trained on every scenario knows each target's own. The view survives the checkpoint round trip."""
    assert source_view("largest", "1", ["1"]) == "1"
    assert source_view("largest", "1", None) is None and source_view("own", "1", ["1"]) is None
    with pytest.raises(ValueError, match="ctnet.source_view must be one of"):
        source_view("mine", "1", ["1"])
    bank, _ = tiny_bank
    source, models, rep = train_ctnet(bank, _params(source_view="largest"), 0, tmp_path / "train", progress=False)
    s = rep["targets"][0]
    assert models[s].source_view == largest_scenario(bank)
    save_checkpoint(tmp_path / "source.pt", source)
    save_ctnet(tmp_path / f"target_{s}.pt", models[s], tmp_path / "source.pt")
    loaded, _ = load_ctnet(tmp_path / f"target_{s}.pt", tmp_path / "source.pt")
    assert loaded.source_view == models[s].source_view
    b = bank.serving_user_batch(bank.user_rows(bank.user_ids[:5]), s)
    models[s].eval()
    with torch.no_grad():
        assert torch.allclose(loaded.user_vectors(b)[0], models[s].user_vectors(b)[0])


def test_follow_source_moves_a_target_by_the_sources_update(tiny_bank, tmp_path) -> None:
    """alpha 1: the target keeps its own offset from the source (target − source is what it was against yesterday's);
    alpha 0 leaves it; integer buffers never move. A day-2 run with it differs from one without it."""
    from sass_retrieval.train.ctnet import follow_source

    bank, _ = tiny_bank
    src1, day1, rep = train_ctnet(bank, _params(), 0, tmp_path / "d1", progress=False)
    src2, _, _ = train_ctnet(bank, _params(), 1, tmp_path / "d2", source_init=src1, progress=False)
    s = rep["targets"][0]
    target = copy.deepcopy(day1[s].target)
    before = copy.deepcopy(target.state_dict())
    follow_source(target, src2, src1, 0.0)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    follow_source(target, src2, src1, 1.0)
    after, today, yesterday = target.state_dict(), src2.state_dict(), src1.state_dict()
    for k, v in after.items():
        if v.is_floating_point():
            assert torch.allclose(v - today[k], before[k] - yesterday[k], atol=1e-6)
        else:
            assert torch.equal(v, before[k])
    runs = {}
    for alpha in (0.0, 1.0):
        _, models, _ = train_ctnet(bank, _params(follow_source=alpha), 1, tmp_path / f"f{alpha}", source_init=src1,
                                   target_inits={t: day1[t] for t in rep["targets"]}, progress=False)
        runs[alpha] = models[s].target.user_emb.weight.detach().clone()
    assert not torch.equal(runs[0.0], runs[1.0])
