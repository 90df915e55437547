"""The published model as an Airflow Asset (sass_retrieval.orchestration.assets, dags/sass_serving_reload.py).

- the metadata builder and the consumer's check, on a tiny publish folder (no Airflow);
- both DAG files parsed with Airflow's DagBag in a subprocess (throw-away AIRFLOW_HOME): the publish task's
  outlet, the consumer's schedule;
- (slow) the whole path with real Airflow: ``airflow dags test sass_daily`` on a fake project whose publish
  stage publishes a version (the task emits the asset event into the Airflow DB), then the consumer DAG
  with ``dag.test()``; and a day the gate keeps the model in service emits no event.

``dag.test()`` can not be handed triggering asset events: it creates a manual run with
``consumed_asset_events=[]`` (airflow.models.dagrun.get_or_create_dagrun). So the consumer test relies on
the consumer's documented manual-run path, the asset's latest event through ``inlet_events``, and that event
is the one the producer's publish task stored, not a hand-made one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sass_retrieval.orchestration.assets import (
    ALIAS_NAME,
    ASSET_NAME,
    ASSET_URI,
    EXTRA_KEYS,
    check_published_version,
    published_asset_extra,
)

ROOT = Path(__file__).resolve().parents[2]
DAGS = ("sass_daily.py", "sass_serving_reload.py")
VERSION = "20220505-0123456789"


def airflow_env(home: Path, dags: Path, project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SASS_SERVE_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__EXECUTOR="LocalExecutor", SASS_PROJECT_DIR=str(project),
               AIRFLOW__LOGGING__LOGGING_LEVEL="INFO", PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return env


def tiny_published(root: Path, *, publish: bool = True, row: str = "dssm_mixed", ndcg: float = 0.2345) -> Path:
    """A project folder as the publish stage leaves it: params.yaml, reports/publish.json, dvc.lock, and
    (when published) published/versions/<VERSION>/ with served.json and metrics.json, current -> it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text("publish:\n  dir: published\ndata:\n  store_dir: data/store\n")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    entry = {"window_end": 20220505, "publish": publish, "reason": "nothing published yet",
             "winner": row if publish else None, "served": row, "scores": {"sass": 0.2, row: ndcg}}
    if publish:
        entry["version"] = VERSION
        version = root / "published" / "versions" / VERSION
        version.mkdir(parents=True)
        (version / "served.json").write_text(json.dumps({"row": row, "fallback": {}}))
        (version / "metrics.json").write_text(json.dumps({"rows": {row: {"macro": {"ndcg@50": ndcg}}}}))
        (root / "published" / "current").symlink_to(Path("versions") / VERSION)
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "publish.json").write_text(json.dumps(entry))
    return root


# ---------------------------------------------------------------- the metadata, without Airflow

def test_extra_of_a_published_version(tmp_path: Path) -> None:
    root = tiny_published(tmp_path / "proj")
    extra = published_asset_extra(root)
    assert extra is not None and set(extra) == set(EXTRA_KEYS)
    assert extra["version"] == VERSION and extra["row"] == "dssm_mixed"
    assert extra["ndcg@50"] == pytest.approx(0.2345)
    assert extra["path"] == str((root / "published" / "versions" / VERSION).resolve())
    assert extra["window_end"] == "20220505" and extra["dvc_rev"] == "day-20220505"
    import hashlib

    assert extra["dvc_lock_sha256"] == hashlib.sha256((root / "dvc.lock").read_bytes()).hexdigest()
    assert extra["git_commit"] is None                      # not a git repository
    json.dumps(extra)                                       # an asset event's extra must be JSON


def test_extra_names_the_workspace_commit(tmp_path: Path) -> None:
    root = tiny_published(tmp_path / "proj")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "params.yaml"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=root, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert published_asset_extra(root)["git_commit"] == head


def test_no_event_when_the_model_in_service_stays(tmp_path: Path) -> None:
    assert published_asset_extra(tiny_published(tmp_path / "kept", publish=False)) is None
    assert published_asset_extra(tmp_path / "nothing") is None          # publish never ran


