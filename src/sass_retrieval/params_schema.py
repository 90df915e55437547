"""The schema of params.yaml: every key, its type and what values it allows.

params.yaml holds the values; this module says which keys exist and what they may be. It never
restates a value of params.yaml: a key of params.yaml is required here (no default), so a key that is
missing, misspelt, of the wrong type, out of range or not one of its choices is an error naming it.
A key written ``name: Type = None`` is optional: code reads it with its own default and params.yaml
does not list it yet (when present it must be valid; null is not). Keep those few: a knob belongs in
params.yaml, where it is visible.

Adding a knob is one line in the section's class (and its value in params.yaml), e.g.::

    scenario_layer: Literal["gate", "film"]

:func:`validate_params` returns the typed :class:`Params` or raises :class:`ConfigError` with one line
per problem::

    params.yaml: finetune.temprature: unknown key (did you mean finetune.temperature?)
    params.yaml: finetune.lr: -1 is not allowed: must be > 0

``config.load_params`` calls it, so every stage checks its params when it starts, and the first stage of
dvc.yaml (``params``, ``python -m pipelines.check_params``) checks them before anything runs. Validation
only accepts or rejects: stages keep reading the plain dict, so the schema never changes a value a
stage sees.

Pure Python (pydantic only): importing it costs milliseconds.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic.fields import FieldInfo

from .config import ConfigError

# ---------------------------------------------------------------- value types

OBJECTIVE_NAMES = ("click", "long_view", "like")   # data.schema.OBJECTIVES' names (pandas-free import here)


@dataclass(frozen=True)
class Allowed:
    """What a custom type accepts, in words (used in messages)."""

    text: str


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _number(value: Any) -> float:
    # YAML 1.1 reads 1e-3 (no dot) as a string; the stages' float() accepts it, so the schema does too.
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return float(value)
    raise ValueError("must be a number")


def _yyyymmdd(value: Any) -> int | str:
    if not isinstance(value, bool) and isinstance(value, int | str):
        try:
            dt.datetime.strptime(str(value), "%Y%m%d")
            return value
        except ValueError:
            pass
    raise ValueError("must be a date YYYYMMDD (e.g. 20220505)")


def _end_date(value: Any) -> int | str:
    if value == "auto":
        return value
    try:
        return _yyyymmdd(value)
    except ValueError:
        raise ValueError("must be 'auto' (the last stored day) or a date YYYYMMDD (e.g. 20220505)") from None


REFIT_CHOICES = ("full", "holdout", "none")


def _refit(value: Any) -> bool | str:
    if isinstance(value, bool) or value in REFIT_CHOICES:
        return value
    close = difflib.get_close_matches(str(value), REFIT_CHOICES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"must be one of {', '.join(REFIT_CHOICES)}, or legacy true/false (= full/none){hint}")


Number = Annotated[float, PlainValidator(_number), Allowed("a number")]
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Positive = Annotated[Number, Field(gt=0)]
NonNeg = Annotated[Number, Field(ge=0)]
Fraction = Annotated[Number, Field(ge=0, le=1)]
Buckets = Annotated[int, Field(gt=1)]        # bucket 0 is padding: at least one real bucket
PathStr = Annotated[str, Field(min_length=1)]
Date = Annotated[int | str, PlainValidator(_yyyymmdd), Allowed("a date YYYYMMDD")]
EndDate = Annotated[int | str, PlainValidator(_end_date), Allowed("'auto' or a date YYYYMMDD")]
Refit = Annotated[bool | str, PlainValidator(_refit), Allowed(f"one of {', '.join(REFIT_CHOICES)}")]


def _unique(values: list) -> list:
    dup = sorted({str(v) for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"must not repeat an entry (repeated: {', '.join(dup)})")
    return values


Names = Annotated[list[str], Field(min_length=1), AfterValidator(_unique)]


class Section(BaseModel):
    """Every section: unknown keys are errors, types are strict (no "5" for 5, no 1 for true)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    # Transitional: dict-style reads while the readers move to attributes; removed with the last of them.
    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in type(self).model_fields else default


