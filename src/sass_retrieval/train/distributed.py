"""Data-parallel training across processes (``torchrun --nproc_per_node=N``, gloo backend).

The towers are called through ``user_vectors``/``item_vectors`` rather than ``forward``, which
``DistributedDataParallel``'s hooks do not see; so the DDP algorithm is applied explicitly: identical
initial weights (broadcast from rank 0), each rank takes every N-th batch, gradients are averaged with
all-reduce before every optimizer step. Sparse embedding gradients are densified for the reduction
and made row-sparse again for SparseAdam.

Several machines (``train.nodes`` > 1, :mod:`.launch`): c10d orders the ranks by host name and process id, so
global rank 0 may land on any machine, but the outputs (model folder, DVCLive curves, resume checkpoint) must
be written where the stage's outputs are kept: on the machine whose task commits them (the DAG's main task),
not on one that only lends its cores (``$SASS_TRAIN_JOINING=1``: the DAG's ``<stage>_node`` tasks). So
:func:`world` answers a *project rank*: the processes of the keeping machine first, then the joining ones,
each group in global rank order. Every rank holds the same weights after each step, so which one writes is
only a question of where; the batches are split over project ranks exactly as over global ones.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import BadConfigError
from .launch import JOINING

_order: tuple[int, ...] | None = None   # global ranks by project rank, set when the group is joined


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return (_order.index(rank) if _order is not None else rank), dist.get_world_size()
    return 0, 1


def project_order(joining: list[bool]) -> tuple[int, ...]:
    """Global ranks ordered keeping-machine first (``joining[r]``: rank r is on a joining machine)."""
    return tuple(sorted(range(len(joining)), key=lambda r: (joining[r], r)))


def _leader() -> int:
    """The global rank of project rank 0: the source of the initial weights."""
    return _order[0] if _order is not None else 0


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; False when run standalone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    global _order
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    flags: list[bool] = [False] * dist.get_world_size()
    dist.all_gather_object(flags, os.environ.get(JOINING) == "1")
    if all(flags):
        raise BadConfigError(f"every training process has {JOINING}=1: no machine keeps the outputs "
                           "(set it only on the machines that lend their cores)")
    _order = project_order(flags)
    return True


def is_main() -> bool:
    return world()[0] == 0


def broadcast_model(model: torch.nn.Module) -> None:
    if world()[1] > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, src=_leader())


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


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (a decision every rank must take alike, e.g. resuming)."""
    if world()[1] == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
