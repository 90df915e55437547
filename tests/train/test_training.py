"""Training on tiny synthetic data: the loss falls, checkpoints round-trip, warm starts are exact."""

from __future__ import annotations

import copy
import dataclasses
import json

import pandas as pd
import pytest
import torch
from support import tiny_params

from sass_retrieval import atomic
from sass_retrieval.models.checkpoint import CheckpointError, load_model
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.params_schema import Multitask, ObjectiveWeights, Pretrain
from sass_retrieval.rows import spec
from sass_retrieval.train.checkpoint import load_resume, save_checkpoint, save_resume
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.loop import LiveLog, LoopSettings, PairedOptimizer
from sass_retrieval.train.pretrain import pretrain
from sass_retrieval.train.recipes import finetune_job, loop_settings


def _ft(epochs: int, **kw):
    params = tiny_params({"finetune": {"epochs": epochs, "batch_size": 128, "negatives": 32, "lr": 0.01,
                                               "early_stopping": False, **kw}, "train": {"checkpoint_every": 0}})
    return finetune_job(params, seed=0, progress=False)


def _pt(**kw) -> tuple[Pretrain, LoopSettings]:
    """The pretrain section and its loop settings, as the pretraining stage passes them."""
    params = tiny_params({"pretrain": {"lr": 0.01, **kw}, "train": {"checkpoint_every": 0}})
    return params.pretrain, loop_settings(params.pretrain, params.train, seed=0, progress=False)


