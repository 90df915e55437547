"""dags/sass_daily.py: imports cleanly without heavy modules, mirrors dvc.yaml, and behaves on success and on
failure.

The DAG is loaded in a subprocess with a throw-away AIRFLOW_HOME, so these tests never touch ~/airflow.
The last tests run the real DAG file with `airflow dags test` over a small fake project (a dvc.yaml of
quick Python one-liners), each run in its own AIRFLOW_HOME holding a copy of the session's migrated database
(conftest.py), which exercises configure -> mapped stages -> locked dvc commit -> record_run
and the failure path (exit 2 stops the run, no retry, nothing downstream runs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sass_retrieval.orchestration.dvc_graph import load_graph, task_groups

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "sass_daily.py"
EXTRA = {"configure", "record_run"}
MakeHome = Callable[[Path], Path]   # the airflow_home fixture (conftest.py)

DUMP = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.serialization.encoders import encode_timetable
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags),
       "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"torch", "dvc", "great_expectations", "faiss"})}
dag = bag.dags.get("sass_daily")
if dag is not None:
    out["catchup"], out["max_active_runs"] = dag.catchup, dag.max_active_runs
    out["timetable"] = {str(k): v for k, v in encode_timetable(dag.timetable).items()}
    out["params"] = {k: v for k, v in dag.params.items()}
    out["tasks"] = {}
    for t in dag.tasks:
        mapped = isinstance(t, MappedOperator)
        items = t.op_kwargs_expand_input.value.get("item") if mapped else None
        out["tasks"][t.task_id] = {"upstream": sorted(t.upstream_task_ids), "mapped": mapped, "items": items,
                                   "retries": t.retries, "backoff": t.retry_exponential_backoff,
                                   "trigger_rule": str(t.trigger_rule), "queue": t.queue,
                                   "node": t.op_kwargs_expand_input.value.get("node") if mapped else None}
print("JSON:" + json.dumps(out, default=str))
"""


def airflow_env(home: Path, dags: Path, project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__EXECUTOR="LocalExecutor", SASS_PROJECT_DIR=str(project),
               AIRFLOW__LOGGING__LOGGING_LEVEL="INFO", PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return env


def load_dag(dags: Path, project: Path, home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", DUMP, str(dags)], env=airflow_env(home, dags, project),
                         capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("JSON:")), None)
    assert line, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(line[5:])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return load_dag(ROOT / "dags", ROOT, tmp_path_factory.mktemp("airflow_home"))


def test_dag_folder_imports_without_errors(loaded: dict) -> None:
    assert loaded["errors"] == {}
    assert loaded["dags"] == ["sass_daily", "sass_serving_reload"]   # the consumer of the published model


def test_dag_file_parses_without_heavy_imports(loaded: dict) -> None:
    """What keeps parsing cheap (it happens in the dag-processor every refresh): the DAG file reads the JSON
    graph cache, and torch, DVC, Great Expectations and FAISS load only inside tasks."""
    assert loaded["heavy"] == [], "torch/dvc/great_expectations must only be imported inside tasks"


def test_schedule_is_one_day_in_order_without_catchup(loaded: dict) -> None:
    from airflow.timetables.interval import CronDataIntervalTimetable

    tt = loaded["timetable"]
    assert tt["Encoding.TYPE"] == "airflow.timetables.interval.CronDataIntervalTimetable"
    core = CronDataIntervalTimetable(tt["Encoding.VAR"]["expression"], tt["Encoding.VAR"]["timezone"])
    interval = core.infer_manual_data_interval(run_after=dt.datetime(2022, 5, 1, 3, tzinfo=dt.UTC))
    assert interval.end - interval.start == dt.timedelta(days=1)
    assert interval.start.strftime("%Y%m%d") == "20220430"
    assert loaded["catchup"] is False
    assert loaded["max_active_runs"] == 1
    stage_tasks = [t for name, t in loaded["tasks"].items() if name != "configure"]
    assert all(t["retries"] >= 1 and t["backoff"] > 1 for t in stage_tasks)  # exponential backoff
    assert all(t["trigger_rule"] in ("all_success", "TriggerRule.ALL_SUCCESS") for t in loaded["tasks"].values())
    assert "end_date" in loaded["params"]


