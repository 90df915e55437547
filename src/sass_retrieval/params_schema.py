"""The schema of params.yaml: every key, its type, what values it allows, its default and what it does.

Each knob is declared once, here: ``name: Type = Field(default, description="...")``. params.yaml lists
every key again with the value of this run (a key missing from the file is an error, not a silent
default: what a run used is always in the file DVC tracks); the defaults are what code that builds a
section without a file gets (``Finetune()``, ``Params().override({...})`` in tests and benchmarks), and
tests/test_params_schema.py checks that they are the values params.yaml ships. Adding a knob is one line
in its section (and its value in params.yaml), e.g.::

    scenario_layer: Literal["gate", "film"] = Field("gate", description="how scenario layers are built")

:func:`validate_params` returns the typed :class:`Params` or raises :class:`ConfigError` with one line
per problem::

    params.yaml: finetune.temprature: unknown key (did you mean finetune.temperature?)
    params.yaml: finetune.lr: -1 is not allowed: must be > 0

``config.load_params`` calls it, so every stage checks its params when it starts, and the first stage of
dvc.yaml (``params``, ``python -m pipelines.check_params``) checks them before anything runs. Code reads
attributes of the returned model (``params.finetune.lr``); a derived run (an incremental day, a row's own
value of a knob) is a validated copy (:meth:`Params.override`, or ``section.model_copy(update=...)``).
The row names come from the row registry (``sass_retrieval.rows``).

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

from .config import ConfigError, set_dotted
from .rows import BENCHMARK_ROWS, CHALLENGERS, ROWS

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
Unit = Annotated[Number, Field(ge=0, le=1)]
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

    # validate_default: a default goes through the same checks (and conversions: 1 -> 1.0) as a file's value
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, validate_default=True)


# ---------------------------------------------------------------- sections of params.yaml
#
# One line per knob: its type, its default (the value params.yaml ships) and what it does. params.yaml
# lists every key again, with its value for this run; tests/test_params_schema.py checks that the two agree
# where the file keeps the default. Measurements behind a value: docs/lab/params-history.md.


class Synthetic(Section):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(7, description="seed of the synthetic world and its daily logs")
    users: PosInt = Field(3000, description="number of users")
    items: PosInt = Field(1500, description="number of videos")
    scenarios: Names = Field(["s0", "s1", "s2", "s3", "s4"],
                             description="raw scenario names: the first two large, the rest small and sparse")
    days: PosInt = Field(15, description="days the generator's configured range spans from start_date")
    rows: NonNegInt = Field(300000, description="exposure rows over the whole range")
    start_date: Date = Field(20220425, description="first day of the configured range (YYYYMMDD)")


class Data(Section):
    model_config = ConfigDict(extra="forbid")
    source: Literal["synthetic", "kuairand"] = Field("synthetic", description="where ingest reads the raw logs")
    kuairand_dir: PathStr = Field("../shared/data/kuairand_pure",
                                  description="the KuaiRand release folder (read-only), relative to params.yaml")
    store_dir: PathStr = Field("data/store", description="the canonical daily-partitioned Parquet store")
    memory_limit_mib: PosInt = Field(3072, description="memory the data engine (DuckDB) may hold per stage; "
                                                       "beyond it, it spills to disk")
    synthetic: Synthetic = Field(default_factory=Synthetic, description="the synthetic generator's configuration")


class Window(Section):
    model_config = ConfigDict(extra="forbid")
    end_date: EndDate = Field("auto", description="last day of data (YYYYMMDD), or auto: the last stored day")
    test_days: PosInt = Field(3, description="the evaluation window: the last test_days days")
    train_days: PosInt = Field(8, description="the training window: the train_days days before it")


class Scenarios(Section):
    model_config = ConfigDict(extra="forbid")
    names: Names = Field(["s0", "s1", "s2", "s3", "s4"],
                         description="the reported scenarios; other raw scenarios map to 'other'")
    min_scenario_rows: NonNegInt = Field(1000, description="a raw scenario with fewer training rows maps to 'other'")


class Validation(Section):
    model_config = ConfigDict(extra="forbid")
    min_rows_per_day: NonNegInt = Field(100, description="a day with fewer rows fails")
    max_unknown_id_rate: Fraction = Field(0.01, description="largest share of rows with a user or video id not in the tables")
    max_duplicate_rate: Fraction = Field(0.05, description="largest share of duplicated rows")
    min_day_ratio: NonNeg = Field(0.2, description="a day with fewer rows than this times the window's median fails")
    time_slack_hours: NonNeg = Field(1.0, description="time_ms may precede 00:00 of its date by this much "
                                                      "(KuaiRand dates rows by hour bucket)")
    min_time_consistency: Fraction = Field(0.999, description="share of rows whose time_ms must fall inside their "
                                                               "date (with the slack)")
    min_play_time_consistency: Fraction = Field(0.999, description="share of rows whose play_time_ms must agree "
                                                                    "with long_view")
    sample_rows: PosInt = Field(100000, description="rows per scenario and day range drawn (seeded) for the Great "
                                                    "Expectations suites; the cheap checks read every row")
    sample_seed: int = Field(0, description="seed of the validation sample")


class Features(Section):
    model_config = ConfigDict(extra="forbid")
    seq_len: PosInt = Field(20, description="last N clicked videos per user and scenario")


class Model(Section):
    model_config = ConfigDict(extra="forbid")
    arch: Literal["sass", "star", "pepnet", "dssm", "senet", "dat", "parallel"] = Field(
        "sass", description="the sass family's tower (models/tower.py, models/pepnet.py; the plain two-tower's "
                            "variants models/senet.py, models/dat.py, models/parallel_tower.py); the other rows fix theirs")
    emb_dim: PosInt = Field(32, description="size of the id and field embeddings")
    field_dim: PosInt = Field(8, description="size of each categorical profile field's embedding")
    scen_dim: PosInt = Field(8, description="size of the scenario embedding fed to both towers")
    hidden: PosInt = Field(64, description="width of the tower layers")
    layers: PosInt = Field(3, description="tower layers")
    gate: Literal["adaptive", "sigmoid", "none"] = Field("adaptive", description="the transfer gates' kind")
    gate_bias: Number | None = Field(None, description="initial bias of the transfer gates (null: default init; > 0: "
                                                       "start as the global net)")
    bias_net: bool = Field(True, description="a scenario bias network beside the towers")
    dropout: Annotated[Number, Field(ge=0, lt=1)] = Field(0.0, description="dropout of the tower layers")
    scenario_layer: Literal["full", "star", "lowrank"] = Field(
        "star", description="how each scenario's layers are parameterised (models/tower.py ScenarioLinear)")
    residual: bool = Field(True, description="serving vector = normalize(g_L + h_s,L + P b_s): the global vector "
                                             "reaches it unchanged")
    scenario_norm: bool = Field(False, description="STAR's partitioned normalisation of the sass tower input")
    user_buckets: Buckets = Field(100003, description="rows of the hashed user-id table (new ids never crash)")
    video_buckets: Buckets = Field(100003, description="rows of the hashed video-id table")
    field_buckets: Buckets = Field(4099, description="rows of the hashed profile-field table")
    dat_weight: NonNeg = Field(0.5, description="arch dat: weight of the mimic loss pulling each augment vector "
                                                "towards the other tower's output on positive pairs (models/dat.py)")
    dcn_depth: PosInt = Field(2, description="arch parallel: cross layers of the DCN tower (models/parallel_tower.py)")


class Pretrain(Section):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="run the cross-scenario contrastive pretraining (off: sass starts "
                                             "from the seeded initial model)")
    epochs: PosInt = Field(3, description="pretraining epochs")
    batch_size: PosInt = Field(512, description="pairs per batch")
    lr: Positive = Field(0.001, description="learning rate of the dense layers (Adam)")
    emb_lr: Positive = Field(0.001, description="learning rate of the hashed embedding tables (SparseAdam)")
    weight_decay: NonNeg = Field(0.0, description="weight decay of the dense layers")
    temperature: Positive = Field(0.1, description="temperature of the NT-Xent loss")
    id_dropout: Fraction = Field(0.5, description="chance that a view's id embedding is masked")
    max_steps_per_epoch: NonNegInt = Field(0, description="0 = no cap (smoke runs cap it)")
    recent_days: NonNegInt = Field(0, description="newest n training days only; 0 = all (incremental days set it)")


class Finetune(Section):
    model_config = ConfigDict(extra="forbid")
    epochs: PosInt = Field(8, description="fine-tuning epochs (at most, with early stopping)")
    batch_size: PosInt = Field(512, description="positives per batch")
    lr: Positive = Field(0.0005, description="learning rate of the dense layers (Adam)")
    emb_lr: Positive = Field(0.002, description="learning rate of the hashed embedding tables (SparseAdam)")
    weight_decay: NonNeg = Field(0.0, description="weight decay of the dense layers")
    loss: Literal["softmax", "bpr", "hinge"] = Field("softmax", description="the retrieval loss")
    margin: NonNeg = Field(0.2, description="margin of the hinge loss")
    negatives: PosInt = Field(256, description="sampled negatives shared per scenario and batch")
    alpha: NonNeg = Field(1.0, description="sampling probability ~ exposures^alpha (1 = SASS rule, 0 = uniform)")
    logq: bool = Field(True, description="log-Q correction of the sampled softmax")
    in_batch_negatives: bool = Field(True, description="the batch's other positives of the same scenario are "
                                                       "negatives too (train/sampler.py)")
    prior_grid: list[NonNeg] = Field([0.0025, 0.005, 0.01, 0.02, 0.04, 0.08],
                                     description="candidate weights of the serving popularity prior, chosen per "
                                                 "scenario on the held-out day; [] = no prior")
    temperature: Positive = Field(0.02, description="temperature of the softmax")
    aux_weight: NonNeg = Field(1.0, description="lambda: weight of the loss on the global vectors")
    load_pretrained: bool = Field(True, description="sass starts from the pretraining stage's model")
    freeze_pretrained: bool = Field(False, description="freeze what pretraining produced but the top layers")
    early_stopping: bool = Field(True, description="select the epoch on the held-out newest training days")
    patience: PosInt = Field(3, description="epochs without a gain before early stopping stops")
    holdout_days: PosInt = Field(1, description="the newest training days early stopping holds out")
    min_epochs: PosInt = Field(4, description="never stop early before this many epochs")
    own_epoch_min_clicks: NonNegInt = Field(1000, description="a scenario with this many held-out clicks keeps its "
                                                              "own best epoch (model_<scenario>.pt); 0 = off")
    scenario_l2: NonNeg = Field(0.01, description="pull of every scenario layer toward the global layer; 0 = off")
    min_delta: NonNeg = Field(0.0, description="a validation gain must exceed this to count")
    refit: Refit = Field("holdout", description="after selection: holdout (best epoch + 1 epoch on the held-out "
                                                "days) | full (retrain on every day) | none")
    max_steps_per_epoch: NonNegInt = Field(0, description="0 = no cap (smoke runs cap it)")
    recent_days: NonNegInt = Field(0, description="newest n training days only; 0 = all (incremental days set it)")
    objective: Literal[OBJECTIVE_NAMES] = Field(  # type: ignore[valid-type]
        "click", description="the label the single-objective rows train on")
    average_from: NonNegInt = Field(0, description="from this epoch on, keep the mean of the epoch-end weights "
                                                   "(train/averaging.py); 0 = off")


class ObjectiveWeights(Section):
    """One non-negative weight per objective (data.schema.OBJECTIVES; tests check the names agree). No defaults
    of their own: each field holding a mapping of weights carries its default mapping."""

    model_config = ConfigDict(extra="forbid")
    click: NonNeg = Field(description="weight of the click objective")
    long_view: NonNeg = Field(description="weight of the long-view objective")
    like: NonNeg = Field(description="weight of the like objective")


class Multitask(Section):
    """The sass_mt row (models.multitask): one head per objective on the sass towers, per-request weights."""

    model_config = ConfigDict(extra="forbid")
    loss_weights: ObjectiveWeights = Field(
        default_factory=lambda: ObjectiveWeights(click=1.0, long_view=1.0, like=0.5),
        description="lambda_k: each objective's share of the training loss")
    weights: ObjectiveWeights = Field(
        default_factory=lambda: ObjectiveWeights(click=1.0, long_view=0.5, like=0.0),
        description="the serving weights when a request names none")
    head_dim: PosInt = Field(32, description="per-objective vector size; the index holds objectives x head_dim")
    hard_negatives: bool = Field(True, description="an objective's loss also ranks its positives above the batch's "
                                                   "items engaged with but negative for it")
    hard_negative_weight: Positive = Field(4.0, description="each hard negative counts this many times in its "
                                                            "objective's softmax")
    in_batch_negatives: bool = Field(False, description="this row's finetune.in_batch_negatives")
    prior_grid: list[NonNeg] = Field([], description="this row's finetune.prior_grid (none: a request's weights "
                                                     "rescale the score, a prior would not follow)")


class Distill(Section):
    """Distillation from the pre-ranker (train.distill): the shared single-objective rows (dssm_mixed, sass_base,
    sass) add lambda x T^2 x KL(teacher || student) over each sampled (day, scenario, user) group of exposures."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="add the distillation term to the shared single-objective rows' loss")
    weight: NonNeg = Field(1.0, description="lambda: the distillation term's weight beside the retrieval loss")
    temperature: Positive = Field(2.0, description="T: both score lists are softened by it; the term is scaled by "
                                                   "T^2")
    max_group: PosInt = Field(20, description="exposures kept per (day, scenario, user) group (a seeded choice)")
    groups_per_step: PosInt = Field(256, description="groups sampled from the batch's day at every step")
    teacher: PathStr = Field("rank/teacher_scores.parquet", description="the teacher-score table of the training "
                                                                        "window's exposures (the rank stage's)")