def test_finetune_loss_decreases(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    report = finetune(model, bank, _ft(4), tmp_path)
    losses = report["refit"]["epoch_loss"]
    assert losses[-1] < losses[0] * 0.9


def test_pretrain_loss_decreases(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    s = _pt(epochs=4, batch_size=64)
    losses = pretrain(model, bank, *s, tmp_path)["epoch_loss"]
    assert losses[-1] < losses[0]
    per_step = pd.read_csv(tmp_path / "dvclive/plots/metrics/per_step/loss.tsv", sep="\t")
    per_epoch = pd.read_csv(tmp_path / "dvclive/plots/metrics/loss.tsv", sep="\t")
    assert per_step["step"].tolist() == list(range(1, len(per_step) + 1)) and len(per_step) > len(losses)
    assert per_epoch["loss"].tolist() == pytest.approx(losses)
    assert json.loads((tmp_path / "dvclive/metrics.json").read_text()) == pytest.approx({"loss": losses[-1], "step": 4})


def test_a_fresh_phase_replaces_its_curves_and_a_resumed_one_appends(tmp_path) -> None:
    """The model folders persist between runs: yesterday's points must not sit under today's curves."""
    def phase(resume: bool, losses: list[float], val: float) -> None:
        live = LiveLog(tmp_path / "dvclive", "loss-select", resume)
        for i, v in enumerate(losses):
            live.log_step(i + 1, v)
        live.log(0, {"loss": sum(losses) / len(losses), "val_ndcg@50": val})
        live.close()

    series = tmp_path / "dvclive/plots/metrics"
    phase(False, [3.0, 2.0], 0.1)
    phase(False, [5.0, 4.0, 3.0], 0.2)
    assert pd.read_csv(series / "per_step/loss-select.tsv", sep="\t")["loss-select"].tolist() == [5.0, 4.0, 3.0]
    assert pd.read_csv(series / "val_ndcg@50.tsv", sep="\t")["val_ndcg@50"].tolist() == [0.2]
    phase(True, [1.0], 0.3)
    assert pd.read_csv(series / "per_step/loss-select.tsv", sep="\t")["loss-select"].tolist() == [5.0, 4.0, 3.0, 1.0]
    summary = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    assert summary == {"loss-select": 1.0, "val_ndcg@50": 0.3, "step": 1}, "per-epoch values only"


def test_same_seed_same_weights(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    states = []
    for run in range(2):
        torch.manual_seed(0)
        model = RetrievalModel(cfg)
        finetune(model, bank, _ft(1), tmp_path / str(run))
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_checkpoint_round_trip_and_truncation_is_refused(tiny_bank, tmp_path) -> None:
    _, cfg = tiny_bank
    model = RetrievalModel(cfg)
    save_checkpoint(tmp_path / "m.pt", model, meta={"day": 1})
    loaded, manifest = load_model(tmp_path / "m.pt")
    assert manifest["meta"] == {"day": 1}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.pt"):
        load_model(tmp_path / "m.pt")


def test_resume_checkpoint_is_one_file_and_a_crash_mid_save_keeps_the_previous(tiny_bank, tmp_path,
                                                                               monkeypatch) -> None:
    """A resume checkpoint is rewritten every few steps, so a kill lands mid-save: it must never pair
    new weights with old metadata (CI once saw the two-file version discard its checkpoint)."""
    _, cfg = tiny_bank
    path = tmp_path / "resume.pt"
    save_resume(path, RetrievalModel(cfg), state={"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume.pt"]

    def killed(*_args) -> None:
        raise KeyboardInterrupt("killed before the rename")

    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            save_resume(path, RetrievalModel(cfg), state={"step": 2})
    assert load_resume(path)["state"] == {"step": 1}
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="resume.pt"):
        load_resume(path)


@pytest.mark.parametrize("seconds,saves", [(0.0, 4), (3600.0, 0)])
def test_resume_checkpoints_wait_for_checkpoint_seconds(tiny_bank, tmp_path, monkeypatch, seconds, saves) -> None:
    """0: one resume checkpoint per epoch end (the finished run then discards it); an hour: none in a run of
    a few seconds, which a crash would simply redo. The trained weights are the same either way."""
    from sass_retrieval.train import loop

    bank, cfg = tiny_bank
    calls = []
    monkeypatch.setattr(loop, "save_resume", lambda *a, **k: calls.append(k["state"]["epoch"]))
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    finetune(model, bank, dataclasses.replace(_ft(4), loop=dataclasses.replace(_ft(4).loop, checkpoint_seconds=seconds)),
             tmp_path)
    assert len(calls) == saves and calls == list(range(1, saves + 1))
    torch.manual_seed(0)
    again = RetrievalModel(cfg)
    finetune(again, bank, _ft(4), tmp_path / "again")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_warm_start_with_zero_steps_changes_nothing(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    model = RetrievalModel(cfg)
    save_checkpoint(tmp_path / "prev.pt", model)
    warm, _ = load_model(tmp_path / "prev.pt")
    before = copy.deepcopy(warm.state_dict())
    job = _ft(1)   # zero epochs: the loop's own count (params allow no such finetune.epochs)
    finetune(warm, bank, dataclasses.replace(job, loop=dataclasses.replace(job.loop, epochs=0)), tmp_path / "ft")
    for k, v in before.items():
        assert torch.equal(v, warm.state_dict()[k]), k


def test_interrupted_training_resumes_to_the_same_weights(tiny_bank, tmp_path, monkeypatch) -> None:
    """Stop after epoch 1 (as a kill would), rerun: the result equals an uninterrupted run."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    full = RetrievalModel(cfg)
    init = copy.deepcopy(full.state_dict())
    full_report = finetune(full, bank, _ft(2), tmp_path / "full")
    assert not list((tmp_path / "full").glob("resume*")), "a finished run leaves no resume checkpoint"

    part = RetrievalModel(cfg)
    part.load_state_dict(init)
    steps = {"n": 0}
    real_step = PairedOptimizer.step

    def crashing_step(self):
        steps["n"] += 1
        if steps["n"] > n_per_epoch:          # die in epoch 2, after epoch 1's checkpoint
            raise KeyboardInterrupt("killed")
        real_step(self)

    n_per_epoch = len(full_report["refit"]["epoch_loss"]) and full_report["refit"]["steps"] // 2
    with monkeypatch.context() as m:
        m.setattr(PairedOptimizer, "step", crashing_step)
        with pytest.raises(KeyboardInterrupt):
            finetune(part, bank, _ft(2), tmp_path / "resumed")
    assert (tmp_path / "resumed" / "resume-full.pt").exists()
    again = RetrievalModel(cfg)
    again.load_state_dict(init)
    finetune(again, bank, _ft(2), tmp_path / "resumed")      # picks up at epoch 2
    assert not list((tmp_path / "resumed").glob("resume*"))
    for k, v in full.state_dict().items():
        assert torch.allclose(v, again.state_dict()[k], atol=1e-6), k


def test_incremental_finetune_trains_on_the_newest_day_only(tiny_bank, tmp_path) -> None:
    """An incremental day's cost is one day's positives, not the window's."""
    bank, cfg = tiny_bank
    days = len(bank.train_dates)
    assert days > 2
    steps = {r: finetune(RetrievalModel(cfg), bank, _ft(1, batch_size=32, recent_days=r), tmp_path / str(r))
             ["refit"]["steps"] for r in (0, 1)}
    newest = sum(int((bank.per[s].pos_day == days - 1).sum()) for s in bank.scenarios)
    assert 0 < steps[1] < steps[0]
    assert steps[1] <= newest // 32 + len(bank.scenarios) + 1


def test_incremental_pretrain_uses_the_pairs_of_the_newest_day(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    n = len(bank.train_dates)
    newest = int((bank.user_pair_day == n - 1).sum())
    assert 2 <= newest < len(bank.user_pairs)
    steps = {}
    for r in (0, 1):
        s = _pt(epochs=1, batch_size=16, recent_days=r)
        steps[r] = pretrain(RetrievalModel(cfg), bank, *s, tmp_path / str(r))["steps"]
    assert steps[1] < steps[0]


def test_early_stopping_ignores_gains_below_min_delta(tiny_bank, tmp_path) -> None:
    """With a min_delta no gain can reach, the first epoch stays best: select stops after 1 + patience
    epochs and the refit trains one epoch, whatever the validation curve does."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), bank, _ft(6, early_stopping=True, patience=2, min_delta=1.0, min_epochs=1),
                      tmp_path)
    assert report["best_epoch"] == 1
    assert len(report["validation"]) == 3 and report["select"]["stopped_early"]
    assert len(report["refit"]["epoch_loss"]) == 1


def test_early_stopping_never_stops_before_min_epochs(tiny_bank, tmp_path) -> None:
    """A flat start (nothing beats epoch 1) must not stop training before min_epochs: a model whose first
    epochs learn only popularity has not shown what it can do yet."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), bank, _ft(6, early_stopping=True, patience=1, min_delta=1.0, min_epochs=4),
                      tmp_path)
    assert report["best_epoch"] == 1
    assert len(report["validation"]) == 4 and report["select"]["stopped_early"]


def test_keep_start_lets_early_stopping_hand_back_the_start(tiny_bank, tmp_path) -> None:
    """keep_start: the held-out days score the model before any training, as epoch 0; when no epoch beats it (here
    a min_delta no gain can reach) the selection keeps it, and with refit none the model ends exactly as it
    started. Without keep_start the same run keeps its first epoch."""
    bank, cfg = tiny_bank
    ft = _ft(3, early_stopping=True, patience=1, min_delta=1.0, min_epochs=1, refit=False)
    ends = {}
    for keep in (True, False):
        torch.manual_seed(0)
        model = RetrievalModel(cfg)
        start = copy.deepcopy(model.state_dict())
        rep = finetune(model, bank, dataclasses.replace(ft, keep_start=keep), tmp_path / str(keep))
        ends[keep] = all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())
        assert rep["best_epoch"] == (0 if keep else 1)
        assert [p["epoch"] for p in rep["validation"]][:2] == ([0, 1] if keep else [1, 2])
    assert ends == {True: True, False: False}


def test_holdout_refit_trains_one_epoch_on_the_held_out_day_only(tiny_bank, tmp_path) -> None:
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    full = finetune(RetrievalModel(cfg), bank, _ft(3, early_stopping=True, patience=1), tmp_path / "full")
    torch.manual_seed(0)
    hold = finetune(RetrievalModel(cfg), bank, _ft(3, early_stopping=True, patience=1, refit="holdout"),
                    tmp_path / "holdout")
    newest = finetune(RetrievalModel(cfg), bank, _ft(1, recent_days=1), tmp_path / "newest")["refit"]["steps"]
    assert hold["best_epoch"] == full["best_epoch"]           # the same selection run
    assert hold["refit"]["steps"] == newest < full["refit"]["steps"]
    assert "refit" not in finetune(RetrievalModel(cfg), bank, _ft(2, early_stopping=True, refit=False),
                                   tmp_path / "none")


def test_the_report_says_what_training_cost(tiny_bank, tmp_path) -> None:
    """Every phase's optimiser steps add up in ``steps``; the held-out scoring is part of the wall ``seconds``."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    rep = finetune(RetrievalModel(cfg), bank, _ft(3, early_stopping=True, patience=1, refit="holdout"), tmp_path)
    assert rep["steps"] == rep["select"]["steps"] + rep["refit"]["steps"] > 0
    assert rep["seconds"] > rep["validation_seconds"] > 0
    plain = finetune(RetrievalModel(cfg), bank, _ft(1), tmp_path / "plain")
    assert plain["steps"] == plain["refit"]["steps"] and "validation_seconds" not in plain


def test_refit_mode_names_the_bad_value() -> None:
    from sass_retrieval.train.finetune import refit_mode

    assert [refit_mode(v) for v in (True, False, "full", "holdout", "none")] == \
        ["full", "none", "full", "holdout", "none"]
    with pytest.raises(ValueError, match="finetune.refit"):
        refit_mode("sometimes")
    with pytest.raises(ValueError, match="finetune.refit"):     # refused when read, before any training
        _ft(1, refit="sometimes")


def _per_scenario_loss(model, bank, samplers, pos, idx, s, rng) -> torch.Tensor:
    """The reference: the loss as first written, one small softmax per scenario present, weighted by rows."""
    import numpy as np

    from sass_retrieval.train.losses import retrieval_loss

    scen, day = pos["scen"][idx], int(pos["day"][idx[0]])
    u_s, u_g = model.user_vectors(bank.user_batch(pos["user"][idx], scen, pos["seq"][idx], pos["stats"][idx]))
    items = pos["item"][idx]
    total, weight = torch.zeros(()), 0
    for k in (int(k) for k in np.unique(scen)):
        neg_items, q = samplers[k].sample(rng, (s.negatives,))
        rows = np.nonzero(scen == k)[0]
        all_items = np.concatenate([items[rows], neg_items])
        stats = bank.per[bank.scenarios[k]].item_daily[day, all_items]
        i_s, i_g = model.item_vectors(bank.item_batch(all_items, np.full(len(all_items), k), stats))
        hit = torch.from_numpy(items[rows][:, None] == neg_items[None, :])
        lq = torch.from_numpy(np.log(q * s.negatives)).float()
        for vu, vi, w in ((u_s[rows], i_s, 1.0), (u_g[rows], i_g, s.aux_weight)):
            pos_logit = (vu * vi[:len(rows)]).sum(-1) / s.temperature
            neg_logit = (vu @ vi[len(rows):].T / s.temperature).masked_fill(hit, float("-inf"))
            total = total + w * len(rows) * retrieval_loss("softmax", pos_logit, neg_logit, None,
                                                           lq.expand_as(neg_logit), s.margin)
        weight += len(rows)
    return total / weight


def test_batched_loss_equals_the_per_scenario_loss(tiny_bank) -> None:
    """batch_loss scores each scenario's block of rows against its block of negatives (one matmul per block):
    the same sampled softmax as one loss per scenario."""
    import numpy as np

    from sass_retrieval.train.finetune import _positives, batch_loss
    from sass_retrieval.train.sampler import NegativeSampler

    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg).eval()
    s = _ft(1, in_batch_negatives=False).knobs     # the sampled negatives alone (in-batch: test_in_batch_negatives_*)
    samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                for n in bank.scenarios}
    pos = _positives(bank, bank.scenarios, set(range(len(bank.train_dates))))
    idx = np.random.default_rng(0).permutation(np.nonzero(pos["day"] == pos["day"][0])[0])[:200]
    assert len(np.unique(pos["scen"][idx])) > 1
    batched = batch_loss(model, bank, samplers, pos, idx, s, np.random.default_rng(5))
    reference = _per_scenario_loss(model, bank, samplers, pos, idx, s, np.random.default_rng(5))
    assert torch.allclose(batched, reference, atol=1e-5), (float(batched), float(reference))


def test_single_objective_rows_train_on_that_objectives_positives(tiny_bank, tmp_path) -> None:
    import numpy as np

    from sass_retrieval.data.schema import OBJECTIVES
    from sass_retrieval.train.finetune import _positives

    bank, cfg = tiny_bank
    days = set(range(len(bank.train_dates)))
    click = _positives(bank, bank.scenarios, days)
    for k, name in enumerate(OBJECTIVES):
        pos = _positives(bank, bank.scenarios, days, name)
        assert len(pos["user"]) == sum(int((bank.per[s].mt_labels[:, k] == 1).sum()) for s in bank.scenarios)
        if name == "click":                      # the same rows as the click positives, in the same order
            assert all(np.array_equal(pos[c], click[c]) for c in click)
    lv = _positives(bank, bank.scenarios, days, "long_view")
    assert 0 < len(lv["user"]) < len(click["user"]) + len(lv["user"])
    labelled = _positives(bank, bank.scenarios, days, labels=True)
    assert labelled["labels"].shape == (len(labelled["user"]), len(OBJECTIVES)) and labelled["labels"].any(1).all()
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), bank, _ft(2, objective="long_view"), tmp_path)
    assert report["refit"]["steps"] > 0
    with pytest.raises(ValueError, match="finetune.objective"):
        _ft(1, objective="watch")


def _multitask(loss_weights: dict[str, float]) -> Multitask:
    """The multitask section with these loss weights and no hard negatives (the plain per-objective losses)."""
    return tiny_params().multitask.model_copy(update={"loss_weights": ObjectiveWeights(**loss_weights),
                                                      "hard_negatives": False})


def test_multitask_loss_is_the_lambda_weighted_sum_of_objective_losses(tiny_bank, tmp_path) -> None:
    import numpy as np

    from sass_retrieval.models.multitask import MultiTaskModel
    from sass_retrieval.train.finetune import _positives, embed_batch, multitask_batch_loss, scored_loss
    from sass_retrieval.train.sampler import NegativeSampler

    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = MultiTaskModel(RetrievalModel(cfg), ["click", "long_view", "like"], 8).eval()
    s = _ft(1, in_batch_negatives=False).knobs     # as the sass_mt row trains (multitask.in_batch_negatives)
    samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                for n in bank.scenarios}
    pos = _positives(bank, bank.scenarios, set(range(len(bank.train_dates))), labels=True)
    idx = np.random.default_rng(0).permutation(np.nonzero(pos["day"] == pos["day"][0])[0])[:200]
    assert pos["labels"][idx, 1].any() and not pos["labels"][idx, 0].all()   # long views, and rows without a click
    eb = embed_batch(model, bank, samplers, pos, idx, s, np.random.default_rng(5), model.objective_vectors)
    (u_s, u_g), (i_s, i_g) = eb.user, eb.item
    labels = torch.from_numpy(pos["labels"][idx][eb.rows.numpy()] == 1)
    parts = [scored_loss(eb, u_s[:, k], i_s[:, k], s, labels[:, k])
             + s.aux_weight * scored_loss(eb, u_g[:, k], i_g[:, k], s, labels[:, k]) for k in range(3)]
    for lam in ({"click": 1.0, "long_view": 0.0, "like": 0.0}, {"click": 1.0, "long_view": 2.0, "like": 0.5}):
        mt = _multitask(lam)
        got = multitask_batch_loss(model, bank, samplers, pos, idx, s, np.random.default_rng(5), mt)
        want = sum(w * p for w, p in zip(lam.values(), parts, strict=True))
        assert torch.allclose(got, want, atol=1e-5), (float(got), float(want))
    # the whole row trains: its loss falls
    torch.manual_seed(0)
    model = MultiTaskModel(RetrievalModel(cfg), ["click", "long_view", "like"], 8)
    job = dataclasses.replace(_ft(4), multitask=_multitask({"click": 1.0, "long_view": 1.0, "like": 0.5}))
    losses = finetune(model, bank, job, tmp_path)["refit"]["epoch_loss"]
    assert losses[-1] < losses[0] * 0.9


def test_hard_negatives_come_from_the_same_scenario_block_and_never_the_rows_own_item() -> None:
    """scored_loss with ``hard``: a row's extra negatives are the items of the same block's rows marked hard,
    except its own positive item; with none marked it is the plain loss."""
    from sass_retrieval.train.finetune import EmbeddedBatch, scored_loss
    from sass_retrieval.train.losses import sampled_softmax

    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=-1)
    i = torch.nn.functional.normalize(torch.randn(4 + 2 * 2, 3, generator=g), dim=-1)   # 4 positives, 2 blocks x 2
    eb = EmbeddedBatch(user=None, item=None, rows=torch.arange(4), counts=[2, 2], hit=torch.zeros(4, 2, dtype=torch.bool),
                       log_q=None, n_pos=4, n_blocks=2, block=torch.tensor([0, 0, 1, 1]),
                       items=torch.tensor([10, 11, 12, 12]))
    s = _ft(1).knobs.model_copy(update={"temperature": 1.0, "loss": "softmax", "negatives": 2})
    hard = torch.tensor([False, True, True, False])
    negs = i[4:].view(2, 2, 3)
    pos = (u * i[:4]).sum(-1)
    expected = []
    for r, extra in ((0, [1]), (1, []), (2, []), (3, [])):   # row 0 gets row 1's item; row 3 shares item 12 with row 2
        cols = [u[r] @ negs[eb.block[r]][j] for j in range(2)] + [u[r] @ i[c] for c in extra]
        expected.append(sampled_softmax(pos[r:r + 1], torch.stack(cols).unsqueeze(0)))
    assert torch.allclose(scored_loss(eb, u, i, s, hard=hard), torch.stack(expected).mean(), atol=1e-6)
    assert torch.allclose(scored_loss(eb, u, i, s, hard=torch.zeros(4, dtype=torch.bool)), scored_loss(eb, u, i, s))
    # hard_negative_weight 3: row 0's hard negative counts as three copies of itself in the softmax
    cols = [u[0] @ negs[0][j] for j in range(2)] + [u[0] @ i[1]] * 3
    expected[0] = sampled_softmax(pos[0:1], torch.stack(cols).unsqueeze(0))
    assert torch.allclose(scored_loss(eb, u, i, s, hard=hard, hard_weight=3.0), torch.stack(expected).mean(), atol=1e-6)


def test_embedding_tables_get_their_own_learning_rate(tiny_bank) -> None:
    """finetune.emb_lr drives SparseAdam (the hashed tables), finetune.lr the dense Adam."""
    _, cfg = tiny_bank
    loop = dataclasses.replace(_ft(1).loop, lr=0.003, emb_lr=0.02)
    opt = PairedOptimizer(RetrievalModel(cfg), loop)
    lrs = {type(o).__name__: o.param_groups[0]["lr"] for o in opt.opts}
    assert lrs == {"Adam": 0.003, "SparseAdam": 0.02}


def test_in_batch_negatives_are_the_blocks_other_positives_with_their_own_log_q() -> None:
    """Mixed negatives: each row also ranks its positive above the other positives of its scenario block (never
    its own item, never another block's), each such column corrected by its own log-Q; sampled columns keep theirs."""
    from sass_retrieval.train.finetune import EmbeddedBatch, scored_loss
    from sass_retrieval.train.losses import sampled_softmax

    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=-1)
    i = torch.nn.functional.normalize(torch.randn(4 + 2 * 2, 3, generator=g), dim=-1)
    log_q = torch.log(torch.tensor([[2.0, 0.5]] * 2 + [[1.0, 3.0]] * 2))
    batch_log_q = torch.log(torch.tensor([0.2, 0.7, 1.5, 1.5]))
    eb = EmbeddedBatch(user=None, item=None, rows=torch.arange(4), counts=[2, 2], hit=torch.zeros(4, 2, dtype=torch.bool),
                       log_q=log_q, n_pos=4, n_blocks=2, block=torch.tensor([0, 0, 1, 1]),
                       items=torch.tensor([10, 11, 12, 12]), in_batch=True, batch_log_q=batch_log_q)
    s = _ft(1).knobs.model_copy(update={"temperature": 1.0, "loss": "softmax", "negatives": 2})
    negs = i[4:].view(2, 2, 3)
    pos = (u * i[:4]).sum(-1)
    expected = []
    for r, others in ((0, [1]), (1, [0]), (2, []), (3, [])):   # rows 2 and 3 share item 12: no in-batch negative
        cols = [u[r] @ negs[eb.block[r]][j] - log_q[r, j] for j in range(2)]
        cols += [u[r] @ i[c] - batch_log_q[c] for c in others]
        expected.append(sampled_softmax(pos[r:r + 1], torch.stack(cols).unsqueeze(0)))
    assert torch.allclose(scored_loss(eb, u, i, s), torch.stack(expected).mean(), atol=1e-6)


def test_in_batch_negatives_train_end_to_end(tiny_bank, tmp_path) -> None:
    """finetune with finetune.in_batch_negatives: the mixed proposal's log-Q is finite and the loss falls."""
    import numpy as np

    bank, cfg = tiny_bank
    losses = finetune(RetrievalModel(cfg), bank, _ft(3, in_batch_negatives=True), tmp_path)["refit"]["epoch_loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_scenario_l2_keeps_the_scenario_layers_near_the_global_ones(tiny_bank, tmp_path) -> None:
    """The same training with and without the pull: the penalised scenario layers end closer to the global
    layers (and the penalty is 0 at the start, so only training moved them)."""
    bank, cfg = tiny_bank
    star = dataclasses.replace(cfg, scenario_layer="star", residual=True)
    drift = {}
    for l2 in (0.0, 1.0):
        torch.manual_seed(0)
        model = RetrievalModel(star)
        assert model.scenario_drift().item() == 0.0
        finetune(model, bank, _ft(2, scenario_l2=l2), tmp_path / str(l2))
        drift[l2] = model.scenario_drift().item()
    assert drift[0.0] > 0.0
    assert drift[1.0] < 0.5 * drift[0.0]


def test_a_star_model_trains_and_its_scenario_layers_feel_the_pull(tiny_bank, tmp_path) -> None:
    """model.arch star: one vector per side (the single-loss path dssm takes), and scenario_l2 still applies
    there: the penalised run ends with its scenario layers closer to the shared ones."""
    bank, cfg = tiny_bank
    star = dataclasses.replace(cfg, arch="star")
    drift, losses = {}, {}
    for l2 in (0.0, 1.0):
        torch.manual_seed(0)
        model = RetrievalModel(star)
        losses[l2] = finetune(model, bank, _ft(2, scenario_l2=l2), tmp_path / str(l2))["refit"]["epoch_loss"]
        drift[l2] = model.scenario_drift().item()
    assert losses[0.0][-1] < losses[0.0][0]
    assert drift[0.0] > 0.0 and drift[1.0] < 0.5 * drift[0.0]


def test_a_pepnet_model_trains_through_its_gates(tiny_bank, tmp_path) -> None:
    """model.arch pepnet: the one-vector loss path, and the gates (zero output layer at the start, every delta 1)
    learn: fine-tuning moves them away from 1."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(dataclasses.replace(cfg, arch="pepnet"))
    losses = finetune(model, bank, _ft(2), tmp_path)["refit"]["epoch_loss"]
    assert losses[-1] < losses[0]
    assert model.user_tower.gate_net.out.weight.abs().max().item() > 0.0
    assert model.item_tower.gate_net.out.weight.abs().max().item() > 0.0


def test_the_sass_rows_take_model_arch_and_the_reference_rows_keep_theirs(tiny_bank, tmp_path) -> None:
    from sass_retrieval.train.recipes import multitask_model, train_row

    bank, _ = tiny_bank
    params = tiny_params({"model": {"arch": "star"},
                                  "finetune": {"epochs": 1, "max_steps_per_epoch": 1, "load_pretrained": False}})
    models, _ = train_row("sass", bank, params, 0, tmp_path / "sass")
    assert {m.cfg.arch for m in models.values()} == {"star"}
    models, _ = train_row("dssm_mixed", bank, params, 0, tmp_path / "dssm")
    assert {m.cfg.arch for m in models.values()} == {"dssm"}
    assert multitask_model(params, bank.scenarios).base.cfg.arch == "star"


def test_the_multitask_row_takes_its_own_in_batch_negatives_and_prior_settings() -> None:
    """finetune.in_batch_negatives and finetune.prior_grid are every single-objective row's; sass_mt reads
    multitask.in_batch_negatives and multitask.prior_grid."""
    params = tiny_params({"finetune": {"in_batch_negatives": True, "prior_grid": [0.01]},
                                  "multitask": {"in_batch_negatives": False, "prior_grid": []}})
    single = finetune_job(params, 0)
    assert single.knobs.in_batch_negatives is True and single.knobs.prior_grid == [0.01] and single.multitask is None
    mt = finetune_job(params, 0, row=spec("sass_mt"))
    assert mt.knobs.in_batch_negatives is False and mt.knobs.prior_grid == []
    assert mt.multitask is params.multitask and mt.multitask.hard_negatives is True
    assert params.finetune.in_batch_negatives is True, "the run's section is untouched"


def test_a_warm_start_over_another_model_is_refused_with_the_keys_named(tiny_bank, tmp_path) -> None:
    """train.mode incremental loads the published model: a params.yaml that now describes another tower is a
    config error naming model.arch (not a wall of missing state-dict keys), and nothing is trained."""
    from sass_retrieval.config import ConfigError
    from sass_retrieval.train.recipes import run_pretraining, train_row

    bank, cfg = tiny_bank
    published = RetrievalModel(dataclasses.replace(cfg, arch="sass"))
    params = tiny_params({"model": {"arch": "star", "hidden": 16}})
    with pytest.raises(ConfigError) as err:
        train_row("sass", bank, params, 0, tmp_path / "sass", init=published)
    lines = str(err.value).splitlines()
    assert any("model.arch" in line and "'sass'" in line and "'star'" in line for line in lines)
    assert "train.mode: full" in err.value.hint
    assert not any((tmp_path / "sass").glob("*.pt"))
    with pytest.raises(ConfigError, match="model.arch"):
        run_pretraining(bank, params, 0, tmp_path / "pre", init=published)
    # what a warm start may change: the prior calibration and dropout
    calibrated = RetrievalModel(dataclasses.replace(cfg, prior_weights={"a": 0.01}, dropout=0.1))
    assert calibrated.cfg.warm_start_differences(cfg) == {}
