"""What pretraining and fine-tuning share: settings, seeding, resumable epochs, training curves.

Resuming relies on determinism rather than saved RNG state: the order of an epoch and the draws of a
step are seeded by (seed, epoch, step), so a run restarted from its last checkpoint replays exactly
the batches it had not done yet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from ..models.checkpoint import CheckpointError
from ..models.retrieval import RetrievalModel
from .averaging import EpochAverage
from .checkpoint import discard_resume, load_resume, save_resume
from .distributed import all_agree, average_gradients, barrier, broadcast_model, world

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, step + 1])  # step -1 seeds the epoch order


@dataclass
class LoopSettings:
    """Values come from params.yaml (train.recipes.loop_settings): no defaults here."""

    epochs: int
    lr: float                  # dense weights (Adam)
    emb_lr: float              # hashed embedding tables (SparseAdam)
    weight_decay: float
    seed: int
    checkpoint_every: int
    checkpoint_seconds: float  # a resume checkpoint at most this often (0: at every step count and epoch end)
    progress: bool
    max_steps_per_epoch: int   # 0 = no cap; tests and smoke runs cap it


class PairedOptimizer:
    """Adam for dense weights plus SparseAdam for the hashed embedding tables.

    The id tables have ~10^5 rows of which a batch touches a few thousand; dense Adam would update
    (and decay) every row at every step, which made the optimizer step the largest cost of training.
    """

    def __init__(self, model: torch.nn.Module, s: LoopSettings) -> None:
        sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
        sparse = [p for p in model.parameters() if p.requires_grad and id(p) in sparse_ids]
        self.opts: list[torch.optim.Optimizer] = []
        # a model may scale some weights' learning rate (models.ctnet: its adapters, its target's embedding
        # tables): one group per scale, in the optimiser of the weight's kind
        scales = model.lr_scales() if hasattr(model, "lr_scales") else {}

        def groups(params: list[torch.nn.Parameter], lr: float) -> list[dict[str, Any]]:
            by_scale: dict[float, list[torch.nn.Parameter]] = {}
            for p in params:
                by_scale.setdefault(float(scales.get(id(p), 1.0)), []).append(p)
            return [{"params": ps, "lr": lr * k} for k, ps in by_scale.items()]

        if dense:
            self.opts.append(torch.optim.Adam(groups(dense, s.lr), lr=s.lr, weight_decay=s.weight_decay))
        if sparse:
            self.opts.append(torch.optim.SparseAdam(groups(sparse, s.emb_lr), lr=s.emb_lr))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def state_dict(self) -> dict[str, Any]:
        return {str(i): o.state_dict() for i, o in enumerate(self.opts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, o in enumerate(self.opts):
            o.load_state_dict(state[str(i)])


def make_optimizer(model: torch.nn.Module, s: LoopSettings) -> PairedOptimizer:
    return PairedOptimizer(model, s)


PER_STEP = "per_step"  # DVCLive's folder of the per-step series: plots/metrics/per_step/<series>.tsv


class LiveLog:
    """The training curves, through DVCLive, in ``<model folder>/dvclive``: their one record. dvc.yaml's
    ``plots:`` declares the folders for ``dvc plots show``, the run report draws the same TSVs, and ``dvc exp
    show`` / ``dvc metrics show`` read the last per-epoch values in ``metrics.json``.

    One folder serves every phase of a stage, each under its own series name (``loss``, ``loss-select``,
    ``loss-refit``...): ``plots/metrics/<name>.tsv`` is the phase's mean loss per epoch (step = epoch), beside
    the epoch's other metrics (``val_ndcg@50``), and ``plots/metrics/per_step/<name>.tsv`` the loss of every
    optimiser step (step = the phase's step count). A resumed phase appends to its series; a fresh one drops the
    old file of each series before its first point, since the model folders persist between runs.
    """

    def __init__(self, folder: Path, name: str, resume: bool) -> None:
        self.name = name
        self.fresh = not resume
        self.started: set[str] = set()
        self.live = None
        try:
            from dvclive import Live

            self.live = Live(dir=str(folder), resume=True, save_dvc_exp=False, dvcyaml=None, report=None)
        except Exception as exc:  # noqa: BLE001 - curves are a convenience; never fail a training run for them
            log.warning("DVCLive disabled for %s: %s", folder, exc)

    def _point(self, key: str, step: int, value: float) -> None:
        if key not in self.started:
            self.started.add(key)
            if self.fresh:
                (Path(self.live.plots_dir) / "metrics" / f"{key}.tsv").unlink(missing_ok=True)
        self.live.step = step
        self.live.log_metric(key, value)

    def log_step(self, step: int, loss: float) -> None:
        if self.live is None:
            return
        self._point(f"{PER_STEP}/{self.name}", step, loss)
        self.live.summary.pop(PER_STEP, None)  # metrics.json: the per-epoch values only

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.live is None:
            return
        for key, value in metrics.items():
            if value == value:  # NaN (an empty epoch) is not a point
                self._point(key if key != "loss" else self.name, epoch + 1, float(value))
        self.live.step = epoch + 1
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


class Stateful(Protocol):
    """What a resume checkpoint can carry besides the model and optimizer: tensors and plain containers."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def run_epochs(model: RetrievalModel, settings: LoopSettings, n_batches: Callable[[int], int],
               batches: Callable[[int], Iterator[tuple[int, Callable[[], torch.Tensor]]]],
               resume_path: Path, curve: Path, desc: str,
               on_epoch_end: Callable[[int], bool] | None = None,
               average: EpochAverage | None = None, memory: Stateful | None = None) -> dict[str, Any]:
    """Train for settings.epochs; ``batches(epoch)`` yields (step, closure returning the loss).

    Every ``checkpoint_every`` steps and at every epoch end the model and optimizer go to ``resume_path``, once
    ``checkpoint_seconds`` have passed since the last time (or the start): a checkpoint holds the embedding tables
    and their optimiser state, and writing one after every short epoch took a large share of a KuaiRand day's
    training (docs/lab/params-history.md, "train.checkpoint_every, train.checkpoint_seconds"), while a crash
    between two checkpoints only redoes those seconds. If the
    file exists at start, training continues from it. ``on_epoch_end`` returning True stops early. ``average`` (of this
    model's weights) takes every epoch's end weights before ``on_epoch_end`` looks at the epoch, and travels in
    the resume checkpoint, so a resumed run averages the same epochs as an uninterrupted one. ``memory`` is
    what ``on_epoch_end`` remembers across epochs (early stopping's best epochs and their weights): it travels
    in the resume checkpoint too, written after ``on_epoch_end`` has seen the epoch, so a resumed run selects
    the epoch an uninterrupted one would. ``curve`` is ``<model folder>/<series name>``: the loss curves go to
    DVCLive in ``<model folder>/dvclive`` under that name (:class:`LiveLog`).
    """
    rank, n_proc = world()
    broadcast_model(model)
    # a resume checkpoint is only valid for the same loop settings and model: never resume another run
    fingerprint = (f"{desc}|{settings}|{sorted(model.cfg.to_dict().items())}"
                   f"|average {average.start if average is not None else 0}")
    opt = make_optimizer(model, settings)
    start_epoch, start_step, global_step = 0, 0, 0

    def resume_state(epoch: int, step: int) -> dict[str, Any]:
        return {"optimizer": opt.state_dict(), "epoch": epoch, "step": step, "global_step": global_step,
                "fingerprint": fingerprint, "average": average.state_dict() if average else {},
                "memory": memory.state_dict() if memory else {}}

    resume = Path(resume_path).exists()
    if resume:
        try:
            payload = load_resume(resume_path)
        except CheckpointError as exc:
            log.warning("ignoring unusable resume checkpoint: %s", exc)
            resume = False
        else:
            if payload["state"].get("fingerprint") != fingerprint:
                log.warning("%s: %s belongs to a different run (settings or model changed); starting fresh",
                            desc, resume_path)
                resume = False
    # every rank resumes or none does: a machine without the file would otherwise take other steps (all_reduce hangs)
    if all_agree(resume) != resume:
        log.warning("%s: not every rank can resume from %s (another machine lacks it); starting fresh", desc, resume_path)
        resume = False
    if resume:
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["state"]["optimizer"])
        start_epoch = int(payload["state"]["epoch"])
        start_step = int(payload["state"]["step"])
        global_step = int(payload["state"]["global_step"])
        if average is not None:
            average.load_state_dict(payload["state"].get("average", {}))
        if memory is not None:
            memory.load_state_dict(payload["state"].get("memory", {}))
        log.info("%s: resuming at epoch %d step %d", desc, start_epoch, start_step)
    live = LiveLog(Path(curve).parent / "dvclive", Path(curve).name, resume) if rank == 0 else None
    history: list[float] = []
    stopped_early = False
    last_save = time.monotonic()

    def save_if_due(epoch: int, step: int) -> None:
        nonlocal last_save
        if rank == 0 and time.monotonic() - last_save >= settings.checkpoint_seconds:
            save_resume(resume_path, model, state=resume_state(epoch, step))
            last_save = time.monotonic()

    try:
        for epoch in range(start_epoch, settings.epochs):
            model.train()
            total = n_batches(epoch)
            if settings.max_steps_per_epoch:
                total = min(total, settings.max_steps_per_epoch)
            total -= total % n_proc  # every rank takes the same number of steps
            losses = []
            bar = tqdm(total=total, desc=f"{desc} epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress,
                       initial=start_step if epoch == start_epoch else 0)
            for step, closure in batches(epoch):
                if step >= total:
                    break
                if (epoch == start_epoch and step < start_step) or step % n_proc != rank:
                    continue
                opt.zero_grad(set_to_none=True)
                loss = closure()
                loss.backward()
                average_gradients(model)
                opt.step()
                global_step += 1
                value = float(loss.detach())
                losses.append(value)
                if live is not None:
                    live.log_step(global_step, value)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                if settings.checkpoint_every and global_step % settings.checkpoint_every == 0:
                    save_if_due(epoch, step + 1)
            bar.close()
            start_step = 0
            mean = float(np.mean(losses)) if losses else float("nan")
            history.append(mean)
            log.info("%s epoch %d: mean loss %.4f", desc, epoch + 1, mean)
            barrier()
            if average is not None:
                average.update(epoch)
            # on_epoch_end returns stop, or (stop, {metric: value}) to log e.g. the validation NDCG@50
            verdict = on_epoch_end(epoch) if on_epoch_end is not None else False
            stop, extra = verdict if isinstance(verdict, tuple) else (verdict, {})
            if not stop:
                save_if_due(epoch + 1, 0)
            if live is not None:
                live.log(epoch, {"loss": mean, **(extra or {})})
            if stop:
                stopped_early = True
                break
    finally:
        if live is not None:
            live.close()
    # Finished: the resume checkpoint has done its job. Left behind, it would make the next run in this
    # folder "resume" a completed run and skip its training.
    if rank == 0:
        discard_resume(resume_path)
    return {"epoch_loss": history, "steps": global_step, "stopped_early": stopped_early}
