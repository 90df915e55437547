"""sass_daily: the daily retrain, derived from dvc.yaml (no second hand-written graph).

    configure -> <one task per dvc.yaml stage; foreach stages are mapped over their items> -> record_run

- Tasks and edges come from DVC's own index of dvc.yaml (``dvc.repo.Repo(root).index.graph``) through
  ``sass_retrieval.orchestration.dvc_graph``: add a stage to dvc.yaml and it appears here. A foreach stage
  (``split``, ``index``; ``reference`` when evaluate.benchmark_rows lists rows) is one mapped task,
  ``.expand(item=[...])``, whose instances run in parallel.
- Each task runs the stage's resolved cmd itself, then records it in dvc.lock with ``dvc commit`` under a
  process-level file lock (``sass_retrieval.runlock.dvc_lock``), so parallel instances never fight over
  DVC's repo lock.
- ``configure`` writes the run's day (the date of data_interval_start, or the ``end_date`` param) into
  params.yaml ``window.end_date``; ``record_run`` pushes the DVC cache and commits dvc.lock, params.yaml
  and the metrics to git as tag ``day-YYYYMMDD`` (``dvc metrics diff day-A day-B``, ``sass runs list``).
- A failing stage fails its task; downstream tasks (publish included) do not run, so the published
  model stays in service. Exit codes 2 (bad input: the data does not validate), 3 (bad config:
  params.yaml does not validate, the ``params`` stage right after ``configure``) and 4 (a missing
  prerequisite) are not retried (``sass_retrieval.errors``, docs/errors.md).
- The task of the ``publish`` stage announces a published version as the Airflow Asset
  ``sass_published_model`` (uri ``sass://published-model``), through its outlet, the AssetAlias
  ``sass_published_model_events``: one event per publish, none when the gate keeps the model in service.
  The event's metadata: version, path, row, macro NDCG@50, dvc.lock hash, git commit, the day's tag
  (``sass_retrieval.orchestration.assets``; consumer example: dags/sass_serving_reload.py).
- ``end_date`` 'auto' (the source's last day) is resolved by ``record_run`` after the stages ran, so
  that day is recorded under its date. On the embedded synthetic default any day works: ingest
  generates the days of the run's window (deterministically, per day), so an unpaused DAG runs daily.

- With ``SASS_TASK_WORKSPACES=1`` on every component (a pool of Celery workers that share no disk,
  ``make airflow-cluster``, docs/cluster.md) each task runs in a workspace of its own
  (``sass_retrieval.orchestration.workspace``): a clean checkout of the run's commit, inputs pulled from the
  DVC remote, outputs pushed back, dvc.lock entries handed on as XCom; ``record_run`` assembles the day's
  dvc.lock and pushes the run's tags to the project's repository. Training tasks go to the Celery queue
  ``orchestration.train_queue``; in full mode ``orchestration.max_active_runs`` days run at once, and one
  publish task runs at a time.
- Training on several machines (``train.nodes`` > 1): each training stage's task starts torchrun itself
  (``sass_retrieval.train.launch``), and a mapped task ``<stage>_node`` over node ranks 1..nodes-1, on the
  train queue too, runs the same stage cmd on other workers as joining nodes (``SASS_TRAIN_JOINING=1``: no
  ``dvc commit``, no push, no output kept). All of them meet at ``train.rendezvous`` under one rendezvous id,
  ``SASS_RDZV_ID`` = the run id + the stage. They must run at once: the train queue needs at least
  ``train.nodes`` free slots (a worker per node, the rendezvous host among them), or the rendezvous times out.

The project folder is $SASS_PROJECT_DIR, else the folder above this file. Heavy libraries (torch,
great_expectations, dvc) are only imported inside the tasks: parsing this file reads the stage graph from
.dvc/tmp/sass-dag-graph.json, which a subprocess regenerates with DVC when dvc.yaml or params.yaml changed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, get_current_context, task

ROOT = Path(os.environ.get("SASS_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from sass_retrieval.orchestration import dvc_graph, workspace  # noqa: E402  (light: DVC runs in a subprocess)
from sass_retrieval.orchestration.assets import (  # noqa: E402  (no heavy import)
    PUBLISH_STAGE,
    published_model_alias,
    published_model_asset,
)

DAG_ID = "sass_daily"
CONFIGURE, RECORD = "configure", "record_run"
GRAPH = dvc_graph.load_graph(ROOT)
GROUPS = dvc_graph.task_groups(GRAPH)
WORKSPACES = workspace.enabled()
PUBLISHED_MODEL, PUBLISHED_EVENTS = published_model_asset(), published_model_alias()
log = logging.getLogger("sass.dag")


def _orchestration():
    """params.yaml's ``orchestration`` section; its defaults when the file does not validate (the ``params``
    task then fails the run with the one-line reason, instead of the DAG failing to import)."""
    from sass_retrieval.config import ConfigError, load_params
    from sass_retrieval.params_schema import Orchestration

    try:
        params = load_params(ROOT / "params.yaml")
        return params.orchestration, params.train.mode, params.train.nodes
    except (ConfigError, OSError) as exc:
        log.warning("params.yaml: %s; the DAG uses the orchestration defaults", exc)
        return Orchestration(), "full", 1


ORCHESTRATION, TRAIN_MODE, TRAIN_NODES = _orchestration()
NODE_SUFFIX = "_node"   # <training stage>_node: the joining nodes of a multi-node training
TRAINING = {st.group for st in GRAPH.stages.values()   # the tasks that go to the training queue
            if any(f" -m pipelines.{m} " in f"{st.cmd} " for m in ("train", "pretrain"))}

default_args = {
    "owner": "sass",
    "retries": 2,
    "retry_delay": timedelta(seconds=ORCHESTRATION.retry_delay_seconds),
    "retry_exponential_backoff": 2.0,     # then twice as long
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=6),
}


def _fail(exc):
    """A stage exit code that retrying can not fix (2 bad input, 3 bad config, 4 missing prerequisite) fails
    the task for good."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def _run(stage: str, run: dict, inputs: list, label: str) -> dict | None:
    """Run one dvc.yaml stage: in the project folder, or (``WORKSPACES``) in a workspace of its own, whose
    dvc.lock entry is the task's XCom for the tasks downstream."""
    from sass_retrieval.orchestration import stages

    try:
        with _training_env(stage):
            return _run_here(stage, run, inputs, label)
    except stages.StageFailed as exc:
        if exc.final:
            raise _fail(exc) from exc
        raise


