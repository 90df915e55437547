"""Planted slates for the re-ranker's tests: random candidates whose predictions, tags and cold flags are known."""

from __future__ import annotations

import torch

from sass_retrieval.rerank.goals import Slate


def planted_slate(n: int = 400, c: int = 30, tags: int = 6, cold_share: float = 0.15, seed: int = 0) -> Slate:
    g = torch.Generator().manual_seed(seed)
    click = torch.rand(n, c, generator=g) * 0.3
    pred = torch.stack([click, click * 0.8, click * torch.rand(n, c, generator=g) * 0.3], dim=2)
    ids = torch.arange(n * c).view(n, c)
    return Slate(ids, pred, torch.randint(0, tags, (n, c), generator=g), torch.rand(n, c, generator=g) < cold_share)
