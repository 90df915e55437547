"""Data-parallel training is the single-process algorithm: one step of two torchrun processes (gloo, CPU) on two
batches must leave both ranks with the weights one process reaches by one step on the mean loss of the same two
batches. A result "of similar quality" would also accept ranks that never exchange gradients; exact weights and
gradients do not, and the test shows it by training the same ranks without the all-reduce.

This file is also the worker torchrun starts (``__main__``): each rank joins the group the way the training
stages do (``init_from_env``) and runs the library's fine-tuning (``train.finetune`` -> ``train.loop.run_epochs``,
which broadcasts the weights, gives every rank every N-th batch and averages the gradients), so the test checks
the project's DDP path rather than a copy of it.

The same worker also runs as two *nodes*: two separate torchrun launches meeting at a c10d rendezvous on the
loopback interface (what ``train.nodes: 2`` launches on two machines), one of them a joining node
(``SASS_TRAIN_JOINING=1``) that c10d makes global rank 0: the project's rank 0, which writes the outputs,
must still be the process of the node that keeps them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:   # the torchrun worker runs this file as a script, outside pytest's pythonpath
    sys.path.insert(0, str(TESTS))

from support import TINY_SCENARIOS, tiny_params  # noqa: E402

SEED = 0
RANK_SEEDS = (11, 12)   # each rank builds different initial weights: only the broadcast makes them one model


def _setup(features: Path, store: Path) -> tuple[Any, Any, Any]:
    """The model config, feature bank and fine-tuning job every process uses.

    One epoch capped at two steps: under two processes, one optimiser step per rank. Dropout off (a rank and
    the single process would draw different masks) and no in-batch negatives (their click-share proposal is
    built inside ``finetune``; the reference below would have to rebuild it, and the all-reduce does not care
    which loss produced the gradients). Early stopping off: one training phase, no validation.
    """
    from sass_retrieval.data.store import read_items, read_users
    from sass_retrieval.models.bank import load_bank, model_config
    from sass_retrieval.train.recipes import finetune_job

    params = tiny_params({
        "model": {"user_buckets": 1009, "video_buckets": 1009, "field_buckets": 97, "hidden": 16, "emb_dim": 8,
                  "field_dim": 4, "dropout": 0.0},
        "finetune": {"epochs": 1, "batch_size": 64, "negatives": 16, "lr": 0.01, "emb_lr": 0.01,
                     "weight_decay": 0.01, "early_stopping": False, "in_batch_negatives": False,
                     "max_steps_per_epoch": 2},
        "train": {"checkpoint_every": 0}})
    cfg = model_config(params, TINY_SCENARIOS)
    bank = load_bank(features, read_users(store), read_items(store), cfg)
    return cfg, bank, finetune_job(params, seed=SEED, progress=False)


def _snapshot(model: torch.nn.Module) -> dict[str, Any]:
    """Weights and the gradients of the last step (dense; a parameter no batch touched has a zero gradient),
    and where the process ran: its node (the test's label) and its global rank."""
    import torch.distributed as dist

    grads = {n: (torch.zeros_like(p) if p.grad is None else p.grad.to_dense()).detach().clone()
             for n, p in model.named_parameters()}
    return {"weights": {k: v.detach().clone() for k, v in model.state_dict().items()}, "grads": grads,
            "node": os.environ.get("SASS_TEST_NODE", ""),
            "global_rank": dist.get_rank() if dist.is_initialized() else 0}


def _worker(features: Path, store: Path, out: Path) -> None:
    """One rank: fine-tune with the all-reduce, then again (fresh model) with it switched off."""
    import sass_retrieval.train.loop as loop
    from sass_retrieval.models.retrieval import RetrievalModel
    from sass_retrieval.train.distributed import init_from_env, world
    from sass_retrieval.train.finetune import finetune

    torch.set_num_threads(1)
    assert init_from_env(), "torchrun describes a group of more than one process"
    rank, n = world()
    assert n == 2
    cfg, bank, job = _setup(features, store)
    for mode in ("ddp", "no_allreduce"):
        torch.manual_seed(RANK_SEEDS[rank])
        model = RetrievalModel(cfg)
        with contextlib.ExitStack() as stack:
            if mode == "no_allreduce":   # the negative control: each rank keeps the gradient of its own batch
                saved = loop.average_gradients
                loop.average_gradients = lambda _model: None
                stack.callback(setattr, loop, "average_gradients", saved)
            report = finetune(model, bank, job, out / f"{mode}-{rank}")
        assert report["steps"] == 1, report
        torch.save(_snapshot(model), out / f"{mode}-{rank}.pt")


def _reference(features: Path, store: Path) -> dict[str, dict[str, torch.Tensor]]:
    """One process, one optimiser step on the mean of the losses of the two batches the two ranks take
    (batch 0 and batch 1 of the epoch's plan, with their step's negatives), from rank 0's initial weights
    (``start``: kept to show the step moved them)."""
    from sass_retrieval.models.bank import recent_days
    from sass_retrieval.models.retrieval import RetrievalModel
    from sass_retrieval.train.finetune import _day_batches, _positives, batch_loss
    from sass_retrieval.train.loop import make_optimizer, step_rng
    from sass_retrieval.train.sampler import NegativeSampler

    cfg, bank, job = _setup(features, store)
    s = job.knobs
    torch.manual_seed(RANK_SEEDS[0])
    model = RetrievalModel(cfg)
    model.train()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                for n in bank.scenarios}
    pos = _positives(bank, bank.scenarios, recent_days(len(bank.train_dates), s.recent_days), s.objective)
    plan = _day_batches(pos["day"], s.batch_size, step_rng(SEED, 0, -1))
    # equal shards: the mean of the two batch means is then the mean over the concatenated rows
    assert len(plan[0]) == len(plan[1]) == s.batch_size
    opt = make_optimizer(model, job.loop)
    opt.zero_grad(set_to_none=True)
    losses = [batch_loss(model, bank, samplers, pos, plan[k], s, step_rng(SEED, 0, k)) for k in (0, 1)]
    ((losses[0] + losses[1]) / 2).backward()
    opt.step()
    return {**_snapshot(model), "start": start}


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The names whose tensors differ beyond float32 rounding of a different summation order."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _check_against_one_process(features: Path, store: Path, out: Path) -> list[dict[str, Any]]:
    """The ranks' snapshots in ``out`` against one process on both batches; the DDP ones, by project rank."""
    ref = _reference(features, store)
    ddp = [torch.load(out / f"ddp-{r}.pt", weights_only=True) for r in (0, 1)]
    solo = [torch.load(out / f"no_allreduce-{r}.pt", weights_only=True) for r in (0, 1)]
    sparse = [n for n, p in ref["grads"].items() if n.endswith("emb.weight") or n.endswith("fields.weight")]
    assert sparse, "the model's hashed embedding tables (SparseAdam) are part of the comparison"

    # every table received gradient and the step moved it: the comparison is not between two starts
    assert all(float(ref["grads"][n].abs().sum()) > 0 for n in sparse)
    assert set(sparse) <= set(_differing(ref["start"], ref["weights"]))
    for rank in (0, 1):
        assert _differing(ddp[rank]["weights"], ddp[1 - rank]["weights"]) == [], "ranks hold different weights"
        assert _differing(ddp[rank]["grads"], ref["grads"]) == [], "averaged gradients != the two batches' gradient"
        assert _differing(ddp[rank]["weights"], ref["weights"]) == [], "DDP step != the single-process step"

    # negative control: without the all-reduce the ranks drift apart and neither is the single-process step
    assert _differing(solo[0]["weights"], solo[1]["weights"]) != []
    for rank in (0, 1):
        wrong = _differing(solo[rank]["weights"], ref["weights"])
        assert wrong != [] and any(n in wrong for n in sparse), wrong
        assert _differing(solo[rank]["grads"], ref["grads"]) != []
    return ddp