def expected_tasks(project: Path) -> dict[str, dict]:
    """The DAG shape implied by DVC's own stage list: one task per dvc.yaml entry, foreach -> mapped."""
    from dvc.repo import Repo

    repo = Repo(str(project))
    try:
        names = [s.name for s in repo.index.stages]
    finally:
        repo.close()
    graph = load_graph(project)
    assert list(graph.stages) == names  # our resolution is DVC's (details in test_dvc_graph.py)
    groups = task_groups(graph)
    # every task reads configure's day and commit; record_run reads every task's dvc.lock entry (workspaces)
    tasks = {"configure": {"upstream": [], "mapped": False, "items": None}}
    for g in groups:
        members = [n for n in names if n == g.name or n.startswith(g.name + "@")]
        assert members == list(g.stages)
        tasks[g.name] = {"upstream": sorted({"configure", *g.upstream}), "mapped": g.mapped,
                         "items": [n.split("@", 1)[1] for n in members] if g.mapped else None}
    tasks["record_run"] = {"upstream": sorted({"configure", *(g.name for g in groups)}), "mapped": False,
                           "items": None}
    return tasks


def test_dag_tasks_and_edges_equal_the_dvc_graph(loaded: dict) -> None:
    got = {k: {"upstream": v["upstream"], "mapped": v["mapped"], "items": v["items"]}
           for k, v in loaded["tasks"].items()}
    assert got == expected_tasks(ROOT)
    # every stage-to-stage edge DVC implies is an edge between the tasks running those stages
    graph = load_graph(ROOT)
    for a, b in graph.edges:
        ga, gb = graph.stages[a].group, graph.stages[b].group
        assert ga in loaded["tasks"][gb]["upstream"], (a, b)
    assert loaded["tasks"]["split"]["items"] == yaml.safe_load((ROOT / "params.yaml").read_text())["scenarios"]["names"]
    # the params check runs right after configure, and every stage task waits for it
    assert loaded["tasks"]["params"]["upstream"] == ["configure"] and not loaded["tasks"]["params"]["mapped"]
    stage_tasks = set(loaded["tasks"]) - {"configure", "params", "record_run"}
    assert all("params" in loaded["tasks"][t]["upstream"] for t in stage_tasks)