def test_the_consumer_check_accepts_the_event_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    root = tiny_published(tmp_path / "proj")
    extra = published_asset_extra(root)
    summary = check_published_version(extra, root, load=False)
    assert summary["version"] == VERSION and summary["in_service"] is True and summary["loaded"] is False
    with pytest.raises(ValueError, match="NDCG@50"):
        check_published_version({**extra, "ndcg@50": 0.3}, root, load=False)
    with pytest.raises(ValueError, match="serves 'dssm_mixed'"):
        check_published_version({**extra, "row": "sass"}, root, load=False)
    with pytest.raises(ValueError, match="no folder"):
        check_published_version({**extra, "version": "20220506-x", "path": None}, root, load=False)
    with pytest.raises(ValueError, match="lacks version"):
        check_published_version({"row": "sass"}, root, load=False)


# ---------------------------------------------------------------- the DAG files, parsed by Airflow

PARSE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset, AssetAlias
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
daily, consumer = bag.dags.get("sass_daily"), bag.dags.get("sass_serving_reload")
def refs(objs):
    return [{"type": type(o).__name__, "name": o.name, "uri": getattr(o, "uri", None)} for o in objs]
if daily is not None:
    out["outlets"] = {t.task_id: refs(t.outlets) for t in daily.tasks if t.outlets}
if consumer is not None:
    cond = consumer.timetable.asset_condition          # schedule=[asset]: AssetAll(asset)
    out["schedule"] = refs(cond.objects)
    out["condition"] = type(cond).__name__
    out["timetable"] = type(consumer.timetable).__name__
    out["inlets"] = {t.task_id: refs(t.inlets) for t in consumer.tasks}
print("JSON:" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    out = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags")],
                         env=airflow_env(home, ROOT / "dags", ROOT), capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("JSON:")), None)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(line[5:])


