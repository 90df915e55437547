"""The SENet two-tower (seed 003): a squeeze-excitation block over each tower's input fields before its MLP.

A plain two-tower feeds every field to the MLP at the weight the first layer learnt for it, the same for every
row. The SE block reweights the fields per row: each field is squeezed to one number (the mean of its
embedding), a small bottleneck network maps the row's squeezed fields to one weight per field, and each field's
embedding is scaled by its weight before the MLP reads it. A field that is noise for a row can be turned down
(towards 0) and the fields that matter for the final inner product turned up, in each tower separately.

The weights are ``F * softmax(excitation)`` over the F fields of a row: they sum to F (mean 1), so a weight
reads as "this field counts w times the average field" and the block cannot simply rescale the whole input
(which the MLP would absorb anyway). The excitation's last layer starts at zero: every weight starts at 1 and
the tower starts as the plain two-tower it extends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTION = 2   # the excitation bottleneck: fields // REDUCTION units (FiBiNET's squeeze-excitation default range)


class FieldSE(nn.Module):
    """Squeeze-excitation over consecutive fields of a tower input of widths ``widths`` (they sum to its width)."""

    def __init__(self, widths: list[int], reduction: int = REDUCTION) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"FieldSE needs positive field widths, got {widths}")
        n = len(widths)
        self.widths = list(widths)
        self.excite = nn.Sequential(nn.Linear(n, max(1, n // reduction)), nn.ReLU(), nn.Linear(max(1, n // reduction), n))
        nn.init.zeros_(self.excite[2].weight)
        nn.init.zeros_(self.excite[2].bias)
        self.register_buffer("field_of_column", torch.repeat_interleave(torch.arange(n), torch.tensor(widths)),
                             persistent=False)

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, fields): the mean of each field's columns."""
        return torch.stack([chunk.mean(-1) for chunk in x.split(self.widths, dim=-1)], dim=-1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, fields) field weights, each row's summing to the number of fields."""
        return len(self.widths) * F.softmax(self.excite(self.squeeze(x)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, self.field_of_column]