def test_a_new_dvc_stage_becomes_a_new_task(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "dags").mkdir(parents=True)
    shutil.copy2(DAG_FILE, project / "dags" / DAG_FILE.name)
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    shutil.copytree(ROOT / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    spec["stages"]["drift"] = {"foreach": "${scenarios.names}",
                               "do": {"cmd": "python -m pipelines.drift --scenario ${item}",
                                      "deps": ["metrics/metrics.json"], "outs": ["reports/drift/${item}"]}}
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    loaded = load_dag(project / "dags", project, tmp_path / "home")
    assert loaded["errors"] == {}
    assert loaded["tasks"]["drift"]["mapped"] is True
    assert loaded["tasks"]["drift"]["upstream"] == ["configure", "evaluate"]
    assert "drift" in loaded["tasks"]["record_run"]["upstream"]
    got = {k: {"upstream": v["upstream"], "mapped": v["mapped"], "items": v["items"]}
           for k, v in loaded["tasks"].items()}
    assert got == expected_tasks(project)


def _dag_with_train_nodes(tmp_path: Path, nodes: int) -> dict:
    """The real DAG over the real dvc.yaml, with params.yaml's train.nodes set to ``nodes``."""
    from sass_retrieval.config import update_params_file

    project = tmp_path / f"proj{nodes}"
    (project / "dags").mkdir(parents=True)
    shutil.copy2(DAG_FILE, project / "dags" / DAG_FILE.name)
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    shutil.copy2(ROOT / "dvc.yaml", project / "dvc.yaml")
    shutil.copytree(ROOT / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    update_params_file(project / "params.yaml", {"train.nodes": nodes})
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return load_dag(project / "dags", project, tmp_path / f"home{nodes}")


def test_multi_node_training_adds_joining_node_tasks_on_the_train_queue(tmp_path: Path) -> None:
    """train.nodes: 2: every training stage's task gets ``<stage>_node``, mapped over node ranks 1..nodes-1, on
    the train queue like the main task and started by the same upstream tasks (they must run at once); with one
    node there are none."""
    two = _dag_with_train_nodes(tmp_path, 2)
    assert two["errors"] == {}
    train_queue = yaml.safe_load((ROOT / "params.yaml").read_text())["orchestration"]["train_queue"]
    training = sorted(name for name in two["tasks"] if name in ("pretrain", "finetune", "challenger", "reference"))
    assert {"pretrain", "finetune", "challenger"} <= set(training)
    nodes = sorted(name for name in two["tasks"] if name.endswith("_node"))
    assert nodes == sorted(f"{name}_node" for name in training)
    for name in training:
        main, join = two["tasks"][name], two["tasks"][f"{name}_node"]
        assert main["queue"] == join["queue"] == train_queue
        assert join["mapped"] and join["node"] == [1]
        assert join["upstream"] == main["upstream"]
    assert not any(n in two["tasks"]["record_run"]["upstream"] for n in nodes)

    one = _dag_with_train_nodes(tmp_path, 1)
    assert one["errors"] == {}
    assert not [name for name in one["tasks"] if name.endswith("_node")]
    assert set(one["tasks"]) == set(two["tasks"]) - set(nodes)


# ---------------------------------------------------------------- running the DAG on a fake project

TOOL = """\
import json, os, pathlib, sys, time, yaml
step = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))
end = str(params["window"]["end_date"])
if step == "validate":
    code = int(params["validate_exit"])
    for day in ("20220502", "20220503"):  # the fake store's days: what 'auto' resolves to
        pathlib.Path(f"data/store/interactions/date={day}").mkdir(parents=True, exist_ok=True)
    pathlib.Path("reports/validation").mkdir(parents=True, exist_ok=True)
    pathlib.Path("reports/validation/summary.json").write_text(json.dumps({"success": code == 0, "end": end}))
    print("validation exit", code)
    sys.exit(code)
if step == "split":
    time.sleep(1)
    out = pathlib.Path("data/features") / sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    (out / "f.txt").write_text(f"{sys.argv[2]} {end}")
    sys.exit(0)
if step == "publish":
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path("metrics/metrics.json").write_text(json.dumps({"rows": {"sass": {"macro": {"ndcg@50": 0.5}}}}))
    pathlib.Path("models/sass").mkdir(parents=True, exist_ok=True)
    pathlib.Path("models/sass/model.txt").write_text(end)
    pathlib.Path("reports/publish.json").write_text(json.dumps({"publish": True, "version": end}))
    pathlib.Path("published").mkdir(exist_ok=True)
    pathlib.Path("published/current.txt").write_text(end)
"""

FAKE_DVC = """\
stages:
  validate:
    cmd: python tool.py validate
    deps: [tool.py]
    params: [window, validate_exit]
    outs: [reports/validation]
  split:
    foreach: ${names}
    do:
      cmd: python tool.py split ${item}
      deps: [tool.py, reports/validation]
      outs:
        - data/features/${item}
  publish:
    cmd: python tool.py publish
    deps: [data/features]
    metrics:
      - metrics/metrics.json:
          cache: false
    outs:
      - models/sass
      - reports/publish.json:
          cache: false
"""


def fake_project(tmp_path: Path, validate_exit: int) -> Path:
    project = tmp_path / "proj"
    (project / "dags").mkdir(parents=True)
    shutil.copy2(DAG_FILE, project / "dags" / DAG_FILE.name)
    (project / "tool.py").write_text(TOOL)
    (project / "dvc.yaml").write_text(FAKE_DVC)
    (project / "params.yaml").write_text(f"window:\n  end_date: auto   # set by the DAG\n  train_days: 1\n"
                                         f"  test_days: 1\ndata:\n  store_dir: data/store\nnames: [a, b]\n"
                                         f"validate_exit: {validate_exit}\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "-q", "local", ".dvc_remote"],
                   cwd=project, check=True)
    (project / "published").mkdir()
    (project / "published/current.txt").write_text("yesterday")
    return project


def dags_test(project: Path, home: Path, logical_date: str,
              conf: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """``airflow dags test`` in ``home`` (holding a copy of the session's migrated database: conftest.py)."""
    env = airflow_env(home, project / "dags", project)
    extra = ["--conf", json.dumps(conf)] if conf else []
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "sass_daily", logical_date, *extra],
                          env=env, capture_output=True, text=True, timeout=600, cwd=project)
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute("SELECT task_id, map_index, state, try_number FROM task_instance").fetchall()
    states = {(t if m < 0 else f"{t}[{m}]"): (s, n) for t, m, s, n in rows}
    return proc, states


def test_dags_test_runs_stages_and_records_the_day(tmp_path: Path, airflow_home: MakeHome) -> None:
    project = fake_project(tmp_path, validate_exit=0)
    proc, states = dags_test(project, airflow_home(tmp_path / "home"), "2022-05-01T03:00:00+00:00")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert {k: s for k, (s, _) in states.items()} == {
        t: "success" for t in ("configure", "validate", "split[0]", "split[1]", "publish", "record_run")}
    # configure: the data interval [2022-04-30 02:00, 2022-05-01 02:00) -> window.end_date 20220430
    params = (project / "params.yaml").read_text()
    assert re.search(r"end_date: 20220430 +# set by the DAG", params), params  # comment kept
    assert (project / "data/features/b/f.txt").read_text() == "b 20220430"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"validate", "split@a", "split@b", "publish"}
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    # record_run: the day is a git commit of dvc.lock, params and metrics, tagged day-20220430, after dvc push
    git = lambda *a: subprocess.run(["git", *a], cwd=project, capture_output=True, text=True, check=True).stdout  # noqa: E731
    files = set(git("ls-tree", "-r", "--name-only", "day-20220430").split())
    assert {"dvc.lock", "params.yaml", "metrics/metrics.json", "reports/publish.json"} <= files
    assert "end_date: 20220430" in git("show", "day-20220430:params.yaml")
    assert json.loads(git("tag", "-l", "--format=%(contents)", "day-20220430"))["pushed"] is True
    meta = json.loads(git("tag", "-l", "--format=%(contents)", "run-20220430-01"))   # the run's own tag
    assert meta["run_tag"] == "run-20220430-01" and meta["dag_id"] == "sass_daily" and meta["run_id"]
    assert any((project / ".dvc_remote").rglob("*.dir"))


