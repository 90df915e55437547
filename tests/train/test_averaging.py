"""Weight averaging: the trained model is the mean of the chosen epochs' end weights, and stays so through
a resumed run and the held-out-day refit."""

from __future__ import annotations

import copy

import pytest
import torch
from support import tiny_params

from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.averaging import EpochAverage
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.loop import PairedOptimizer
from sass_retrieval.train.recipes import finetune_job


def _ft(epochs: int, **kw):
    params = tiny_params({"finetune": {"epochs": epochs, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                               "early_stopping": False, **kw}, "train": {"checkpoint_every": 0}})
    return finetune_job(params, seed=0, progress=False)


def _set(layer: torch.nn.Linear, value: float) -> None:
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)


def test_the_mean_holds_only_the_epochs_from_start_on() -> None:
    layer = torch.nn.Linear(2, 2)
    avg = EpochAverage(layer, start=2)
    for epoch, value in enumerate([10.0, 1.0, 2.0, 6.0]):   # epoch 1 (10.0) comes before start
        _set(layer, value)
        avg.update(epoch)
    assert avg.count == 3
    assert torch.allclose(avg.model.weight, torch.full((2, 2), 3.0))
    assert torch.equal(layer.weight, torch.full((2, 2), 6.0)), "the trained model is untouched until finish"
    avg.finish()
    assert torch.allclose(layer.weight, torch.full((2, 2), 3.0))


def test_before_any_averaged_epoch_the_model_is_the_trained_one_and_off_changes_nothing() -> None:
    layer = torch.nn.Linear(2, 2)
    _set(layer, 4.0)
    late = EpochAverage(layer, start=5)
    late.update(0)
    assert late.count == 0 and late.model is layer
    off = EpochAverage(layer, start=0)
    off.update(0)
    off.finish()
    assert off.model is layer and torch.equal(layer.weight, torch.full((2, 2), 4.0))
    with pytest.raises(ValueError, match="average_from"):
        EpochAverage(layer, start=-1)


def test_a_continued_average_folds_later_epochs_into_the_same_mean() -> None:
    layer = torch.nn.Linear(2, 2)
    avg = EpochAverage(layer, start=3)
    for epoch, value in enumerate([0.0, 0.0, 2.0, 4.0]):
        _set(layer, value)
        avg.update(epoch)
    more = avg.continued()
    _set(layer, 9.0)
    more.update(0)                       # the refit's first epoch counts, whatever the first start was
    assert more.count == 3 and torch.allclose(more.model.weight, torch.full((2, 2), 5.0))
    assert avg.count == 2, "the average it continues from is not changed"


def test_finetune_returns_the_mean_of_the_averaged_epochs(tiny_bank, tmp_path) -> None:
    """Training is deterministic, so the weights after 2 and after 3 epochs can be had from two plain runs:
    an averaged 3-epoch run from epoch 2 must end at their mean."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    init = copy.deepcopy(RetrievalModel(cfg).state_dict())
    ends = []
    for epochs, start in ((2, 0), (3, 0), (3, 2)):
        model = RetrievalModel(cfg)
        model.load_state_dict(init)
        report = finetune(model, bank, _ft(epochs, average_from=start), tmp_path / f"{epochs}-{start}")
        ends.append(model.state_dict())
    assert report["refit"]["averaged_epochs"] == 2
    two, three, averaged = ends
    for k in averaged:
        if averaged[k].is_floating_point():
            assert torch.allclose(averaged[k], (two[k] + three[k]) / 2, atol=1e-6), k
    moved = [k for k in averaged if averaged[k].is_floating_point() and not torch.equal(two[k], three[k])]
    assert moved, "epoch 3 changed the weights, so the mean differs from either epoch"


def test_an_interrupted_averaged_run_resumes_to_the_same_mean(tiny_bank, tmp_path, monkeypatch) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    full = RetrievalModel(cfg)
    init = copy.deepcopy(full.state_dict())
    report = finetune(full, bank, _ft(3, average_from=1), tmp_path / "full")
    per_epoch = report["refit"]["steps"] // 3
    steps = {"n": 0}
    real_step = PairedOptimizer.step

    def crashing_step(self):
        steps["n"] += 1
        if steps["n"] > 2 * per_epoch:       # die in epoch 3, after epochs 1 and 2 entered the mean
            raise KeyboardInterrupt("killed")
        real_step(self)

    part = RetrievalModel(cfg)
    part.load_state_dict(init)
    with monkeypatch.context() as m:
        m.setattr(PairedOptimizer, "step", crashing_step)
        with pytest.raises(KeyboardInterrupt):
            finetune(part, bank, _ft(3, average_from=1), tmp_path / "resumed")
    again = RetrievalModel(cfg)
    again.load_state_dict(init)
    finetune(again, bank, _ft(3, average_from=1), tmp_path / "resumed")
    for k, v in full.state_dict().items():
        assert torch.allclose(v, again.state_dict()[k], atol=1e-6), k


def test_the_holdout_refit_adds_its_epoch_to_the_selected_mean(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), bank,
                      _ft(3, early_stopping=True, patience=3, min_epochs=1, refit="holdout", average_from=1), tmp_path)
    assert report["refit"]["averaged_epochs"] == report["best_epoch"] + 1