# ---------------------------------------------------------------- sections of params.yaml


class Synthetic(Section):
    model_config = ConfigDict(extra="forbid")
    seed: int
    users: PosInt
    items: PosInt
    scenarios: Names
    days: PosInt
    rows: NonNegInt
    start_date: Date


class Data(Section):
    model_config = ConfigDict(extra="forbid")
    source: Literal["synthetic", "kuairand"]
    kuairand_dir: PathStr
    store_dir: PathStr
    synthetic: Synthetic


class Window(Section):
    model_config = ConfigDict(extra="forbid")
    end_date: EndDate
    test_days: PosInt
    train_days: PosInt


class Scenarios(Section):
    model_config = ConfigDict(extra="forbid")
    names: Names
    min_scenario_rows: NonNegInt


class Validation(Section):
    model_config = ConfigDict(extra="forbid")
    min_rows_per_day: NonNegInt
    max_unknown_id_rate: Fraction
    max_duplicate_rate: Fraction
    min_day_ratio: NonNeg
    time_slack_hours: NonNeg
    min_time_consistency: Fraction
    min_play_time_consistency: Fraction


class Features(Section):
    model_config = ConfigDict(extra="forbid")
    seq_len: PosInt


class Model(Section):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["sass", "star", "pepnet", "dssm"]
    emb_dim: PosInt
    field_dim: PosInt
    scen_dim: PosInt
    hidden: PosInt
    layers: PosInt
    gate: Literal["adaptive", "sigmoid", "none"]
    gate_bias: Number | None
    bias_net: bool
    dropout: Annotated[Number, Field(ge=0, lt=1)]
    scenario_layer: Literal["full", "star", "lowrank"]
    residual: bool
    scenario_norm: bool
    user_buckets: Buckets
    video_buckets: Buckets
    field_buckets: Buckets


class Pretrain(Section):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    epochs: PosInt
    batch_size: PosInt
    lr: Positive
    emb_lr: Positive
    weight_decay: NonNeg
    temperature: Positive
    id_dropout: Fraction
    max_steps_per_epoch: NonNegInt
    recent_days: NonNegInt


class Finetune(Section):
    model_config = ConfigDict(extra="forbid")
    epochs: PosInt
    batch_size: PosInt
    lr: Positive
    emb_lr: Positive
    weight_decay: NonNeg
    loss: Literal["softmax", "bpr", "hinge"]
    margin: NonNeg
    negatives: PosInt
    alpha: NonNeg
    logq: bool
    temperature: Positive
    aux_weight: NonNeg
    load_pretrained: bool
    freeze_pretrained: bool
    early_stopping: bool
    patience: PosInt
    min_epochs: PosInt
    min_delta: NonNeg
    refit: Refit
    max_steps_per_epoch: NonNegInt
    recent_days: NonNegInt
    objective: Literal[OBJECTIVE_NAMES]  # type: ignore[valid-type]
    average_from: NonNegInt
    own_epoch_min_clicks: NonNegInt
    scenario_l2: NonNeg
    holdout_days: PosInt
    in_batch_negatives: bool
    prior_grid: list[NonNeg]           # candidate weights of the serving popularity prior (train.finetune)


class ObjectiveWeights(Section):
    """One non-negative weight per objective (data.schema.OBJECTIVES; tests check the names agree)."""

    model_config = ConfigDict(extra="forbid")
    click: NonNeg
    long_view: NonNeg
    like: NonNeg


class Multitask(Section):
    """The sass_mt row (models.multitask): one head per objective on the sass towers, per-request weights."""

    model_config = ConfigDict(extra="forbid")
    loss_weights: ObjectiveWeights     # lambda_k of each objective's retrieval loss
    weights: ObjectiveWeights          # the serving weights w when a request names none
    head_dim: PosInt
    hard_negatives: bool
    hard_negative_weight: Positive
    in_batch_negatives: bool           # the row's own value of finetune.in_batch_negatives
    prior_grid: list[NonNeg]           # the row's own value of finetune.prior_grid


