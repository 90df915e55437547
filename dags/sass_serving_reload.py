"""sass_serving_reload: runs whenever sass_daily publishes a model, and makes sure it can be served.

    schedule=[Asset sass_published_model]  ->  check_published_version

A running ``sass serve`` needs no call to switch versions: it polls the publish folder's ``current`` link and
swaps a new version in once it loaded completely, keeping the old one when the new one does not load
(``sass_retrieval.serve.service``). What it can not do is tell anyone that it kept the old one. This DAG does:
it reads the triggering asset event's metadata (version, row, macro NDCG@50, DVC revision), checks the version
folder against it, and loads the version with the loader the service uses (``serve.loader.load_version``:
models, feature bank, every index, checked against each other), so an unloadable version fails a task here
on the day it was published. Replace or extend the task to reload a fleet that does not poll.

- Asset-triggered runs read ``triggering_asset_events``. A manual run (the UI's trigger button, ``airflow dags
  test``) has none, so it checks the asset's latest event (``inlet_events``): the version published last.
- Param ``load`` (default true): load the version (seconds: torch, bank, indexes); false checks files and
  metadata only.
- The project folder is $SASS_PROJECT_DIR, else the folder above this file. The features and store are the
  ones ``sass serve`` uses: $SASS_SERVE_FEATURES / $SASS_SERVE_STORE when set, else the workspace's
  ``data/features`` and params.yaml ``data.store_dir``.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

ROOT = Path(os.environ.get("SASS_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from sass_retrieval.orchestration.assets import published_model_asset  # noqa: E402  (no heavy import)

DAG_ID = "sass_serving_reload"
PUBLISHED_MODEL = published_model_asset()
log = logging.getLogger("sass.dag")


def _event_extra(ctx: Any) -> dict[str, Any]:
    """The metadata of the newest triggering event, or (manual run) of the asset's latest event."""
    triggering = ctx.get("triggering_asset_events") or {}
    events = list(triggering[PUBLISHED_MODEL]) if PUBLISHED_MODEL in triggering else []
    source = "triggering event"
    if not events:
        latest = ctx["inlet_events"][PUBLISHED_MODEL].ascending(False).limit(1)   # newest first, only it
        events, source = list(latest), "latest event (not asset-triggered)"
    if not events:
        raise ValueError(f"no {PUBLISHED_MODEL.name} event yet: nothing has been published")
    event = max(events, key=lambda e: e.timestamp)   # several publishes may have queued into one run
    log.info("%s of %s at %s (%d in this run)", source, PUBLISHED_MODEL.name, event.timestamp, len(events))
    return dict(event.extra or {})


with DAG(
    dag_id=DAG_ID,
    description="Check that the model sass_daily published can be served",
    schedule=[PUBLISHED_MODEL],
    start_date=datetime(2022, 4, 25, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={"load": Param(True, type="boolean",
                          description="Load the version with the serving loader (false: files and metadata only)")},
    tags=["sass", "serving"],
    doc_md=__doc__,
) as dag:

    @task(task_id="check_published_version", inlets=[PUBLISHED_MODEL], retries=0)
    def check_published_version() -> dict[str, Any]:
        """Fails when the announced version is missing, disagrees with its metadata or does not load."""
        from sass_retrieval.orchestration.assets import check_published_version as check

        ctx = get_current_context()
        extra = _event_extra(ctx)
        log.info("published: version %s, row %s, macro NDCG@50 %s, dvc rev %s", extra.get("version"),
                 extra.get("row"), extra.get("ndcg@50"), extra.get("dvc_rev"))
        summary = check(extra, ROOT, load=bool((ctx.get("params") or {}).get("load", True)),
                        features=os.environ.get("SASS_SERVE_FEATURES"), store=os.environ.get("SASS_SERVE_STORE"))
        log.info("version %s can be served (%s; in service: %s): %s", summary["version"],
                 "loaded" if summary["loaded"] else "files checked, not loaded", summary["in_service"], summary)
        return summary

    check_published_version()