class Ctnet(Section):
    """The ctnet row (train.ctnet): continual transfer from a daily source model to the other scenarios."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["largest", "all"] = Field("largest", description="the scenarios the source trains on: the one "
                                                                     "with the most clicks (it serves it) | all")
    adapters: bool = Field(True, description="targets read the frozen source through gated adapters (false: plain "
                                             "pretrain-then-finetune from the source)")
    init: Literal["all", "embeddings", "scratch"] = Field(
        "all", description="what of the source a first day's target starts from")
    anchor_l2: NonNeg = Field(0.0, description="pull of each target's tower weights toward its warm start (L2-SP, "
                                               "adapters only); 0 = off")
    keep_start: bool = Field(True, description="early stopping may keep a target as it started (epoch 0)")
    adapter_lr: Positive = Field(0.1, description="the adapters' learning rate as a multiple of finetune.lr")
    adapt_output: bool = Field(False, description="an adapter on the last layer (the retrieval vector) too")
    source_view: Literal["largest", "own"] = Field(
        "own", description="the scenario the frozen source is shown a target's rows as")
    follow_source: NonNeg = Field(0.5, description="an incremental day first moves each target by this times the "
                                                   "source's own update of the day; 0 = off")
    target_emb_lr: NonNeg = Field(1.0, description="the targets' embedding tables' learning rate as a multiple of "
                                                   "finetune.emb_lr (adapters only; 0 freezes them)")


class Train(Section):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["full", "incremental"] = Field("full", description="full | incremental (warm start from the "
                                                                     "published model)")
    incremental_epochs: PosInt = Field(2, description="epochs of an incremental day")
    incremental_days: NonNegInt = Field(1, description="newest training days an incremental day trains on (0 = "
                                                       "whole window)")
    seed: int = Field(0, description="seed of every trainer")
    threads: PosInt = Field(1, description="torch and FAISS threads per stage")
    checkpoint_every: NonNegInt = Field(200, description="steps between resume checkpoints (and every epoch end)")
    checkpoint_seconds: NonNeg = Field(30, description="a resume checkpoint only when this many seconds have "
                                                       "passed since the last; 0 = every time")
    nodes: PosInt = Field(1, description="machines a training stage runs on (torchrun --nnodes)")
    procs_per_node: PosInt = Field(1, description="training processes per machine (torchrun --nproc-per-node)")
    rendezvous: str = Field("127.0.0.1:29400", description="host:port of the c10d rendezvous when nodes > 1")
    input: Literal["memory", "stream"] = Field("memory", description="memory (every positive in the feature bank) | "
                                                                    "stream (fine-tuning reads the positives' row "
                                                                    "groups from disk, train.stream)")
    shuffle_buffer: PosInt = Field(65536, description="rows the streamed input shuffles among before a batch "
                                                      "leaves (train.input: stream)")


class Index(Section):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["flat", "ivf", "hnsw"] = Field("flat", description="flat (exact) | ivf | hnsw")
    nlist: NonNegInt = Field(0, description="IVF lists; 0 = about 4*sqrt(pool size)")
    nprobe: PosInt = Field(16, description="IVF lists searched per query")
    hnsw_m: PosInt = Field(32, description="HNSW neighbours per node")
    ef_search: PosInt = Field(128, description="HNSW search breadth")
    ef_construction: PosInt = Field(200, description="HNSW construction breadth")
    min_ann_size: NonNegInt = Field(2000, description="smaller pools get an exact flat index whatever kind says")
    max_train_per_list: PosInt = Field(256, description="IVF k-means trains on at most this many points per list")
    seed: int = Field(1234, description="IVF training sample and k-means seed")


RANK_FEATURE_NAMES = ("user_tag_clicks", "user_tag_exposures", "user_tag_ctr", "user_author_clicks",
                      "user_author_exposures", "user_author_ctr", "user_scenario_share", "item_scenario_ctr",
                      "item_scenario_exposures", "duration_bucket", "video_type", "upload_type", "retrieval_score")
"""rank.features.FEATURES' names (pandas-free import here; tests check the two agree)."""