class Ctnet(Section):
    """The ctnet row (train.ctnet): continual transfer from a daily source model to the other scenarios."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["largest", "all"]
    adapters: bool
    init: Literal["all", "embeddings", "scratch"]
    anchor_l2: NonNeg
    keep_start: bool
    adapter_lr: Positive               # the adapters' learning rate as a multiple of finetune.lr
    adapt_output: bool                 # an adapter on the last layer (the retrieval vector) too
    source_view: Literal["largest", "own"]   # the scenario the source is shown the target's rows as
    follow_source: NonNeg              # an incremental day moves each target by this times the source's update
    target_emb_lr: NonNeg              # the targets' embedding tables' learning rate, a multiple of finetune.emb_lr


class Train(Section):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["full", "incremental"]
    incremental_epochs: PosInt
    incremental_days: NonNegInt
    seed: int
    threads: PosInt
    checkpoint_every: NonNegInt
    checkpoint_seconds: NonNeg


class Index(Section):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["flat", "ivf", "hnsw"]
    nlist: NonNegInt
    nprobe: PosInt
    hnsw_m: PosInt
    ef_search: PosInt
    ef_construction: PosInt
    min_ann_size: NonNegInt
    max_train_per_list: PosInt
    seed: int


ROWS = ("popular", "dssm_mixed", "dssm_single", "sass_base", "sass", "ctnet", "sass_mt")
BENCHMARK_ROWS = ("dssm_mixed", "dssm_single", "sass_base", "ctnet", "sass_mt")
CHALLENGERS = ("dssm_mixed", "sass_base", "ctnet", "sass_mt")  # indexed and served per scenario like the candidate sass


class Evaluate(Section):
    model_config = ConfigDict(extra="forbid")
    ks: Annotated[list[PosInt], Field(min_length=1), AfterValidator(_unique)]
    rows: Annotated[list[Literal[ROWS]], Field(min_length=1), AfterValidator(_unique)]  # type: ignore[valid-type]
    # trained (stage reference@<row>) and scored only on demand: the benchmark, not the daily path
    benchmark_rows: Annotated[list[Literal[BENCHMARK_ROWS]], AfterValidator(_unique)]  # type: ignore[valid-type]
    objective_min_pairs: PosInt
    cold_max: NonNegInt
    cold_min_other: NonNegInt
    n_boot: PosInt
    level: Annotated[Number, Field(gt=0, lt=1)]
    seed: int


class Publish(Section):
    model_config = ConfigDict(extra="forbid")
    tolerance: NonNeg
    dir: PathStr
    challenger: Literal[CHALLENGERS]  # type: ignore[valid-type]


class Params(Section):
    """The whole of params.yaml."""

    model_config = ConfigDict(extra="forbid")
    data: Data
    window: Window
    scenarios: Scenarios
    validation: Validation
    features: Features
    model: Model
    pretrain: Pretrain
    finetune: Finetune
    ctnet: Ctnet
    multitask: Multitask
    train: Train
    index: Index
    evaluate: Evaluate
    publish: Publish

    def override(self, settings: dict[str, Any], source: str = "overrides") -> Params:
        """A validated copy with dotted keys replaced (``{"finetune.lr": 1e-3}``): how a benchmark variant,
        an incremental day or a test derives its params without mutating the run's."""
        doc = self.to_dict()
        for dotted, value in settings.items():
            node = doc
            *head, last = dotted.split(".")
            for part in head:
                node = node.setdefault(part, {})
            node[last] = value
        return validate_params(doc, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping, as params.yaml would hold it (for writing a params file of a derived run)."""
        return self.model_dump(mode="python")


# ---------------------------------------------------------------- validation and messages


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> Params:
    """``params`` as :class:`Params`, or :class:`ConfigError` with one line per problem."""
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {_show(params)}")
    try:
        return Params.model_validate(params)
    except ValidationError as exc:
        lines = list(dict.fromkeys(f"{source}: {problem}" for problem in problems(exc)))
        raise ConfigError("\n".join(lines)) from None


def known_keys(model: type[BaseModel] = Params, prefix: str = "", optional: bool | None = None) -> list[str]:
    """Leaf keys of the schema, dotted (``finetune.lr``, ``data.synthetic.seed``...): all of them, or only
    the optional (``optional=True``) or required (``optional=False``) ones."""
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += known_keys(sub, key + ".", optional)
        elif optional is None or optional == (not info.is_required()):
            out.append(key)
    return out


def problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        key = _dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            out.append(f"{key}: unknown key{_did_you_mean(loc)}")
            continue
        ann, meta = _annotation_at(loc)
        if kind == "missing":
            out.append(f"{key}: missing (must be {_describe(ann, meta)})")
            continue
        out.append(f"{key}: {_show(err['input'])} is not allowed: {_allowed(err, ann, meta)}")
    return out


def _dotted(loc: tuple) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping {" + ", ".join(map(str, value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _allowed(err: dict, ann: Any, meta: list) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    text = f"must be {_describe(ann, meta)}"
    if kind == "literal_error":
        close = difflib.get_close_matches(str(err["input"]), [str(c) for c in _choices(ann)], n=1)
        if close:
            text += f" (did you mean {close[0]}?)"
    return text


def _split(ann: Any) -> tuple[Any, list]:
    """Annotated[T, m1, m2] -> (T, [m1, m2]), flattening nested Annotated and FieldInfo metadata."""
    meta: list = []
    while typing.get_origin(ann) is Annotated:
        args = typing.get_args(ann)
        ann, extra = args[0], list(args[1:])
        meta = extra + meta
    flat = []
    for m in meta:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    return ann, flat


def _annotation_at(loc: tuple) -> tuple[Any, list]:
    """The annotation (and constraint metadata) of the schema node at ``loc``."""
    ann: Any = Params
    meta: list = []
    for part in loc:
        ann, more = _split(ann)
        meta = more if more else meta
        if isinstance(part, str) and isinstance(ann, type) and issubclass(ann, BaseModel):
            info = ann.model_fields.get(part)
            if info is None:
                return None, []
            ann, meta = _split(info.annotation)
            meta = list(info.metadata) + meta
        elif isinstance(part, int) and typing.get_origin(ann) is list:
            ann, meta = _split(typing.get_args(ann)[0])
        else:
            break
    return ann, meta


def _choices(ann: Any) -> tuple:
    ann, _ = _split(ann)
    return typing.get_args(ann) if typing.get_origin(ann) is Literal else ()


def _describe(ann: Any, meta: list) -> str:
    ann, more = _split(ann)
    meta = list(meta) + more
    for m in meta:
        if isinstance(m, Allowed):
            text = m.text
            break
    else:
        origin = typing.get_origin(ann)
        args = typing.get_args(ann)
        if origin in (typing.Union, types.UnionType) and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            return f"{_describe(rest[0], [])} or null"
        if origin is Literal:
            return "one of " + ", ".join(map(str, args))
        if origin is list:
            text = f"a list (each entry {_describe(args[0], [])})"
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            return "a mapping with keys " + ", ".join(ann.model_fields)
        else:
            text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(ann, str(ann))
    bounds = []
    for m in meta:
        for cls, sym, attr in ((annotated_types.Gt, ">", "gt"), (annotated_types.Ge, ">=", "ge"),
                               (annotated_types.Lt, "<", "lt"), (annotated_types.Le, "<=", "le")):
            if isinstance(m, cls):
                bounds.append(f"{sym} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen) and m.min_length > 0:
            bounds.append("non-empty")
    return text + (" " + " and ".join(bounds) if bounds else "")


def _did_you_mean(loc: tuple) -> str:
    parent, _ = _annotation_at(loc[:-1])
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {_dotted((*loc[:-1], close[0]))}?)" if close else ""