def test_both_dags_parse(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert parsed["dags"] == ["sass_daily", "sass_serving_reload"]


def test_only_the_publish_task_announces_the_published_model(parsed: dict) -> None:
    # the outlet is the alias through which the publish task adds the Asset's event (none when not published)
    assert parsed["outlets"] == {"publish": [{"type": "AssetAlias", "name": ALIAS_NAME, "uri": None}]}


def test_the_consumer_is_scheduled_on_the_published_model(parsed: dict) -> None:
    asset = {"type": "Asset", "name": ASSET_NAME, "uri": ASSET_URI + "/"}   # Airflow normalises the URI
    assert parsed["timetable"] == "AssetTriggeredTimetable"
    assert parsed["condition"] == "AssetAll" and parsed["schedule"] == [asset]
    assert parsed["inlets"] == {"check_published_version": [asset]}


# ---------------------------------------------------------------- producer -> Airflow DB -> consumer

TOOL = """\
import json, os, pathlib, yaml
params = yaml.safe_load(open("params.yaml"))
end = str(params["window"]["end_date"])
root = pathlib.Path("published")
entry = {"window_end": int(end), "publish": bool(params["publish_today"]), "reason": "fake gate",
         "winner": "sass", "served": "sass", "scores": {"sass": 0.5}}
if entry["publish"]:
    vid = f"{end}-fake"
    version = root / "versions" / vid
    version.mkdir(parents=True, exist_ok=True)
    (version / "served.json").write_text(json.dumps({"row": "sass", "fallback": {}}))
    (version / "metrics.json").write_text(json.dumps({"rows": {"sass": {"macro": {"ndcg@50": 0.5}}}}))
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(pathlib.Path("versions") / vid)
    os.replace(tmp, root / "current")
    entry["version"] = vid
pathlib.Path("reports").mkdir(exist_ok=True)
pathlib.Path("reports/publish.json").write_text(json.dumps(entry))
"""

FAKE_DVC = """\
stages:
  publish:
    cmd: python tool.py
    deps: [tool.py]
    params: [window, publish_today]
    outs:
      - reports/publish.json:
          cache: false
"""

CONSUME = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dr = bag.dags["sass_serving_reload"].test(run_conf=json.loads(sys.argv[2]))
print("JSON:" + json.dumps({"state": str(dr.state), "run_type": str(dr.run_type)}))
"""


def fake_project(tmp_path: Path, publish_today: bool) -> Path:
    project = tmp_path / "proj"
    (project / "dags").mkdir(parents=True)
    for name in DAGS:
        shutil.copy2(ROOT / "dags" / name, project / "dags" / name)
    (project / "tool.py").write_text(TOOL)
    (project / "dvc.yaml").write_text(FAKE_DVC)
    (project / "params.yaml").write_text("window:\n  end_date: auto\n  train_days: 1\n  test_days: 1\n"
                                         "data:\n  store_dir: data/store\npublish:\n  dir: published\n"
                                         f"publish_today: {str(publish_today).lower()}\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "-q", "local", ".dvc_remote"],
                   cwd=project, check=True)
    return project


def run_producer(project: Path, home: Path) -> list[tuple[str, dict]]:
    """``airflow dags test sass_daily`` on the fake project, in ``home`` (holding a copy of the session's migrated
    database: conftest.py); returns the asset events stored (name, extra)."""
    env = airflow_env(home, project / "dags", project)
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "sass_daily", "2022-05-06T03:00:00+00:00"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=project)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                          "ORDER BY e.id").fetchall()
    return [(name, json.loads(extra) if isinstance(extra, str) else extra) for name, extra in rows]


@pytest.mark.slow
def test_a_publish_emits_the_event_and_the_consumer_checks_it(tmp_path: Path,
                                                              airflow_home: Callable[[Path], Path]) -> None:
    project = fake_project(tmp_path, publish_today=True)
    home = airflow_home(tmp_path / "home")
    events = run_producer(project, home)
    assert [name for name, _ in events] == [ASSET_NAME]
    extra = events[0][1]
    assert extra["version"] == "20220505-fake" and extra["row"] == "sass" and extra["ndcg@50"] == 0.5
    assert extra["dvc_rev"] == "day-20220505"
    assert extra["path"] == str((project / "published" / "versions" / "20220505-fake").resolve())
    lock = project / "dvc.lock"
    assert "publish" in lock.read_text()   # the hash is of dvc.lock once publish was committed to it
    import hashlib

    assert extra["dvc_lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    # the consumer, with dag.test(), in the same Airflow DB: it reads that event and checks the version
    proc = subprocess.run([sys.executable, "-c", CONSUME, str(project / "dags"), json.dumps({"load": False})],
                          env=airflow_env(home, project / "dags", project), capture_output=True, text=True,
                          timeout=600, cwd=project)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JSON:")), None)
    assert line, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert json.loads(line[5:])["state"] == "success", proc.stdout[-4000:] + proc.stderr[-4000:]
    with sqlite3.connect(home / "airflow.db") as db:
        states = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id='sass_serving_reload'").fetchall()
        value = db.execute("SELECT value FROM xcom WHERE dag_id='sass_serving_reload' AND key='return_value'"
                           ).fetchone()
    assert states == [("check_published_version", "success")]
    summary = json.loads(value[0]) if isinstance(value[0], str) else value[0]
    assert summary["version"] == "20220505-fake" and summary["in_service"] is True


@pytest.mark.slow
def test_a_kept_model_emits_no_event(tmp_path: Path, airflow_home: Callable[[Path], Path]) -> None:
    project = fake_project(tmp_path, publish_today=False)
    assert run_producer(project, airflow_home(tmp_path / "home")) == []


@pytest.mark.slow
def test_the_consumer_check_loads_a_real_published_version(built_project: Path, tmp_path: Path) -> None:
    """The check a consumer runs by default: the version the publish stage installed loads with the serving
    loader (models, bank, indexes), and the summary says what was loaded."""
    from support import cwd

    from pipelines import publish

    root = tmp_path / "project"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        assert publish.main([]) == 0
    extra = published_asset_extra(root)
    assert extra is not None and extra["path"] and extra["ndcg@50"] is not None
    summary = check_published_version(extra, root)
    assert summary["loaded"] is True and summary["in_service"] is True and summary["scenarios"]
