"""Distillation from the pre-ranker (train.distill): the KL term's math, the teacher table's groups, and fine-tuning
the tiny project with the term on (in memory and streamed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from support import TINY_SCENARIOS, tiny_params

from sass_retrieval.data.engine import connect
from sass_retrieval.data.shards import trained_scenarios, write_shards
from sass_retrieval.data.store import read_items, read_users
from sass_retrieval.errors import BadInputError, MissingPrerequisiteError
from sass_retrieval.experiment import load_window
from sass_retrieval.models.bank import load_bank
from sass_retrieval.models.checkpoint import load_model
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.params_schema import Distill
from sass_retrieval.rows import spec
from sass_retrieval.train.checkpoint import save_checkpoint
from sass_retrieval.train.distill import DistillInput, distill_kl, student_logits
from sass_retrieval.train.finetune import finetune
from sass_retrieval.train.loop import LoopSettings, PairedOptimizer
from sass_retrieval.train.recipes import distill_input, finetune_job, train_row

# ---------------------------------------------------------------- the KL term


def test_the_term_is_zero_for_the_teacher_up_to_a_shift_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 5, generator=g)
    mask = torch.ones(6, 5, dtype=torch.bool)
    shift = torch.randn(6, 1, generator=g) * 10
    assert distill_kl(teacher + shift, teacher, mask, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(6, 5, generator=g)
    assert distill_kl(other, teacher, mask, 2.0).item() > 1e-3
    # T^2 x KL: the scale of the soft term's gradient
    kl = torch.nn.functional.kl_div(torch.log_softmax(other / 3.0, 1), torch.log_softmax(teacher / 3.0, 1),
                                    log_target=True, reduction="batchmean")
    assert distill_kl(other, teacher, mask, 3.0).item() == pytest.approx(9.0 * kl.item(), rel=1e-5)


def test_padded_slots_change_nothing_and_get_no_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    full = distill_kl(student, teacher, torch.ones(4, 3, dtype=torch.bool), 2.0)
    padded_s = torch.cat([student, torch.randn(4, 2, generator=g) * 50], 1).requires_grad_(True)
    padded_t = torch.cat([teacher, torch.randn(4, 2, generator=g) * 50], 1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 4)
    out = distill_kl(padded_s, padded_t, mask, 2.0)
    assert out.item() == pytest.approx(full.item(), rel=1e-6)
    out.backward()
    assert torch.isfinite(padded_s.grad).all() and padded_s.grad[:, 3:].abs().max().item() == 0.0
    assert padded_s.grad[:, :3].abs().max().item() > 0


def test_one_sgd_step_moves_the_students_order_toward_the_teachers() -> None:
    """A tiny two-tower (user and item embeddings, logits their inner product): one step on the term raises the
    Spearman agreement of every group's order with the teacher's, on average."""
    torch.manual_seed(0)
    n_groups, width, dim = 32, 8, 4
    users = torch.nn.Parameter(torch.randn(n_groups, dim))
    items = torch.nn.Parameter(torch.randn(n_groups, width, dim))
    teacher = torch.randn(n_groups, width) * 2
    mask = torch.ones(n_groups, width, dtype=torch.bool)

    def agreement() -> float:
        s = (users[:, None, :] * items).sum(-1).detach().numpy()
        return float(np.mean([spearmanr(s[i], teacher[i].numpy())[0] for i in range(n_groups)]))

    before = agreement()
    opt = torch.optim.SGD([users, items], lr=10.0)   # the mean over 32 groups divides each one's gradient by 32
    loss = distill_kl((users[:, None, :] * items).sum(-1), teacher, mask, 2.0)
    loss.backward()
    opt.step()
    assert agreement() > before + 0.1
    assert distill_kl((users[:, None, :] * items).sum(-1), teacher, mask, 2.0).item() < loss.item()


# ---------------------------------------------------------------- the teacher table


@pytest.fixture(scope="module")
def exposures(tiny_project: dict) -> pd.DataFrame:
    """The tiny project's training-window exposures, as the rank stage's table holds them, with a teacher logit
    (a fixed function of (day, user, video), as a teacher's features are: the tests check the plumbing)."""
    _, train, _ = load_window(tiny_project["store"], tiny_project["window"], TINY_SCENARIOS, 1)
    key = train["user_id"].to_numpy(np.int64) * 7919 + train["video_id"].to_numpy(np.int64) * 104729 + train["date"]
    return pd.DataFrame({"date": train["date"].to_numpy(np.int32), "scenario": train["scenario"].astype(str),
                         "user_id": train["user_id"].to_numpy(np.int64),
                         "video_id": train["video_id"].to_numpy(np.int64),
                         "is_click": train["is_click"].to_numpy(np.int8),
                         "teacher_logit": ((key.to_numpy() % 1000) / 250.0 - 2.0).astype(np.float32)})


@pytest.fixture(scope="module")
def teacher_path(exposures: pd.DataFrame, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("teacher") / "teacher_scores.parquet"
    exposures.to_parquet(path, index=False)
    return str(path)


def all_days(bank) -> set[int]:
    return set(range(len(bank.train_dates)))


def test_groups_hold_two_exposures_or_more_of_one_user_day_and_scenario(tiny_bank, teacher_path, exposures) -> None:
    bank, _ = tiny_bank
    dist = DistillInput.load(teacher_path, bank, all_days(bank), Distill(max_group=6), seed=0)
    assert dist.dropped["groups_of_one"] > 0 and dist.dropped["groups_without_user_features"] >= 0
    total = 0
    expected = exposures.drop_duplicates(["date", "scenario", "user_id", "video_id"])
    sizes = expected.groupby(["date", "scenario", "user_id"]).size()
    for day, g in dist.days.items():
        n = g.mask.sum(1)
        assert (n >= 2).all() and (n <= 6).all()
        assert (g.items[~g.mask] == 0).all() and (g.teacher[~g.mask] == 0).all()
        for i in range(len(g)):
            key = (bank.train_dates[day], bank.scenarios[g.scen[i]], int(bank.user_ids[g.user[i]]))
            assert n[i] == min(sizes[key], 6)
            videos = bank.item_ids[g.items[i, g.mask[i]]]
            rows = expected.set_index(["date", "scenario", "user_id"]).loc[[key]]
            assert set(videos) <= set(rows["video_id"])
            logit = rows.set_index("video_id").loc[videos, "teacher_logit"].to_numpy()
            np.testing.assert_allclose(g.teacher[i, g.mask[i]], logit, rtol=1e-6)
            assert np.isin(g.items[i, g.mask[i]], bank.per[bank.scenarios[g.scen[i]]].pool).all()
        total += len(g)
    assert total > 20


def test_user_features_are_the_positives_of_the_same_user_day_and_scenario(tiny_bank, teacher_path) -> None:
    bank, _ = tiny_bank
    dist = DistillInput.load(teacher_path, bank, all_days(bank), seed=0)
    for day, g in dist.days.items():
        for i in range(0, len(g), 7):
            a = bank.per[bank.scenarios[g.scen[i]]]
            m = (a.mt_user == g.user[i]) & (a.mt_day == day)
            assert m.any()
            np.testing.assert_array_equal(a.mt_seq[m][0], g.seq[i])
            np.testing.assert_array_equal(a.mt_stats[m][0], g.stats[i])


def test_items_outside_the_pool_and_unknown_users_are_dropped(tiny_bank, exposures, tmp_path) -> None:
    bank, _ = tiny_bank
    day = max(bank.train_dates)
    user = int(exposures.loc[(exposures["date"] == day) & (exposures["scenario"] == "s0"), "user_id"].iloc[0])
    pool = set(bank.item_ids[bank.per["s0"].pool].tolist())
    outside = next(int(v) for v in bank.item_ids if int(v) not in pool)
    extra = pd.DataFrame({"date": np.int32(day), "scenario": "s0", "user_id": [user, 10**12, 10**12],
                          "video_id": [outside, outside, int(exposures["video_id"].iloc[0])],
                          "is_click": np.int8(0), "teacher_logit": np.float32(1.0)})
    path = tmp_path / "t.parquet"
    pd.concat([exposures, extra]).to_parquet(path, index=False)
    base = DistillInput.load(_write(exposures, tmp_path / "t0.parquet"), bank, all_days(bank))
    dist = DistillInput.load(path, bank, all_days(bank))
    assert dist.dropped["rows_outside_pool"] == base.dropped["rows_outside_pool"] + 1
    assert dist.dropped["rows_unknown_id"] == base.dropped["rows_unknown_id"] + 2
    for d in dist.days:
        np.testing.assert_array_equal(dist.days[d].items, base.days[d].items)


def _write(df: pd.DataFrame, path) -> str:
    df.to_parquet(path, index=False)
    return str(path)


def test_the_choice_and_the_sampling_are_seeded(tiny_bank, teacher_path) -> None:
    bank, _ = tiny_bank
    knobs = Distill(max_group=3, groups_per_step=5)
    a, b = (DistillInput.load(teacher_path, bank, all_days(bank), knobs, seed=1) for _ in range(2))
    c = DistillInput.load(teacher_path, bank, all_days(bank), knobs, seed=2)
    for d in a.days:
        np.testing.assert_array_equal(a.days[d].items, b.days[d].items)
    assert any(not np.array_equal(a.days[d].items, c.days[d].items) for d in a.days)
    day = next(iter(a.days))
    s1, s2 = a.sample(day, np.random.default_rng(4)), b.sample(day, np.random.default_rng(4))
    assert len(s1) == 5 and np.array_equal(s1.user, s2.user) and np.array_equal(s1.items, s2.items)
    assert a.sample(10**6, np.random.default_rng(0)) is None


def test_the_table_fails_in_one_line_naming_what_is_wrong(tiny_bank, exposures, tmp_path) -> None:
    bank, _ = tiny_bank
    with pytest.raises(MissingPrerequisiteError, match="teacher-score table"):
        DistillInput.load(tmp_path / "absent.parquet", bank, all_days(bank))
    exposures.drop(columns="teacher_logit").to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(BadInputError, match="bad.parquet: column.*teacher_logit"):
        DistillInput.load(tmp_path / "bad.parquet", bank, all_days(bank))


def test_the_term_uses_the_retrieval_scores_and_its_step_follows_the_teacher(tiny_bank, teacher_path) -> None:
    """The student's logits are the retrieval loss's scaled scenario-vector inner products; a few SGD steps on
    the term alone, on the real towers, raise the agreement with the teacher on the groups they saw."""
    bank, cfg = tiny_bank
    torch.manual_seed(0)
    model = RetrievalModel(cfg)
    dist = DistillInput.load(teacher_path, bank, all_days(bank), Distill(groups_per_step=10**6))
    day = max(dist.days, key=dist.groups_on)
    g = dist.days[day]
    s = tiny_params().finetune
    logits = student_logits(model, bank, g, day, s.temperature)
    i = 0
    u, _ = model.user_vectors(bank.user_batch(g.user[:1], g.scen[:1], g.seq[:1], g.stats[:1]))
    items = g.items[i, g.mask[i]]
    iv, _ = model.item_vectors(bank.item_batch(items, np.full(len(items), g.scen[i]),
                                               bank.per[bank.scenarios[g.scen[i]]].item_daily[day, items]))
    torch.testing.assert_close(logits[i, g.mask[i]], (u @ iv.T)[0] / s.temperature, rtol=1e-4, atol=1e-4)
    assert (logits[~torch.from_numpy(g.mask)] == 0).all()

    def agreement() -> float:
        with torch.no_grad():
            st = student_logits(model, bank, g, day, s.temperature).numpy()
        return float(np.nanmean([spearmanr(st[k, g.mask[k]], g.teacher[k, g.mask[k]])[0] for k in range(len(g))
                                 if g.mask[k].sum() > 2]))

    before = agreement()
    opt = PairedOptimizer(model, LoopSettings(1, 0.01, 0.01, 0.0, 0, 0, 0.0, False, 0))   # fine-tuning's optimiser
    for _ in range(5):
        opt.zero_grad()
        dist.term(model, bank, day, s, np.random.default_rng(0)).backward()
        opt.step()
    assert agreement() > before + 0.05


# ---------------------------------------------------------------- fine-tuning with the term


def _params(teacher: str, **train):
    return tiny_params({"finetune": {"epochs": 1, "batch_size": 64, "negatives": 16, "early_stopping": False},
                        "train": {"checkpoint_every": 0, **train},
                        "distill": {"enabled": True, "teacher": teacher, "groups_per_step": 16, "max_group": 8}})


def test_finetuning_with_distillation_trains_and_writes_a_checkpoint(tiny_bank, teacher_path, tmp_path) -> None:
    bank, cfg = tiny_bank
    params = _params(teacher_path)
    models, report = train_row("dssm_mixed", bank, params, 0, tmp_path / "on", progress=False)
    assert report["refit"]["steps"] > 0 and np.isfinite(report["refit"]["epoch_loss"]).all()
    assert sum(report["distill"]["groups"].values()) > 0 and "groups_of_one" in report["distill"]["dropped"]
    off, report_off = train_row("dssm_mixed", bank, params.override({"distill.enabled": False}), 0,
                                tmp_path / "off", progress=False)
    assert "distill" not in report_off
    assert report["refit"]["epoch_loss"] != report_off["refit"]["epoch_loss"], "the term is in the loss"
    model = models["s0"]
    save_checkpoint(tmp_path / "model.pt", model)
    loaded, _ = load_model(tmp_path / "model.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # the same seed: the same weights
    again, _ = train_row("dssm_mixed", bank, params, 0, tmp_path / "again", progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again["s0"].state_dict()[k])
    # the multi-objective row keeps its own loss
    assert distill_input(params, bank, 0, spec("sass_mt")) is None


def test_a_streaming_bank_gives_the_same_groups_and_trains(tiny_project, tiny_bank, teacher_path, tmp_path) -> None:
    bank, cfg = tiny_bank
    features = tiny_project["features"]
    con = connect(512, threads=1, temp_dir=tmp_path / "spill")
    try:
        write_shards(con, features, trained_scenarios(features, TINY_SCENARIOS), 0, tmp_path / "shards", 64)
    finally:
        con.close()
    n = len(bank.train_dates)
    streaming = load_bank(features, read_users(tiny_project["store"]), read_items(tiny_project["store"]), cfg,
                          memory_days=frozenset({n - 1}), shards_dir=tmp_path / "shards")
    memory = DistillInput.load(teacher_path, bank, all_days(bank))
    streamed = DistillInput.load(teacher_path, streaming, all_days(bank))
    assert memory.dropped == streamed.dropped and memory.days.keys() == streamed.days.keys()
    for d, g in memory.days.items():
        for a, b in zip(vars(g).values(), vars(streamed.days[d]).values(), strict=True):
            np.testing.assert_array_equal(a, b)
    params = _params(teacher_path, input="stream", shuffle_buffer=256)
    torch.manual_seed(0)
    report = finetune(RetrievalModel(cfg), streaming, finetune_job(params, 0, progress=False, distill=streamed),
                      tmp_path / "out")
    assert report["refit"]["steps"] > 0 and np.isfinite(report["refit"]["epoch_loss"]).all()
