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
    """Average every gradient over the ranks, in the same parameter order on every rank.

    The hashed embedding tables' gradients stay row-sparse: a batch touches a few thousand of their 10^5 rows,
    and densifying a table to all-reduce it (then making it sparse again for SparseAdam) cost seconds per step,
    more than the step itself; gloo's sparse all-reduce exchanges only the touched rows. The dense weights go in
    one flat all-reduce instead of one per parameter, whose latency adds up over a tower's many small tensors.
    """
    _, n = world()
    if n == 1:
        return
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    dense: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) not in sparse_ids:
            dense.append(p)
            continue
        # every rank reduces every table, even one its batch did not touch (an empty sparse gradient)
        g = p.grad.coalesce() if p.grad is not None else _empty_row_sparse(p)
        dist.all_reduce(g)
        p.grad = (g / n).coalesce()
    if dense:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in dense]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= n
        offset = 0
        for p, g in zip(dense, grads, strict=True):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()


def _empty_row_sparse(p: torch.Tensor) -> torch.Tensor:
    """A row-sparse gradient of ``p`` with no rows: the layout an embedding's sparse gradient has."""
    return torch.sparse_coo_tensor(torch.empty((1, 0), dtype=torch.long), torch.empty((0, *p.shape[1:]), dtype=p.dtype),
                                   size=p.shape, check_invariants=True).coalesce()


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
