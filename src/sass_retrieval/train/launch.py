"""A training stage started on its own re-runs itself under torchrun when params ask for several processes.

``train.nodes`` x ``train.procs_per_node`` > 1 and no torchrun variables in the environment: the stage's entry
point hands its own module and arguments to ``python -m torch.distributed.run`` and returns torchrun's exit code,
so dvc.yaml's commands stay the same and DVC sees the launch shape as params of the training stages. One node:
``--standalone`` (a local rendezvous on a free port). Several: a c10d rendezvous at ``train.rendezvous``, whose
id every node of one training must share: ``$SASS_RDZV_ID`` (the DAG derives it from the run id and the stage,
:func:`rendezvous_id`), else the params file's hash and the stage, the same on machines started by hand with the
same params file. c10d assigns the ranks, so no node needs a ``--node-rank``; which node keeps the outputs is
:mod:`.distributed`'s business (``$SASS_TRAIN_JOINING``).

torchrun exits 1 whatever failed in a rank. The project's exit codes matter (2 bad input, 3 bad config, 4 a
missing prerequisite are not retried, :mod:`sass_retrieval.errors`), so each rank writes a failing code into
``$SASS_RANK_EXIT_DIR`` (:func:`record_exit`) and the launching process returns the first of them.

Light on purpose (no torch at import): the entry points import it before deciding how to run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("train.launch")
RDZV_ID = "SASS_RDZV_ID"              # the rendezvous id every node of one training shares
JOINING = "SASS_TRAIN_JOINING"        # "1" on a machine that trains but keeps no output (train.distributed)
EXIT_DIR = "SASS_RANK_EXIT_DIR"       # where ranks leave a failing exit code for the launching process
TORCHRUN_VARS = ("WORLD_SIZE", "LOCAL_RANK")


def under_torchrun(env: Mapping[str, str]) -> bool:
    """True in a process torchrun started (it sets WORLD_SIZE and LOCAL_RANK for every rank)."""
    return any(v in env for v in TORCHRUN_VARS)


def threads_per_process(threads: int, procs_per_node: int) -> int:
    """torch threads of each of ``procs_per_node`` processes sharing a machine's ``train.threads`` budget.

    The processes of one node share its cores: each taking the whole budget would run procs_per_node times as
    many threads as asked, and spinning OpenMP threads starve each other (sass_retrieval/__init__.py). At least
    one thread, since a process can not run on less.
    """
    return max(1, threads // procs_per_node)


def rendezvous_id(stage: str, params_path: str | Path, env: Mapping[str, str]) -> str:
    """``$SASS_RDZV_ID`` when set, else ``<params hash>-<stage>``: equal on every node started with the same
    params file, different for another stage or other params (a stale node of yesterday never joins today)."""
    if env.get(RDZV_ID):
        return env[RDZV_ID]
    digest = hashlib.sha256(Path(params_path).read_bytes()).hexdigest()[:16]
    return f"{digest}-{stage}"


def dag_rendezvous_id(run_id: str, stage: str) -> str:
    """The id the DAG gives the main task and the joining node tasks of one stage: the run id and the stage,
    reduced to characters every rendezvous backend accepts in a key."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{run_id}-{stage}")


def torchrun_argv(module: str, args: Sequence[str], *, nodes: int, procs_per_node: int, rendezvous: str,
                  rdzv_id: str, python: str = sys.executable) -> list[str]:
    """The command that runs ``python -m <module> <args>`` as ``procs_per_node`` ranks on each of ``nodes``."""
    if nodes < 1 or procs_per_node < 1:
        raise ValueError(f"train.nodes and train.procs_per_node must be >= 1, got {nodes} and {procs_per_node}")
    cmd = [python, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={procs_per_node}"]
    if nodes == 1:
        cmd.append("--standalone")
    else:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous}", f"--rdzv-id={rdzv_id}"]
    return [*cmd, "--module", module, *args]


def relaunch(module: str, args: Sequence[str], params_path: str | Path, stage: str) -> int | None:
    """Run this stage under torchrun when params ask for more than one process and it is not already; the exit
    code then, None when the caller should train in this process."""
    if under_torchrun(os.environ):
        return None
    from ..config import load_params

    train = load_params(params_path).train
    if train.nodes * train.procs_per_node == 1:
        return None
    cmd = torchrun_argv(module, args, nodes=train.nodes, procs_per_node=train.procs_per_node,
                        rendezvous=train.rendezvous, rdzv_id=rendezvous_id(stage, params_path, os.environ))
    log.info("%s: %d node(s) x %d process(es): %s", stage, train.nodes, train.procs_per_node, " ".join(cmd[1:]))
    with tempfile.TemporaryDirectory(prefix="sass-rank-exit-") as codes:
        env = {**os.environ, EXIT_DIR: codes,
               "OMP_NUM_THREADS": str(threads_per_process(train.threads, train.procs_per_node))}
        rc = subprocess.call(cmd, env=env)
        failed = sorted(Path(codes).glob("rank-*"), key=lambda f: int(f.name.split("-")[1]))
        rank_codes = [int(f.read_text()) for f in failed]
    if rc != 0:
        code = rank_codes[0] if rank_codes else rc
        print(f"error: {stage}: torchrun ({train.nodes} node(s) x {train.procs_per_node} process(es)) failed with "
              f"exit code {rc}{f'; first failing rank exited {code}' if rank_codes else ''} (its error is above)",
              file=sys.stderr)
        return code
    return 0


def record_exit(code: int) -> int:
    """A rank's exit code, written for the launching process when it failed; returns it unchanged."""
    where = os.environ.get(EXIT_DIR)
    if code != 0 and where and Path(where).is_dir():
        (Path(where) / f"rank-{os.environ.get('RANK', '0')}").write_text(str(code))
    return code


def per_process_threads(params, env: Mapping[str, str] | None = None):
    """``params`` with ``train.threads`` this process's share of the node's budget (:func:`threads_per_process`
    over torchrun's LOCAL_WORLD_SIZE); unchanged when this process is alone on its node."""
    env = os.environ if env is None else env
    local = int(env.get("LOCAL_WORLD_SIZE", "1"))
    if local <= 1:
        return params
    return params.override({"train.threads": threads_per_process(params.train.threads, local)},
                           source=f"{params.train.threads} threads shared by {local} processes")
