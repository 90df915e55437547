"""The mean of a model's epoch-end weights (stochastic weight averaging, Izmailov et al. 2018).

Why: on KuaiRand a single epoch's weights are a noisy draw. The test NDCG@50 of one run swings from one
epoch to the next (the small tabs, with a few hundred evaluation pairs, most), and early stopping, judging on
one held-out day, picks among those draws as noisily. The mean of the epoch-end weights is the standard
remedy. Over a fixed number of epochs it helps the largest tab and the micro average of every learned row,
but the small tabs of `sass` lose (they overfit in epochs early stopping would have skipped), so it is off
by default (``finetune.average_from: 0``; the measurements: docs/lab/notes.md and
docs/lab/params-history.md, "finetune.average_from").
The averaging itself is torch's
``torch.optim.swa_utils.AveragedModel``; this class adds when to start, and the save/restore the trainer
needs for resumable runs and for the held-out-day refit that continues an average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel


class EpochAverage:
    """Running mean of the weights at the end of every epoch numbered ``start`` or later (1-based).

    ``start`` 0 turns averaging off: ``model`` is then always the trained model itself. Before the first
    averaged epoch ``model`` is the trained model as well, so a caller can always evaluate ``model``.
    """

    def __init__(self, model: torch.nn.Module, start: int) -> None:
        if start < 0:
            raise ValueError(f"finetune.average_from must be >= 0 (0 = off), got {start}")
        self.trained, self.start = model, start
        self.average = AveragedModel(model, use_buffers=True) if start else None   # buffers: batch-norm statistics

    @property
    def count(self) -> int:
        """How many epochs' weights the mean holds."""
        return 0 if self.average is None else int(self.average.n_averaged)

    def update(self, epoch: int) -> None:
        """Fold in the weights at the end of 0-based ``epoch`` (when it is one to average)."""
        if self.average is not None and epoch + 1 >= self.start:
            self.average.update_parameters(self.trained)

    @property
    def model(self) -> torch.nn.Module:
        """The model to evaluate or keep: the mean once it holds an epoch, else the trained model."""
        return self.average.module if self.count else self.trained

    def state_dict(self) -> dict[str, Any]:
        return {} if self.average is None else copy.deepcopy(self.average.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is not None and state:
            self.average.load_state_dict(state)

    def continued(self) -> EpochAverage:
        """An average that goes on from this one's mean and folds in every later epoch: the held-out-day refit
        adds its epoch to the selected mean rather than replacing it with one epoch's noisy weights."""
        nxt = EpochAverage(self.trained, 1 if self.start else 0)
        nxt.load_state_dict(self.state_dict())
        return nxt

    def finish(self) -> None:
        """Put the mean (if any) into the trained model: what is saved and served."""
        if self.count:
            self.trained.load_state_dict(self.average.module.state_dict())
