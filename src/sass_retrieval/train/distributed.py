"""Data-parallel training across processes (``torchrun --nproc_per_node=N``, gloo backend).

The towers are called through ``user_vectors``/``item_vectors`` rather than ``forward``, which
``DistributedDataParallel``'s hooks do not see; so the DDP algorithm is applied explicitly: identical
initial weights (broadcast from rank 0), each rank takes every N-th batch, gradients are averaged with
all-reduce before every optimizer step. Sparse embedding gradients are densified for the reduction
and made row-sparse again for SparseAdam.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; False when run standalone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return True


def is_main() -> bool:
    return world()[0] == 0


def broadcast_model(model: torch.nn.Module) -> None:
    if world()[1] > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)


def average_gradients(model: torch.nn.Module) -> None:
    _, n = world()
    if n == 1:
        return
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # every rank reduces every parameter in the same order, even one its batch did not touch
        grad = p.grad
        g = torch.zeros_like(p) if grad is None else (grad.to_dense() if grad.is_sparse else grad)
        dist.all_reduce(g)
        g /= n
        p.grad = g.to_sparse(1) if id(p) in sparse_ids else g


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
