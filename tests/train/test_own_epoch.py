"""A large scenario keeps the epoch best for it; the others share the macro-best epoch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from support import tiny_params

import sass_retrieval.train.finetune as ft
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.finetune import finetune, own_epoch_scenarios
from sass_retrieval.train.recipes import finetune_job


def _ft(epochs: int, **kw):
    params = tiny_params({"finetune": {"epochs": epochs, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                               "early_stopping": True, "patience": 2, "min_epochs": 1,
                                               "min_delta": 0.0, "refit": "none",
                                               "prior_grid": [],   # the scripted validations script validate_scenarios
                                               **kw},
                                  "train": {"checkpoint_every": 0}})
    return finetune_job(params, seed=0, progress=False)


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

    def scripted(model, bank_, pos, scenarios, k=50, days=None):
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


def test_early_stopping_holds_out_the_newest_holdout_days(tiny_bank, tmp_path, monkeypatch) -> None:
    """holdout_days=2: validation ranks the two newest days' clicks, selection trains on the others and the
    holdout refit on those two."""
    bank, cfg = tiny_bank
    days_of_positives: list[set[int]] = []
    real = ft._positives

    def spy(bank_, scenarios, days, *a, **kw):
        days_of_positives.append(set(days))
        return real(bank_, scenarios, days, *a, **kw)

    monkeypatch.setattr(ft, "_positives", spy)
    torch.manual_seed(0)
    finetune(RetrievalModel(cfg), bank, _ft(2, holdout_days=2, refit="holdout"), tmp_path)
    n = len(bank.train_dates)
    newest, rest = {n - 2, n - 1}, set(range(n - 2))
    # first the click share of every training day (the in-batch negatives' proposal), then the three phases
    assert days_of_positives == [newest | rest, newest, rest, newest]


def test_validation_over_several_days_is_the_click_weighted_mean_of_each_day(tiny_bank) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    n = len(bank.train_dates)
    both = ft._positives(bank, bank.scenarios, {n - 2, n - 1})
    name = bank.scenarios[0]
    si = bank.scen_index(name)
    per_day = []
    for d in (n - 2, n - 1):
        one = ft._positives(bank, bank.scenarios, {d})
        per_day.append((ft.validate_scenarios(model, bank, one, [name])[name], int((one["scen"] == si).sum())))
    expected = sum(v * c for v, c in per_day) / sum(c for _, c in per_day)
    assert abs(ft.validate_scenarios(model, bank, both, [name])[name] - expected) < 1e-6


def test_a_selection_killed_mid_way_resumes_knowing_its_best_epochs(tiny_bank, tmp_path, monkeypatch) -> None:
    """Scripted validation peaks at epoch 1 (macro) and epoch 3 (scenario A). The first run dies while
    validating epoch 4; the rerun resumes after epoch 3 and must still serve epoch 1's weights and A's
    epoch-3 weights, as an uninterrupted run does: early stopping's memory travels in the resume checkpoint."""
    bank, cfg = tiny_bank
    a = bank.scenarios[0]
    snapshots: list[dict[str, torch.Tensor]] = []
    die_at: list[int] = [4]

    def scripted(model, bank_, pos, scenarios, k=50, days=None):
        epoch = len(snapshots) + 1
        if epoch in die_at:
            die_at.clear()
            raise RuntimeError("killed")
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {n: (1.0 if epoch == 3 else 0.5) if n == a else (1.0 if epoch == 1 else 0.1) for n in scenarios}

    monkeypatch.setattr(ft, "validate_scenarios", scripted)
    settings = _ft(8, own_epoch_min_clicks=1)
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    with pytest.raises(RuntimeError, match="killed"):
        finetune(model, bank, settings, tmp_path, {})
    assert len(snapshots) == 3 and (tmp_path / "resume-select.pt").exists()
    torch.manual_seed(0)
    again, own = RetrievalModel(cfg), {}
    report = finetune(again, bank, settings, tmp_path, own)
    assert report["best_epoch"] == 1 and report["own_epoch"][a]["best_epoch"] == 3
    assert [p["epoch"] for p in report["validation"]] == [1, 2, 3, 4, 5]
    for k, v in again.state_dict().items():
        assert torch.equal(v, snapshots[0][k]), k
    for k, v in own[a].state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k
