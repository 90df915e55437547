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

The project folder is $SASS_PROJECT_DIR, else the folder above this file. Heavy libraries (torch,
great_expectations, dvc) are only imported inside the tasks: parsing this file reads the stage graph from
.dvc/tmp/sass-dag-graph.json, which a subprocess regenerates with DVC when dvc.yaml or params.yaml changed.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, get_current_context, task

ROOT = Path(os.environ.get("SASS_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from sass_retrieval.orchestration import dvc_graph  # noqa: E402  (reads a JSON cache; DVC runs in a subprocess)
from sass_retrieval.orchestration.assets import (  # noqa: E402  (no heavy import)
    PUBLISH_STAGE,
    published_model_alias,
    published_model_asset,
)

DAG_ID = "sass_daily"
CONFIGURE, RECORD = "configure", "record_run"
GROUPS = dvc_graph.task_groups(dvc_graph.load_graph(ROOT))
PUBLISHED_MODEL, PUBLISHED_EVENTS = published_model_asset(), published_model_alias()
log = logging.getLogger("sass.dag")

default_args = {
    "owner": "sass",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,     # 2 min, then 4 min
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=6),
}


def _fail(exc):
    """A stage exit code that retrying can not fix (2 bad input, 3 bad config, 4 missing prerequisite) fails
    the task for good."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def _run(stage: str) -> None:
    from sass_retrieval.orchestration import stages

    try:
        stages.run_stage(ROOT, stage, logger=log)
    except stages.StageFailed as exc:
        if exc.final:
            raise _fail(exc) from exc
        raise


def _announce_publish() -> None:
    """After the publish stage: an event for the published-model Asset, through the task's alias outlet,
    only when the stage published a version (nothing changed otherwise, and an asset event would make every
    consumer reload for nothing). Airflow 3 emits an event for every declared Asset outlet of a successful
    task; an alias emits only the events added to it, hence the alias."""
    from sass_retrieval.orchestration.assets import published_asset_extra

    extra = published_asset_extra(ROOT)
    if extra is None:
        log.info("publish kept the model in service: no %s event", PUBLISHED_MODEL.name)
        return
    get_current_context()["outlet_events"][PUBLISHED_EVENTS].add(PUBLISHED_MODEL, extra=extra)
    log.info("asset event %s: version %s (%s, macro NDCG@50 %s)", PUBLISHED_MODEL.name, extra["version"],
             extra["row"], extra["ndcg@50"])


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
    max_active_runs=1,                    # days run in order: each warm-starts from the previous one
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
    def configure() -> str:
        from sass_retrieval.orchestration import runs

        ctx = get_current_context()
        dag_run = ctx.get("dag_run")
        day = runs.end_date_for(override=(ctx.get("params") or {}).get("end_date"),
                                data_interval_start=ctx.get("data_interval_start"),
                                logical_date=ctx.get("logical_date"),
                                run_after=getattr(dag_run, "run_after", None))
        previous = runs.set_window_end(ROOT / "params.yaml", day)
        log.info("window.end_date: %s -> %s (params.yaml in %s)", previous, day, ROOT)
        return day

    @task
    def run_stage(stage: str) -> None:
        _run(stage)
        if stage == PUBLISH_STAGE:
            _announce_publish()

    @task(map_index_template="{{ stage_item }}")
    def run_item(group: str, item: str) -> None:
        get_current_context()["stage_item"] = item  # the mapped instance's name in the UI
        _run(f"{group}{dvc_graph.JOIN}{item}")

    @task(task_id=RECORD)
    def record_run(day: str) -> str:
        """``day`` is configure's value: YYYYMMDD, or 'auto', which runs.record_run resolves from the store."""
        from sass_retrieval.orchestration import runs

        ctx = get_current_context()
        dag_run = ctx.get("dag_run")
        meta = {"dag_id": DAG_ID, "run_id": getattr(dag_run, "run_id", None),
                "data_interval_start": ctx.get("data_interval_start"),
                "data_interval_end": ctx.get("data_interval_end")}
        return str(runs.record_run(ROOT, day, meta, logger=log))

    day = configure()
    tasks = {}
    for g in GROUPS:
        if g.mapped:
            t = run_item.override(task_id=g.name).partial(group=g.name).expand(item=list(g.items))
        else:
            # publish's outlet is an alias: it emits an event for the Asset only when a version was published
            outlets = [PUBLISHED_EVENTS] if g.name == PUBLISH_STAGE else []
            t = run_stage.override(task_id=g.name, outlets=outlets)(stage=g.name)
        tasks[g.name] = t
        for up in g.upstream:
            tasks[up] >> t
        if not g.upstream:
            day >> t
    record = record_run(day)
    sinks = [g.name for g in GROUPS if not any(g.name in other.upstream for other in GROUPS)]
    for name in sinks:
        tasks[name] >> record