def _run_here(stage: str, run: dict, inputs: list, label: str) -> dict | None:
    from sass_retrieval.orchestration import stages

    if not WORKSPACES:
        stages.run_stage(ROOT, stage, logger=log)
        if stage == PUBLISH_STAGE:
            _announce_publish(ROOT)
        return None
    settings = workspace.Settings.from_env(ROOT)
    announce = (lambda ws: _announce_publish(ws.path, settings.published_url)) if stage == PUBLISH_STAGE else None
    return workspace.run_task(settings, [stage], run["commit"], run["day"], _flatten(inputs), label,
                              logger=log, after=announce)


@contextmanager
def _training_env(stage: str, joining: bool = False) -> Iterator[None]:
    """With ``train.nodes`` > 1, the stage's environment names the run's rendezvous (the same id in the main
    task and its joining nodes: the run id and the stage) and, in a ``<stage>_node`` task, marks the node as
    joining; the task process's environment is what the stage subprocess inherits."""
    if TRAIN_NODES <= 1 or stage.split(dvc_graph.JOIN)[0] not in TRAINING:
        yield
        return
    from sass_retrieval.train.launch import JOINING, RDZV_ID, dag_rendezvous_id

    values = {RDZV_ID: dag_rendezvous_id(str(get_current_context()["dag_run"].run_id), stage),
              JOINING: "1" if joining else "0"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _join(stage: str, run: dict, inputs: list, label: str) -> None:
    """Run training stage ``stage`` as a joining node: the same cmd and inputs, nothing recorded or pushed."""
    from sass_retrieval.orchestration import stages

    try:
        with _training_env(stage, joining=True):
            if not WORKSPACES:
                stages.run_stage(ROOT, stage, commit=False, logger=log)
            else:
                workspace.join_task(workspace.Settings.from_env(ROOT), stage, run["commit"], run["day"],
                                    _flatten(inputs), label, logger=log)
    except stages.StageFailed as exc:
        if exc.final:
            raise _fail(exc) from exc
        raise


def _flatten(inputs: list) -> list:
    """The upstream tasks' XComs, a mapped task's (a sequence of its instances') flattened."""
    return [x for item in inputs for x in ([item] if item is None or isinstance(item, dict) else item)]


def _announce_publish(project: Path, store_url: str | None = None) -> None:
    """After the publish stage: an event for the published-model Asset, through the task's alias outlet,
    only when the stage published a version (nothing changed otherwise, and an asset event would make every
    consumer reload for nothing). Airflow 3 emits an event for every declared Asset outlet of a successful
    task; an alias emits only the events added to it, hence the alias. From a workspace, the event names the
    version in the published-model store."""
    from sass_retrieval.orchestration.assets import published_asset_extra

    extra = published_asset_extra(project)
    if extra is None:
        log.info("publish kept the model in service: no %s event", PUBLISHED_MODEL.name)
        return
    if store_url:
        extra.update(path=f"{store_url.rstrip('/')}/versions/{extra['version']}", git_commit=None)
    get_current_context()["outlet_events"][PUBLISHED_EVENTS].add(PUBLISHED_MODEL, extra=extra)
    log.info("asset event %s: version %s (%s, macro NDCG@50 %s)", PUBLISHED_MODEL.name, extra["version"],
             extra["row"], extra["ndcg@50"])


def _label(task_id: str) -> str:
    """A workspace's name: the run, the task and its try, so a leftover tells whose it was."""
    ctx = get_current_context()
    ti = ctx["ti"]
    index = f".{ti.map_index}" if getattr(ti, "map_index", -1) >= 0 else ""
    run_id = "".join(c if c.isalnum() else "_" for c in str(ctx["dag_run"].run_id))[-40:]
    return f"{run_id}.{task_id}{index}.try{ti.try_number}"


with DAG(
    dag_id=DAG_ID,
    description="Daily multi-scenario retrieval retrain, derived from dvc.yaml",
    # An explicit timetable: the data interval is one whole day [D 02:00, D+1 02:00) UTC, and the run for
    # day D starts at D+1 02:00 (a bare "@daily" would give a zero-width interval in Airflow 3).
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=datetime(2022, 4, 25, tzinfo=UTC),
    # SASS_DAG_END_DATE=2022-05-06 stops the schedule there: replaying a fixed historical dataset
    # (e.g. a KuaiRand backfill) then creates no "latest" scheduled run that would share the workspace
    # with the backfill runs (Airflow 3.3 schedules backfills only for unpaused DAGs).
    end_date=(datetime.fromisoformat(os.environ["SASS_DAG_END_DATE"]).replace(tzinfo=UTC)
              if os.environ.get("SASS_DAG_END_DATE") else None),
    catchup=False,
    # One project folder holds one run at a time; an incremental day warm-starts from the previous one.
    max_active_runs=ORCHESTRATION.max_active_runs if WORKSPACES and TRAIN_MODE == "full" else 1,
    default_args=default_args,
    params={
        "end_date": Param("", type="string", pattern=r"^(|auto|\d{8})$",
                          description="Override the run's last day of data: YYYYMMDD, 'auto' (last stored "
                                      "day) or empty (the date of data_interval_start)"),
    },
    tags=["sass", "dvc"],
    doc_md=__doc__,
) as dag:

    @task(task_id=CONFIGURE, retries=0)
    def configure() -> dict:
        """The run's day and, with workspaces, the commit every task checks out."""
        from sass_retrieval.orchestration import runs

        ctx = get_current_context()
        dag_run = ctx.get("dag_run")
        day = runs.end_date_for(override=(ctx.get("params") or {}).get("end_date"),
                                data_interval_start=ctx.get("data_interval_start"),
                                logical_date=ctx.get("logical_date"),
                                run_after=getattr(dag_run, "run_after", None))
        if WORKSPACES:
            try:
                settings = workspace.Settings.from_env(ROOT)
                commit = workspace.run_commit(settings.repo_url)
            except Exception as exc:  # bad deployment settings: retrying can not fix them
                raise _fail(exc) from exc
            log.info("run of %s at commit %s of %s", day, commit, settings.repo_url)
            return {"day": day, "commit": commit}
        previous = runs.set_window_end(ROOT / "params.yaml", day)
        log.info("window.end_date: %s -> %s (params.yaml in %s)", previous, day, ROOT)
        return {"day": day, "commit": None}

    @task
    def run_stage(stage: str, run: dict, inputs: list) -> dict | None:
        return _run(stage, run, inputs, _label(stage))

    @task(map_index_template="{{ stage_item }}")
    def run_item(group: str, item: str, run: dict, inputs: list) -> dict | None:
        get_current_context()["stage_item"] = item  # the mapped instance's name in the UI
        return _run(f"{group}{dvc_graph.JOIN}{item}", run, inputs, _label(group))

    @task(map_index_template="{{ node_label }}")
    def join_node(group: str, node: int, run: dict, inputs: list, item: str | None = None) -> None:
        """Node rank ``node`` (1..train.nodes-1) of training stage ``group`` (its ``item``, mapped groups)."""
        stage = group if item is None else f"{group}{dvc_graph.JOIN}{item}"
        get_current_context()["node_label"] = f"{item + ' ' if item else ''}node {node}"
        _join(stage, run, inputs, _label(group + NODE_SUFFIX))

    @task(task_id=RECORD)
    def record_run(run: dict, results: list) -> str:
        """``run["day"]`` is configure's: YYYYMMDD, or 'auto', which runs.record_run resolves from the store."""
        from sass_retrieval.orchestration import runs

        ctx = get_current_context()
        dag_run = ctx.get("dag_run")
        meta = {"dag_id": DAG_ID, "run_id": getattr(dag_run, "run_id", None),
                "data_interval_start": ctx.get("data_interval_start"),
                "data_interval_end": ctx.get("data_interval_end")}
        if WORKSPACES:
            return workspace.record(workspace.Settings.from_env(ROOT), run["commit"], run["day"],
                                    _flatten(results), meta, logger=log)
        return str(runs.record_run(ROOT, run["day"], meta, logger=log))

    run = configure()
    tasks = {}
    for g in GROUPS:
        inputs = [tasks[up] for up in g.upstream]   # their XComs: dvc.lock entries (workspaces)
        options = {"queue": ORCHESTRATION.train_queue} if g.name in TRAINING else {}
        if g.mapped:
            t = run_item.override(task_id=g.name, **options).partial(group=g.name, run=run, inputs=inputs) \
                .expand(item=list(g.items))
        else:
            if g.name == PUBLISH_STAGE:
                # publish's outlet is an alias: it emits an event for the Asset only when a version was
                # published; one publish at a time over every run, so days never race for `current`
                options.update(outlets=[PUBLISHED_EVENTS], max_active_tis_per_dag=1)
            t = run_stage.override(task_id=g.name, **options)(stage=g.name, run=run, inputs=inputs)
        tasks[g.name] = t
        for up in g.upstream:
            tasks[up] >> t
        if g.name in TRAINING and TRAIN_NODES > 1:
            # the other machines of the training: same inputs, started with the main task (train queue slots)
            joins = join_node.override(task_id=g.name + NODE_SUFFIX, queue=ORCHESTRATION.train_queue) \
                .partial(group=g.name, run=run, inputs=inputs)
            nodes = list(range(1, TRAIN_NODES))
            n = joins.expand(node=nodes, item=list(g.items)) if g.mapped else joins.expand(node=nodes)
            for up in g.upstream:
                tasks[up] >> n
    record = record_run(run, [tasks[g.name] for g in GROUPS])
    sinks = [g.name for g in GROUPS if not any(g.name in other.upstream for other in GROUPS)]
    for name in sinks:
        tasks[name] >> record
