"""The reference rows, declared once: what each is, how it trains, how its checkpoints lie, when it runs.

Every place that names rows (the params schema's choices, the train stage's ``--row``, the CLI help, the
trainers, evaluation and serving) reads this registry. Light on purpose: no torch at import. A row's
trainer is named by a ``module:function`` path and imported only by :func:`trainer` (the training
stages), so the schema and the data stages can import the registry for nothing.

A row is one of:

- the **candidate** ``sass`` and the ``popular`` baseline: always on the daily path (``daily``);
- a **challenger** (``publish.challenger``): trained, indexed and scored every day beside the candidate, and
  published when it is better; every challenger can also run as a benchmark row;
- a **benchmark-only** row: trained and scored on demand (``evaluate.benchmark_rows``), never served.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# How a row's folder models/<row>/ holds its checkpoints (written by training, read by indexing and serving):
SHARED = "shared"              # model.pt serves every scenario, but a model_<s>.pt: a scenario's own best epoch
PER_SCENARIO = "per_scenario"  # model_<s>.pt for every scenario, each trained on that scenario alone
CTNET = "ctnet"                # source.pt (the largest scenario) and a target model_<s>.pt for every other one
NO_MODEL = "none"              # nothing trained (popular counts clicks)
Layout = Literal["shared", "per_scenario", "ctnet", "none"]


@dataclass(frozen=True)
class RowSpec:
    name: str
    description: str
    trainer: str | None        # "module:function" training the row (resolved on use); None: nothing to train
    layout: Layout             # its checkpoints under models/<row>/ (the constants above)
    daily: bool                # always trained/scored on the daily path, whatever publish.challenger says
    challenger: bool           # may be publish.challenger: indexed and served per scenario like the candidate
    multi_objective: bool      # one head per objective, served with per-request weights (the multitask section)
    arch: str | None = None    # the tower it always uses; None: model.arch (the sass family)
    pretrained: bool = False   # starts from the stage-1 pretraining model (finetune.load_pretrained)

    @property
    def trained(self) -> bool:
        return self.trainer is not None

    @property
    def benchmark(self) -> bool:
        """May be listed in evaluate.benchmark_rows: a trained row the daily path does not always run."""
        return self.trained and not self.daily


_SHARED_TRAINER = "sass_retrieval.train.recipes:train_shared"

SPECS: tuple[RowSpec, ...] = (
    RowSpec("popular", "the most clicked videos of the scenario over the training window", None, NO_MODEL,
            daily=True, challenger=False, multi_objective=False),
    RowSpec("dssm_mixed", "one plain two-tower trained on every scenario", _SHARED_TRAINER, SHARED,
            daily=False, challenger=True, multi_objective=False, arch="dssm"),
    RowSpec("senet_mixed", "dssm_mixed's recipe with the SENet tower (seed 003): field weights before the MLP",
            _SHARED_TRAINER, SHARED, daily=False, challenger=True, multi_objective=False, arch="senet"),
    RowSpec("dssm_single", "one plain two-tower per scenario, trained on that scenario alone",
            "sass_retrieval.train.recipes:train_per_scenario", PER_SCENARIO,
            daily=False, challenger=False, multi_objective=False, arch="dssm"),
    RowSpec("sass_base", "SASS fine-tuned without the pretraining stage", _SHARED_TRAINER, SHARED,
            daily=False, challenger=True, multi_objective=False),
    RowSpec("sass", "the candidate: SASS pretrained across scenarios, then fine-tuned", _SHARED_TRAINER, SHARED,
            daily=True, challenger=False, multi_objective=False, pretrained=True),
    RowSpec("ctnet", "a daily source on the largest scenario and continually transferred per-scenario targets",
            "sass_retrieval.train.ctnet:train_ctnet_row", CTNET,
            daily=False, challenger=True, multi_objective=False, arch="dssm"),
    RowSpec("sass_mt", "the SASS towers with one head per objective (click, long view, like)", _SHARED_TRAINER,
            SHARED, daily=False, challenger=True, multi_objective=True),
)

REGISTRY: dict[str, RowSpec] = {spec.name: spec for spec in SPECS}
ROWS: tuple[str, ...] = tuple(REGISTRY)
TRAINED_ROWS: tuple[str, ...] = tuple(s.name for s in SPECS if s.trained)
BENCHMARK_ROWS: tuple[str, ...] = tuple(s.name for s in SPECS if s.benchmark)
CHALLENGERS: tuple[str, ...] = tuple(s.name for s in SPECS if s.challenger)
CANDIDATE = "sass"


def spec(name: str) -> RowSpec:
    """The row called ``name``; an unknown name is a ValueError listing the rows."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown row {name!r}; choose from {', '.join(ROWS)}") from None


def trainer(row: RowSpec) -> Callable[..., Any]:
    """The row's training function, imported now (it pulls torch)."""
    if row.trainer is None:
        raise ValueError(f"row {row.name!r} has nothing to train")
    module, _, function = row.trainer.partition(":")
    return getattr(importlib.import_module(module), function)


def help_text(names: tuple[str, ...] = TRAINED_ROWS) -> str:
    """``a|b|c``: the rows a command accepts, for its help line."""
    return "|".join(names)