def _feature_sets(value: Any) -> str | list:
    if value == "auto":
        return value
    if isinstance(value, list) and value and all(isinstance(s, list) and s for s in value):
        unknown = sorted({str(n) for s in value for n in s if n not in RANK_FEATURE_NAMES})
        if unknown:
            raise ValueError(f"unknown feature name(s) {', '.join(unknown)}: each must be one of "
                             f"{', '.join(RANK_FEATURE_NAMES)}")
        if any(len(set(s)) != len(s) for s in value):
            raise ValueError("a feature set must not repeat a feature")
        return value
    raise ValueError("must be 'auto' (COLD selection) or a non-empty list of non-empty lists of feature names")


FeatureSets = Annotated[str | list, PlainValidator(_feature_sets), Allowed("'auto' or a list of feature-name lists")]


class Rank(Section):
    """The pre-ranker (rank/): rescores each scenario's retrieved top_k with cross features, serves serve_k."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="rescore retrieval's candidates with the pre-ranker (false: retrieval "
                                            "order is served)")
    top_k: PosInt = Field(200, description="retrieved candidates the pre-ranker rescores per request")
    serve_k: PosInt = Field(50, description="candidates served after rescoring")
    emb_dim: PosInt = Field(8, description="size of each feature's field vector")
    hidden: Annotated[list[PosInt], Field(min_length=1)] = Field([64, 32], description="widths of the MLP layers")
    epochs: PosInt = Field(4, description="training epochs (at most, with early stopping)")
    batch_size: PosInt = Field(1024, description="exposures per batch")
    lr: Positive = Field(0.002, description="learning rate (Adam)")
    patience: PosInt = Field(1, description="epochs without a validation GAUC gain before training stops")
    latency_budget_ms: Positive = Field(5.0, description="per request of top_k candidates, features + model, one "
                                                         "thread: the feature sets within it are eligible")
    feature_sets: FeatureSets = Field("auto", description="auto: COLD selection (importance-ranked nested sets) | "
                                                          "a list of feature-name lists to compare")
    importance: Literal["se", "permutation"] = Field("se", description="how features are ranked: the SE block's "
                                                                       "field weights | permutation GAUC drop")
    train_on: Literal["candidates", "exposures"] = Field(
        "candidates", description="the training rows: retrieval's candidates labelled by the day's clicks "
                                  "(rank/candidates.py) | the logged exposures (COLD's)")
    negatives: PosInt = Field(50, description="sampled non-clicked candidates kept per request (train_on: candidates)")
    loss: Literal["pointwise", "listwise"] = Field(
        "listwise", description="pointwise: BCE per row | listwise: softmax over each request's rows")


def _feature_list(value: Any) -> list:
    if isinstance(value, list) and value and all(isinstance(n, str) for n in value):
        unknown = sorted({n for n in value if n not in RANK_FEATURE_NAMES})
        if unknown:
            raise ValueError(f"unknown feature name(s) {', '.join(unknown)}: each must be one of "
                             f"{', '.join(RANK_FEATURE_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a feature")
        return value
    raise ValueError("must be a non-empty list of feature names")


FeatureList = Annotated[list, PlainValidator(_feature_list), Allowed("a list of feature names")]


class RerankWeights(Section):
    """Default preference weights of the re-ranker's goals (a request's ``weights=`` overrides any of them)."""

    model_config = ConfigDict(extra="forbid")
    click: Unit = Field(1.0, description="expected clicks over the list (position-discounted)")
    like: Unit = Field(0.3, description="expected likes over the list (position-discounted)")
    diversity: Unit = Field(0.3, description="distinct primary tags among the list's slots")
    cold_start: Unit = Field(0.1, description="share of slots holding an item with <= cold_max window exposures")


class Rerank(Section):
    """The list re-ranker (rerank/): the top candidates become the served list under per-request goal weights."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="build the served list with the generator (false: the upstream order)")
    candidates: PosInt = Field(50, description="candidates per request the list is built from")
    length: PosInt = Field(10, description="slots of the served list")
    cold_max: NonNegInt = Field(5, description="an item with at most this many exposures in the training window "
                                               "is cold-start")
    features: FeatureList = Field(
        ["retrieval_score", "user_tag_clicks", "user_tag_exposures", "user_tag_ctr", "user_author_clicks",
         "user_author_exposures", "user_author_ctr", "user_scenario_share"],
        description="the evaluator's per-item features (rank/features.py): the retrieval score and the user's "
                    "cross features; the item's popularity in the window does not carry to later days")
    max_run: PosInt = Field(2, description="hard rule: at most this many adjacent items of one primary tag")
    weights: RerankWeights = Field(default_factory=RerankWeights, description="default goal weights")
    epochs: PosInt = Field(20, description="REINFORCE epochs (the epoch with the best held-out advantage is kept)")
    batch_size: PosInt = Field(64, description="requests per batch; one weight vector is drawn per batch")
    lr: Positive = Field(0.002, description="learning rate (Adam)")
    hidden: PosInt = Field(64, description="the generator's encoder and decoder width")
    pointer: PosInt = Field(32, description="width of the pointer layer the hypernetwork makes from the weights")
    train_requests: PosInt = Field(20000, description="at most this many requests of the held-out day train the "
                                                      "generator (a seeded sample)")