def test_two_ranks_one_step_equal_one_process_on_both_batches(tiny_project: dict, tmp_path: Path) -> None:
    features, store = tiny_project["features"], tiny_project["store"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           __file__, str(features), str(store), str(tmp_path)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    _check_against_one_process(features, store, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_over_loopback_one_step_equal_one_process(tiny_project: dict, tmp_path: Path) -> None:
    """Two torchrun launches of one process each (``--nnodes=2``, c10d rendezvous on 127.0.0.1), as two machines
    start them. c10d orders the ranks by node address: the joining node, ``--local-addr=127.0.0.1``, sorts before
    the keeping one, ``--local-addr=localhost``, and is global rank 0; the project's rank 0 (the writer of the
    outputs, the source of the initial weights) must be the keeping node's process all the same."""
    features, store = tiny_project["features"], tiny_project["store"]
    port = _free_port()
    procs = []
    for node, addr, joining in (("joining", "127.0.0.1", "1"), ("keeping", "localhost", "0")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=loopback-{port}",
               f"--local-addr={addr}", __file__, str(features), str(store), str(tmp_path)]
        env = {**_env(), "SASS_TEST_NODE": node, "SASS_TRAIN_JOINING": joining}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-4000:]
    ddp = _check_against_one_process(features, store, tmp_path)
    assert [d["node"] for d in ddp] == ["keeping", "joining"]
    assert [d["global_rank"] for d in ddp] == [1, 0], "c10d made the keeping node rank 0: the order was not tested"


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))


_UNTOUCHED_TABLE = '''
import json, sys, torch
import torch.distributed as dist
from sass_retrieval.train.distributed import average_gradients, init_from_env

init_from_env()
rank = dist.get_rank()


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(10, 3, sparse=True)
        self.head = torch.nn.Linear(3, 1)


torch.manual_seed(0)
m = Model()
if rank == 0:
    m.head(m.table(torch.tensor([1, 1, 4]))).sum().backward()
else:   # this rank's batch never reads the table: its gradient is None
    m.head(torch.ones(2, 3)).sum().backward()
solo = None
if rank == 0:   # what rank 0 alone computed, to compare with the average
    solo = m.table.weight.grad.to_dense().tolist()
average_gradients(m)
g = m.table.weight.grad
# one file per rank: two processes printing to one shared pipe can interleave their lines
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
    json.dump({"rank": rank, "sparse": g.is_sparse, "table": g.to_dense().tolist(), "solo": solo,
               "head": m.head.weight.grad.tolist()}, f)
'''


def test_sparse_tables_average_as_row_sparse_even_when_a_rank_does_not_touch_them(tmp_path: Path) -> None:
    """The embedding tables' gradients are all-reduced as sparse rows; a rank whose batch never read a table
    still takes part (an empty sparse gradient), and every rank ends with the same row-sparse average."""
    script = tmp_path / "untouched.py"
    script.write_text(_UNTOUCHED_TABLE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    out = {r["rank"]: r for r in (json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json")))}
    assert set(out) == {0, 1} and out[0]["sparse"] and out[1]["sparse"]
    assert out[0]["table"] == out[1]["table"] and out[0]["head"] == out[1]["head"]
    expected = torch.tensor(out[0]["solo"]) / 2   # rank 1 contributed nothing to the table
    assert torch.allclose(torch.tensor(out[0]["table"]), expected)
    assert expected[1].abs().sum() > 0 and expected[0].abs().sum() == 0
