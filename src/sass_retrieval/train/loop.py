"""What pretraining and fine-tuning share: settings, seeding, resumable epochs, loss logs.

Resuming relies on determinism rather than saved RNG state: the order of an epoch and the draws of a
step are seeded by (seed, epoch, step), so a run restarted from its last checkpoint replays exactly
the batches it had not done yet.
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..models.retrieval import RetrievalModel
from .checkpoint import CheckpointError, load_payload, save_checkpoint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, step + 1])  # step -1 seeds the epoch order


@dataclass
class LoopSettings:
    epochs: int
    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 200
    progress: bool = True
    max_steps_per_epoch: int = 0   # 0 = no cap; tests and smoke runs cap it


def make_optimizer(model: torch.nn.Module, s: LoopSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


class LossLog:
    """Per-step loss rows in a CSV that `dvc plots` can draw; appends when a run resumes."""

    def __init__(self, path: Path, fields: list[str], resume: bool) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields = fields
        fresh = not (resume and self.path.exists())
        self.fh = self.path.open("w" if fresh else "a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=fields)
        if fresh:
            self.writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.fields})

    def close(self) -> None:
        self.fh.close()


def run_epochs(model: RetrievalModel, settings: LoopSettings, n_batches: Callable[[int], int],
               batches: Callable[[int], Iterator[tuple[int, Callable[[], torch.Tensor]]]],
               resume_path: Path, loss_log: Path, desc: str,
               on_epoch_end: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Train for settings.epochs; ``batches(epoch)`` yields (step, closure returning the loss).

    Every ``checkpoint_every`` steps the model and optimizer go to ``resume_path``; if that file exists
    at start, training continues from it. ``on_epoch_end`` returning True stops early.
    """
    opt = make_optimizer(model, settings)
    start_epoch, start_step, global_step = 0, 0, 0
    resume = Path(resume_path).exists()
    if resume:
        try:
            _, payload = load_payload(resume_path)
        except CheckpointError as exc:
            log.warning("ignoring unusable resume checkpoint: %s", exc)
            resume = False
        else:
            model.load_state_dict(payload["model"])
            opt.load_state_dict(payload["state"]["optimizer"])
            start_epoch = int(payload["state"]["epoch"])
            start_step = int(payload["state"]["step"])
            global_step = int(payload["state"]["global_step"])
            log.info("%s: resuming at epoch %d step %d", desc, start_epoch, start_step)
    logger = LossLog(loss_log, ["step", "epoch", "loss"], resume)
    history: list[float] = []
    stopped_early = False
    try:
        for epoch in range(start_epoch, settings.epochs):
            model.train()
            total = n_batches(epoch)
            if settings.max_steps_per_epoch:
                total = min(total, settings.max_steps_per_epoch)
            losses = []
            bar = tqdm(total=total, desc=f"{desc} epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress,
                       initial=start_step if epoch == start_epoch else 0)
            for step, closure in batches(epoch):
                if step >= total:
                    break
                if epoch == start_epoch and step < start_step:
                    continue
                opt.zero_grad(set_to_none=True)
                loss = closure()
                loss.backward()
                opt.step()
                global_step += 1
                value = float(loss.detach())
                losses.append(value)
                logger.write({"step": global_step, "epoch": epoch, "loss": round(value, 6)})
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                if settings.checkpoint_every and global_step % settings.checkpoint_every == 0:
                    save_checkpoint(resume_path, model, state={"optimizer": opt.state_dict(), "epoch": epoch,
                                                               "step": step + 1, "global_step": global_step})
            bar.close()
            start_step = 0
            mean = float(np.mean(losses)) if losses else float("nan")
            history.append(mean)
            log.info("%s epoch %d: mean loss %.4f", desc, epoch + 1, mean)
            save_checkpoint(resume_path, model, state={"optimizer": opt.state_dict(), "epoch": epoch + 1, "step": 0,
                                                       "global_step": global_step})
            if on_epoch_end is not None and on_epoch_end(epoch):
                stopped_early = True
                break
    finally:
        logger.close()
    return {"epoch_loss": history, "steps": global_step, "stopped_early": stopped_early}