class Evaluate(Section):
    model_config = ConfigDict(extra="forbid")
    ks: Annotated[list[PosInt], Field(min_length=1), AfterValidator(_unique)] = Field(
        [20, 50, 100], description="cut-offs of every metric")
    rows: Annotated[list[Literal[ROWS]], Field(min_length=1), AfterValidator(_unique)] = Field(  # type: ignore[valid-type]
        ["popular", "dssm_mixed", "sass"], description="rows scored every day (the candidate, the challenger, popular)")
    benchmark_rows: Annotated[list[Literal[BENCHMARK_ROWS]], AfterValidator(_unique)] = Field(  # type: ignore[valid-type]
        [], description="rows trained (stage reference@<row>) and scored on demand, off the daily path")
    objective_min_pairs: PosInt = Field(100, description="a scenario enters an objective's table from this many "
                                                         "evaluation pairs")
    cold_max: NonNegInt = Field(5, description="scenario_cold slice: fewer than this many training rows in the "
                                               "scenario...")
    cold_min_other: NonNegInt = Field(5, description="...and at least this many in the other scenarios")
    n_boot: PosInt = Field(2000, description="paired bootstrap replicates of the confidence intervals")
    level: Annotated[Number, Field(gt=0, lt=1)] = Field(0.95, description="confidence level")
    seed: int = Field(0, description="bootstrap resampling seed")