@pytest.mark.parametrize(("end_date", "day"), [("auto", "20220503"), ("20220502", "20220502")])
def test_a_triggered_end_date_is_run_and_recorded(tmp_path: Path, airflow_home: MakeHome, end_date: str,
                                                  day: str) -> None:
    """The DAG param's values: 'auto' stays 'auto' for the stages and is recorded as the store's last day;
    a YYYYMMDD overrides the data interval (the empty default is the test above)."""
    project = fake_project(tmp_path, validate_exit=0)
    proc, states = dags_test(project, airflow_home(tmp_path / "home"), "2022-05-01T03:00:00+00:00",
                             conf={"end_date": end_date})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert {s for s, _ in states.values()} == {"success"}, states
    assert f"end_date: {end_date}" in (project / "params.yaml").read_text()
    git = lambda *a: subprocess.run(["git", *a], cwd=project, capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert git("tag", "-l").split() == [f"day-{day}", f"run-{day}-01"]
    meta = json.loads(git("tag", "-l", "--format=%(contents)", f"run-{day}-01"))   # the run's own tag
    assert meta["end_date"] == end_date and meta["day"] == day and meta["run_id"] and meta["recorded_at"]
    meta = json.loads(git("tag", "-l", "--format=%(contents)", f"day-{day}"))
    assert meta["day"] == day and meta.get("end_date", day) == end_date


def test_validation_failure_stops_the_run_and_keeps_the_published_model(tmp_path: Path,
                                                                         airflow_home: MakeHome) -> None:
    project = fake_project(tmp_path, validate_exit=2)
    proc, states = dags_test(project, airflow_home(tmp_path / "home"), "2022-05-01T03:00:00+00:00")
    assert proc.returncode != 0
    assert states["configure"] == ("success", 1)
    assert states["validate"] == ("failed", 1), "exit code 2 must fail at once, without retries"
    assert states["publish"][0] == "upstream_failed"
    assert states["record_run"][0] == "upstream_failed"
    assert not any(k.startswith("split") and s == "success" for k, (s, _) in states.items())
    assert (project / "published/current.txt").read_text() == "yesterday"
    tags = subprocess.run(["git", "tag", "-l"], cwd=project, capture_output=True, text=True).stdout
    assert not tags.strip(), "nothing recorded for a failed day"
