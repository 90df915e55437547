"""The dual augmented two-tower (DAT, Meituan; seed 003): what one tower learnt about the other, as an input.

User and item meet only in the final inner product, so neither tower sees anything of the other side. DAT gives
every user and every item a learned augment vector (a hashed id table per side, models.retrieval) concatenated to
its own tower's input. On positive pairs a mimic loss pulls the user's augment vector towards the item tower's
output for that item, and the item's augment vector towards the user tower's output: over training a user's
augment vector comes to summarise the items it engages with as the item tower sees them (and conversely), so the
user tower's input carries the other tower's high-level information. The targets are detached (stop-gradient):
the mimic loss trains the augment vectors only, it never moves a tower's output towards an augment vector.
Serving is unchanged: the augment vector is looked up by id like any embedding and the tower still gives one
vector per side.
"""

from __future__ import annotations

import torch


def mimic_loss(aug_user: torch.Tensor, aug_item: torch.Tensor, out_user: torch.Tensor, out_item: torch.Tensor,
               positive: torch.Tensor) -> torch.Tensor:
    """Mean over the positive rows of ||a_u - stop_grad(p_i)||^2 + ||a_i - stop_grad(p_u)||^2; 0 without positives.

    ``aug_*``: (n, d) augment vectors of each row's user and item; ``out_*``: (n, d) the towers' outputs for the
    same rows; ``positive``: (n,) bool, the rows whose pair is a positive. A negative row contributes nothing (DAT
    fits the augment vectors to positive interactions only), neither to the value nor to any gradient."""
    if not bool(positive.any()):
        return aug_user.new_zeros(())
    pos = positive.nonzero(as_tuple=True)[0]
    du = aug_user[pos] - out_item[pos].detach()
    di = aug_item[pos] - out_user[pos].detach()
    return (du.square().sum(-1) + di.square().sum(-1)).mean()


class LatestAugment(dict):
    """side -> the augment vectors of the model's latest training forward on that side (RetrievalModel.user_input
    and item_input record them; RetrievalModel.extra_loss consumes them). The mimic loss needs the augment vectors
    of exactly the rows the trainer just embedded, and the trainer's batch hands the towers' outputs around, not
    the ids. Copies start empty: a recorded tensor belongs to one forward's graph, which a copied model (a
    scenario's own epoch, train.finetune) must not carry."""

    def __deepcopy__(self, memo: dict) -> LatestAugment:
        return LatestAugment()

    def __reduce__(self):  # noqa: ANN204 - pickling (torch.save of a whole model) keeps none either
        return (LatestAugment, ())