class Publish(Section):
    model_config = ConfigDict(extra="forbid")
    challenger: Literal[CHALLENGERS] = Field(  # type: ignore[valid-type]
        "dssm_mixed", description="trained daily beside the candidate sass; the better of the two may be published")
    tolerance: NonNeg = Field(0.005, description="when the model in service can not be re-scored: publish unless "
                                                 "macro NDCG@50 falls more than this below its recorded number")
    dir: PathStr = Field("published", description="where published models and indexes go")


class Orchestration(Section):
    """How the Airflow DAG runs the stages; read when the DAG file is parsed, so no stage depends on it."""

    model_config = ConfigDict(extra="forbid")
    train_queue: str = Field("train", min_length=1, description="Celery queue of the training tasks (workers "
                                                                "started with -q train take them)")
    max_active_runs: PosInt = Field(3, description="days at once when tasks have workspaces of their own "
                                                   "(train.mode full); 1 otherwise")
    retry_delay_seconds: PosInt = Field(120, description="a failed task's first retry waits this long, "
                                                         "doubling up to 30 min")


class Params(Section):
    """The whole of params.yaml."""

    model_config = ConfigDict(extra="forbid")
    data: Data = Field(default_factory=Data, description="raw data and the store")
    window: Window = Field(default_factory=Window, description="the run's days")
    scenarios: Scenarios = Field(default_factory=Scenarios, description="the reported scenarios")
    validation: Validation = Field(default_factory=Validation, description="the data checks' thresholds")
    features: Features = Field(default_factory=Features, description="per-scenario features")
    model: Model = Field(default_factory=Model, description="the towers' shape")
    pretrain: Pretrain = Field(default_factory=Pretrain, description="stage 1: contrastive pretraining")
    finetune: Finetune = Field(default_factory=Finetune, description="stage 2: fine-tuning every trained row")
    ctnet: Ctnet = Field(default_factory=Ctnet, description="the ctnet row")
    multitask: Multitask = Field(default_factory=Multitask, description="the sass_mt row")
    distill: Distill = Field(default_factory=Distill, description="distillation from the pre-ranker")
    train: Train = Field(default_factory=Train, description="run mode, seed and resources of the training stages")
    index: Index = Field(default_factory=Index, description="the FAISS indexes")
    rank: Rank = Field(default_factory=Rank, description="the pre-ranker rescoring retrieval's candidates")
    rerank: Rerank = Field(default_factory=Rerank, description="the list re-ranker under per-request goal weights")
    evaluate: Evaluate = Field(default_factory=Evaluate, description="the evaluation protocol")
    publish: Publish = Field(default_factory=Publish, description="the publish gate")
    orchestration: Orchestration = Field(default_factory=Orchestration, description="the Airflow DAG's "
                                                                                 "queues, concurrency and retries")

    def override(self, settings: dict[str, Any], source: str = "overrides") -> Params:
        """A validated copy with dotted keys replaced (``{"finetune.lr": 1e-3}``): how a benchmark variant,
        an incremental day or a test derives its params without mutating the run's."""
        doc = self.to_dict()
        for dotted, value in settings.items():
            set_dotted(doc, dotted, value)
        return validate_params(doc, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping, as params.yaml would hold it (for writing a params file of a derived run)."""
        return self.model_dump(mode="python")


# ---------------------------------------------------------------- validation and messages


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> Params:
    """``params`` as :class:`Params`, or :class:`ConfigError` with one line per problem. Every key must be
    present: a file that leaves one out is refused, naming it, rather than run on the default."""
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {_show(params)}")
    found = [(loc, f"{_dotted(loc)}: missing (must be {_describe(*_annotation_at(loc))})")
             for loc in missing_keys(params)]
    try:
        validated = Params.model_validate(params)
    except ValidationError as exc:
        found += problems(exc)
    else:
        if not found:
            return validated
    found.sort(key=lambda item: _position(item[0]))
    lines = list(dict.fromkeys(f"{source}: {problem}" for _, problem in found))
    raise ConfigError("\n".join(lines))


def missing_keys(doc: Any, model: type[BaseModel] = Params, loc: tuple = ()) -> list[tuple]:
    """Where the schema has a key that ``doc`` (a params mapping) leaves out, as locations."""
    if not isinstance(doc, dict):
        return []
    out: list[tuple] = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if name not in doc:
            out.append((*loc, name))
        elif isinstance(sub, type) and issubclass(sub, BaseModel):
            out += missing_keys(doc[name], sub, (*loc, name))
    return out


def known_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Leaf keys of the schema, dotted (``finetune.lr``, ``data.synthetic.seed``...)."""
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += known_keys(sub, key + ".")
        else:
            out.append(key)
    return out


def problems(exc: ValidationError) -> list[tuple[tuple, str]]:
    """(location, the problem's line) of every error pydantic found."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        key = _dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            out.append((loc, f"{key}: unknown key{_did_you_mean(loc)}"))
            continue
        ann, meta = _annotation_at(loc)
        if kind == "missing":
            out.append((loc, f"{key}: missing (must be {_describe(ann, meta)})"))
            continue
        out.append((loc, f"{key}: {_show(err['input'])} is not allowed: {_allowed(err, ann, meta)}"))
    return out


def _position(loc: tuple) -> tuple:
    """Sort key of a location: the schema's field order (a list entry by its index, an unknown key last)."""
    model: Any = Params
    out = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            continue
        fields = list(getattr(model, "model_fields", {}))
        out.append(fields.index(part) if part in fields else len(fields))
        info = getattr(model, "model_fields", {}).get(part)
        model = _split(info.annotation)[0] if info is not None else None
    return tuple(out)


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
