"""A large scenario keeps the epoch best for it; the others share the macro-best epoch."""

from __future__ import annotations

import copy

import numpy as np
import torch
from support import TINY_PARAMS, merged

import sass_retrieval.train.finetune as ft
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.finetune import finetune, own_epoch_scenarios
from sass_retrieval.train.recipes import finetune_settings


def _ft(epochs: int, **kw):
    params = merged(TINY_PARAMS, {"finetune": {"epochs": epochs, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                               "early_stopping": True, "patience": 2, "min_epochs": 1,
                                               "min_delta": 0.0, "refit": "none", **kw},
                                  "train": {"checkpoint_every": 0}})
    return finetune_settings(params, seed=0, progress=False)


def test_only_scenarios_with_enough_held_out_clicks_pick_their_own_epoch(tiny_bank) -> None:
    bank, _ = tiny_bank
    names = bank.scenarios[:3]
    val = {"scen": np.array([bank.scen_index(names[0])] * 5 + [bank.scen_index(names[1])] * 2)}
    assert own_epoch_scenarios(val, bank, names, 5) == [names[0]]
    assert own_epoch_scenarios(val, bank, names, 2) == names[:2]
    assert own_epoch_scenarios(val, bank, names, 0) == []          # 0: off
    assert own_epoch_scenarios(val, bank, names[:1], 1) == []      # one scenario: its epoch is the macro epoch


def test_a_scenario_that_peaks_later_gets_its_own_model_and_training_waits_for_it(tiny_bank, tmp_path,
                                                                                  monkeypatch) -> None:
    """Scripted validation: the macro average peaks at epoch 1, scenario A at epoch 3. Training must go on to
    epoch 3 + patience, the shared model must be epoch 1's weights and A's model epoch 3's (refit none)."""
    bank, cfg = tiny_bank
    a = bank.scenarios[0]
    snapshots: list[dict[str, torch.Tensor]] = []

    def scripted(model, bank_, pos, scenarios, k=50):
        snapshots.append(copy.deepcopy(model.state_dict()))
        epoch = len(snapshots)
        return {n: (1.0 if epoch == 3 else 0.5) if n == a else (1.0 if epoch == 1 else 0.1) for n in scenarios}

    monkeypatch.setattr(ft, "validate_scenarios", scripted)
    torch.manual_seed(0)
    model, own = RetrievalModel(cfg), {}
    report = finetune(model, bank, _ft(8, own_epoch_min_clicks=1), tmp_path, own)
    assert report["best_epoch"] == 1 and report["own_epoch"][a]["best_epoch"] == 3
    assert len(report["validation"]) == 5, "stops once the macro pick and A's pick have both waited `patience`"
    assert set(own) == {a} and report["own_models"] == [a], "the others are served by the shared model"
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[0][k]), k
    for k, v in own[a].state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k


def test_without_the_per_scenario_models_asked_for_nothing_changes(tiny_bank, tmp_path) -> None:
    """Callers that serve one model (ctnet's source, the speed benchmark) pass no ``own_models``: the run is
    the plain macro early stopping, whatever own_epoch_min_clicks says."""
    bank, cfg = tiny_bank
    states = []
    for i, clicks in enumerate((0, 1)):
        torch.manual_seed(0)
        model = RetrievalModel(cfg)
        report = finetune(model, bank, _ft(3, own_epoch_min_clicks=clicks), tmp_path / str(i))
        assert "own_epoch" not in report
        states.append(model.state_dict())
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k
