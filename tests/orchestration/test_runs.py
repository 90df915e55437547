"""Run execution (stage cmd + locked dvc commit), the run's day, and daily versions: record/list/restore."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from sass_retrieval.errors import EXIT_BAD_INPUT, EXIT_MISSING, run_main
from sass_retrieval.orchestration import runs, stages

MAKE = """\
import json, pathlib, sys, time, yaml
params = yaml.safe_load(open("params.yaml"))
out = pathlib.Path(sys.argv[1])
if sys.argv[2] == "fail":
    sys.exit(int(sys.argv[3]))
if sys.argv[2] == "metrics":
    v = params["version"]
    pathlib.Path("metrics").mkdir(exist_ok=True)
    json.dump({"rows": {"popular": {"macro": {"ndcg@50": 0.1}}, "sass": {"macro": {"ndcg@50": 0.2 + v / 100}}}},
              open("metrics/metrics.json", "w"))
    pathlib.Path("reports").mkdir(exist_ok=True)
    json.dump({"publish": v != 3, "version": f"v{v}", "reason": "test"}, open("reports/publish.json", "w"))
    sys.exit(0)
time.sleep(0.2)
out.mkdir(parents=True, exist_ok=True)
(out / "content.txt").write_text(f"{out} version {params['version']}\\n")
(out / "sub").mkdir(exist_ok=True)
(out / "sub" / "more.bin").write_bytes(bytes(range(params["version"] + 5)))
print("wrote", out)
"""

DVC_YAML = """\
stages:
  train:
    cmd: python make.py models/sass make
    deps: [make.py]
    params: [version]
    outs:
      - models/sass:
          persist: true
  index:
    foreach: ${names}
    do:
      cmd: python make.py indexes/${item} make
      deps: [make.py, models/sass]
      outs:
        - indexes/${item}
  evaluate:
    cmd: python make.py - metrics
    deps: [indexes]
    metrics:
      - metrics/metrics.json:
          cache: false
    outs:
      - reports/publish.json:
          cache: false
"""

PARAMS = """\
version: 1          # bumped by the tests
names: [s0, s1, s2]
window:
  end_date: auto    # last day of data
  train_days: 8     # keep me
"""


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "make.py").write_text(MAKE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text(PARAMS)
    sh(sys.executable, "-m", "dvc", "init", "--no-scm", "-q", cwd=root)
    sh(sys.executable, "-m", "dvc", "remote", "add", "-d", "-q", "local", str(tmp_path / "remote"), cwd=root)
    return root


def run_all(root: Path, parallel: bool = True) -> None:
    stages.run_stage(root, "train")
    errors: list[BaseException] = []

    def one(item: str) -> None:
        try:
            stages.run_stage(root, f"index@{item}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in ("s0", "s1", "s2")]
    for t in threads:
        t.start()
        if not parallel:
            t.join()
    for t in threads:
        t.join()
    assert not errors, errors
    stages.run_stage(root, "evaluate")


def set_version(root: Path, v: int) -> None:
    (root / "params.yaml").write_text(PARAMS.replace("version: 1", f"version: {v}"))


# ---------------------------------------------------------------- executing stages

def test_parallel_stages_then_locked_commits_leave_dvc_clean(project: Path) -> None:
    run_all(project, parallel=True)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"train", "index@s0", "index@s1", "index@s2", "evaluate"}
    status = sh(sys.executable, "-m", "dvc", "status", cwd=project)
    assert "up to date" in status, status
    # what we recorded is what `dvc repro` would consider done: nothing to run
    dry = sh(sys.executable, "-m", "dvc", "repro", "--dry", cwd=project)
    assert "Running stage" not in dry, dry


def test_failed_stage_raises_with_exit_code(project: Path) -> None:
    (project / "dvc.yaml").write_text(DVC_YAML + "  broken:\n    cmd: python make.py - fail 2\n")
    with pytest.raises(stages.StageFailed) as info:
        stages.run_stage(project, "broken")
    assert info.value.returncode == 2 and info.value.final
    assert not stages.StageFailed("x", 1).final
    assert stages.StageFailed("params", 3).final  # params.yaml does not validate: retrying can not help
    assert not (project / "dvc.lock").exists()  # nothing recorded for a failed stage
    with pytest.raises(KeyError):
        stages.run_stage(project, "nope")


def test_stage_env_puts_project_and_interpreter_first(tmp_path: Path) -> None:
    env = stages.stage_env(tmp_path, {"PATH": "/usr/bin", "PYTHONPATH": "/x"})
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["PYTHONPATH"].split(":")[:3] == [str(tmp_path.resolve() / "src"), str(tmp_path.resolve()), "/x"]
    assert env["SASS_PROJECT_DIR"] == str(tmp_path.resolve())


# ---------------------------------------------------------------- the run's day

def test_end_date_comes_from_the_data_interval() -> None:
    start = dt.datetime(2022, 4, 30, 2, 0, tzinfo=dt.UTC)
    assert runs.end_date_for(data_interval_start=start, logical_date=start) == "20220430"
    assert runs.end_date_for(override="20220501", data_interval_start=start) == "20220501"
    assert runs.end_date_for(override="auto", data_interval_start=start) == "auto"
    assert runs.end_date_for(override="", data_interval_start=start) == "20220430"
    assert runs.end_date_for(logical_date="2022-05-02T00:00:00+00:00") == "20220502"
    assert runs.end_date_for(run_after=dt.datetime(2022, 5, 3, 5, 0, tzinfo=dt.UTC)) == "20220502"
    with pytest.raises(ValueError):
        runs.end_date_for()
    with pytest.raises(ValueError):
        runs.as_day("yesterday")


@pytest.mark.parametrize(("override", "expected"), [("", "20220430"), (None, "20220430"), ("auto", "auto"),
                                                    ("AUTO", "auto"), ("20220503", "20220503")])
def test_every_end_date_the_dag_param_allows_gives_a_day(override, expected) -> None:
    """The DAG's `end_date` param allows "", "auto" and YYYYMMDD: each one is a day configure can write."""
    start = dt.datetime(2022, 4, 30, 2, tzinfo=dt.UTC)
    assert runs.end_date_for(override=override, data_interval_start=start) == expected
    # a manual trigger has no data interval: the last complete day before it was triggered
    manual = runs.end_date_for(override=override, run_after=dt.datetime(2026, 3, 11, 9, tzinfo=dt.UTC))
    assert manual == (expected if override not in ("", None) else "20260310")


def test_auto_is_resolved_to_the_last_stored_day_the_way_the_stages_resolve_it(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("data:\n  store_dir: data/store\n"
                                          "window:\n  end_date: auto\n  train_days: 2\n  test_days: 1\n")
    for day in (20220501, 20220502, 20220503):
        (tmp_path / f"data/store/interactions/date={day}").mkdir(parents=True)
    assert runs.resolve_day(tmp_path, "auto") == "20220503"
    assert runs.resolve_day(tmp_path, "20220502") == "20220502"
    assert runs.resolve_day(tmp_path, dt.date(2022, 5, 1)) == "20220501"


def test_set_window_end_keeps_comments_and_layout(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    assert runs.set_window_end(p, "20220430") == "auto"
    new = p.read_text().splitlines()
    old = PARAMS.splitlines()
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == [("  end_date: auto    # last day of data", "  end_date: 20220430 # last day of data")]
    assert yaml.safe_load(p.read_text())["window"]["end_date"] == 20220430
    runs.set_window_end(p, "auto")
    squash = lambda text: [" ".join(line.split()) for line in text.splitlines()]  # noqa: E731
    assert squash(p.read_text()) == squash(PARAMS)  # back to auto; only the comment's column may move


# ---------------------------------------------------------------- daily versions (git tags + DVC)

def test_record_list_diff_and_restore(project: Path, tmp_path: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    set_version(project, 1)
    run_all(project)
    assert not (project / ".git").exists()  # dvc init --no-scm: the first record makes it a git repository
    tag1 = runs.record_run(project, "20220501", {"run_id": "r1"})
    assert tag1 == "day-20220501" and (project / ".git").is_dir()
    set_version(project, 2)
    run_all(project)
    runs.record_run(project, "20220502", {"run_id": "r2"})
    set_version(project, 3)
    run_all(project)
    runs.record_run(project, "2022-05-03", push=False)

    # each day is a commit of the run's text files, tagged; the cached outputs are not in git
    committed = sh("git", "ls-tree", "-r", "--name-only", tag1, cwd=project).split()
    assert {"dvc.lock", "dvc.yaml", "params.yaml", "metrics/metrics.json", "reports/publish.json"} <= set(committed)
    assert not [f for f in committed if f.startswith(("models/sass/", "indexes/s0/"))]
    meta = json.loads(sh("git", "tag", "-l", "--format=%(contents)", tag1, cwd=project))
    assert meta["pushed"] is True and meta["run_id"] == "r1" and meta["day"] == "20220501"
    assert any((tmp_path / "remote" / "files" / "md5").rglob("*.dir"))
    # DVC's own commands compare the days
    diff = sh(sys.executable, "-m", "dvc", "metrics", "diff", "day-20220501", "day-20220502", "--json", cwd=project)
    assert "metrics/metrics.json" in json.loads(diff)

    listed = runs.list_runs(project)
    assert [r["day"] for r in listed] == ["20220501", "20220502", "20220503"]
    assert listed[1]["ndcg@50"] == {"popular": 0.1, "sass": pytest.approx(0.22)}
    assert [r["published"] for r in listed] == [True, True, False]
    assert [r["pushed"] for r in listed] == [True, True, False]
    table = runs.format_runs(listed)
    assert "sass ndcg@50" in table and "0.2200" in table and "v2" in table
    # sass runs diff is DVC's metrics diff, then its params diff, of the two tags: what changed, nothing else
    capfd.readouterr()
    assert runs.diff_runs(project, "20220501", "20220502") == 0
    lines = [line.split() for line in capfd.readouterr().out.splitlines()]
    assert lines == [["Path", "Metric", "day-20220501", "day-20220502", "Change"],
                     ["metrics/metrics.json", "rows.sass.macro.ndcg@50", "0.21", "0.22", "0.01"],
                     ["Path", "Param", "day-20220501", "day-20220502"], ["params.yaml", "version", "1", "2"]]

    # into a folder: day 1's outputs (dvc get --rev day-20220501), the workspace untouched (it holds day 3)
    out = tmp_path / "restored"
    tag, restored = runs.restore(project, "20220501", to=out)
    assert tag == "day-20220501" and restored == ["indexes/s0", "indexes/s1", "indexes/s2", "models/sass"]
    assert (out / "models/sass/content.txt").read_text() == "models/sass version 1\n"
    assert (out / "indexes/s2/sub/more.bin").read_bytes() == bytes(range(6))
    assert not list(out.rglob(".gitignore"))
    assert (project / "models/sass/content.txt").read_text() == "models/sass version 3\n"
    assert runs.format_restored(tag, restored, out) == (
        f"restored day-20220501 (dvc get --rev day-20220501) into {out}: indexes/s0, indexes/s1, indexes/s2, "
        "models/sass")
    note = runs.format_restored(tag, restored, None).splitlines()[1]
    assert note.startswith("note: dvc.lock still describes")

    # into the workspace
    runs.restore(project, "20220502")
    assert (project / "models/sass/content.txt").read_text() == "models/sass version 2\n"
    assert (project / "indexes/s0/content.txt").read_text() == "indexes/s0 version 2\n"
    assert not list(project.glob(".models.*")), "no temporary folders left behind"

    # the local cache is gone: DVC fetches the objects from the remote
    shutil.rmtree(project / ".dvc" / "cache")
    runs.restore(project, "20220501", to=tmp_path / "from_remote")
    assert (tmp_path / "from_remote/indexes/s1/content.txt").read_text() == "indexes/s1 version 1\n"
    with pytest.raises(FileNotFoundError):
        runs.restore(project, "20220503", to=tmp_path / "x")  # day 3 was never pushed, and the cache is gone

    with pytest.raises(FileNotFoundError, match="recorded runs: 20220501, 20220502, 20220503"):
        runs.restore(project, "20220509")


def test_rerecording_a_day_moves_its_tag_and_commits_only_the_run_files(project: Path) -> None:
    run_all(project)
    (project / "notes.txt").write_text("not part of a run\n")
    runs.record_run(project, "20220501", {"attempt": 1}, push=False)
    first = sh("git", "rev-parse", "day-20220501^{commit}", cwd=project)
    set_version(project, 2)
    run_all(project)
    runs.record_run(project, "20220501", {"attempt": 2}, push=False)
    assert json.loads(sh("git", "tag", "-l", "--format=%(contents)", "day-20220501", cwd=project))["attempt"] == 2
    assert sh("git", "rev-parse", "day-20220501^{commit}", cwd=project) != first
    # the day tag moved; each run keeps its own tag
    assert sh("git", "tag", "-l", cwd=project).split() == ["day-20220501", "run-20220501-01", "run-20220501-02"]
    assert sh("git", "rev-parse", "run-20220501-01^{commit}", cwd=project) == first
    assert "notes.txt" not in sh("git", "ls-files", cwd=project)
    # the same files again: no new commit, the tag stays on it
    head = sh("git", "rev-parse", "HEAD", cwd=project)
    runs.record_run(project, "20220501", {"attempt": 3}, push=False)
    assert sh("git", "rev-parse", "HEAD", cwd=project) == head
    assert sh("git", "rev-parse", "run-20220501-03^{commit}", cwd=project) == head  # a run of its own, same commit


def test_sass_runs_cli(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import runs as cli

    assert cli.main(["--root", str(project), "list"]) == 0
    assert "no runs recorded" in capsys.readouterr().out
    run_all(project)
    assert cli.main(["--root", str(project), "record", "20220501"]) == 0
    assert cli.main(["--root", str(project), "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("["):])[0]["day"] == "20220501"
    assert cli.main(["--root", str(project), "restore", "20220501", "--to", str(project / "back")]) == 0
    assert "models/sass" in capsys.readouterr().out
    assert (project / "back/models/sass/content.txt").exists()
    assert run_main(cli.main, ["--root", str(project), "restore", "19990101"]) == EXIT_MISSING
    assert capsys.readouterr().err.startswith("error: no recorded run 19990101")
    assert run_main(cli.main, ["--root", str(project), "restore", "yesterday"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == [
        "error: not a day or run: 'yesterday' (want YYYYMMDD, an ISO date or a run tag run-YYYYMMDD-NN)"]


def git_as_test(root: Path, *args: str) -> str:
    return sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args, cwd=root)


def tag_meta(root: Path, tag: str) -> dict:
    return json.loads(sh("git", "tag", "-l", "--format=%(contents)", tag, cwd=root))


def test_every_run_of_a_day_lists_and_restores_by_its_run_tag(project: Path, tmp_path: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    """The issue: two runs landing on one day showed as one row. Each run now has its own immutable tag."""
    from pipelines import runs as cli

    set_version(project, 1)
    run_all(project)
    runs.record_run(project, "20220501", {"run_id": "scheduled__2022-05-01T02:00:00+00:00"}, push=False)
    run1 = sh("git", "rev-parse", "run-20220501-01", cwd=project)   # the tag object itself
    set_version(project, 2)
    run_all(project)
    assert runs.record_run(project, "20220501", {"run_id": "manual__2026-03-11T09:00:00+00:00"},
                           push=False) == "day-20220501"
    runs.record_run(project, "20220502", push=False)

    # two tags for the two runs of the day, on different commits; the first one was not touched
    assert sh("git", "tag", "-l", "run-*", cwd=project).split() == ["run-20220501-01", "run-20220501-02",
                                                                     "run-20220502-01"]
    assert sh("git", "rev-parse", "run-20220501-01", cwd=project) == run1
    c1, c2, day = (sh("git", "rev-parse", f"{t}^{{commit}}", cwd=project)
                   for t in ("run-20220501-01", "run-20220501-02", "day-20220501"))
    assert c1 != c2 and day == c2  # the day tag is the day's latest run
    m1, m2 = tag_meta(project, "run-20220501-01"), tag_meta(project, "run-20220501-02")
    assert m1["run_id"].startswith("scheduled__") and m1["run_tag"] == "run-20220501-01"
    assert m1["end_date"] == "20220501" and m1["recorded_at"] and m1["day"] == "20220501"
    assert tag_meta(project, "day-20220501") == m2   # the same message on the run's and the day's tag
    assert runs.current_run_tag(project, "20220501") == "run-20220501-02"

    listed = runs.list_runs(project)
    assert [(r["day"], r["run_tag"], r["current"]) for r in listed] == [
        ("20220501", "run-20220501-01", False), ("20220501", "run-20220501-02", True),
        ("20220502", "run-20220502-01", True)]
    assert [r["tag"] for r in listed] == [r["run_tag"] for r in listed]
    assert listed[0]["run_id"] == "scheduled__2022-05-01T02:00:00+00:00" and listed[2]["run_id"] is None
    assert [r["ndcg@50"]["sass"] for r in listed] == pytest.approx([0.21, 0.22, 0.22])
    assert [r["version"] for r in listed] == ["v1", "v2", "v2"]
    assert all(r["recorded_at"] for r in listed)
    table = runs.format_runs(listed).splitlines()
    assert table[0].split() == ["day", "run", "recorded", "(UTC)", "popular", "ndcg@50", "sass", "ndcg@50",
                                "published", "version"]
    body = [line for line in table[2:] if line[3:11].isdigit()]
    assert len(body) == 3
    assert [line.split()[:3] for line in body] == [["20220501", "01", "scheduled"], ["*", "20220501", "02"],
                                                   ["*", "20220502", "01"]]
    assert "manual" in body[1] and "0.2100" in body[0] and "v1" in body[0] and "0.2200" in body[1]
    assert table[-1].startswith("* the day's current run")

    # a rerun with identical files: no new commit, but a run (and a tag) of its own
    runs.record_run(project, "20220501", {"run_id": "manual__2026-03-11T10:00:00+00:00"}, push=False)
    assert sh("git", "rev-parse", "run-20220501-03^{commit}", cwd=project) == c2
    assert sh("git", "rev-parse", "run-20220501-01", cwd=project) == run1
    listed = runs.list_runs(project)
    assert [(r["run_tag"], r["current"]) for r in listed if r["day"] == "20220501"] == [
        ("run-20220501-01", False), ("run-20220501-02", False), ("run-20220501-03", True)]
    assert len([line for line in runs.format_runs(listed).splitlines() if "20220501" in line]) == 3

    # restore and diff take a run tag as well as a day (the day's current run)
    assert runs.restore(project, "run-20220501-01", to=tmp_path / "first")[0] == "run-20220501-01"
    assert (tmp_path / "first/models/sass/content.txt").read_text() == "models/sass version 1\n"
    assert (tmp_path / "first/indexes/s2/sub/more.bin").read_bytes() == bytes(range(6))
    assert runs.restore(project, "20220501", to=tmp_path / "current")[0] == "day-20220501"
    assert (tmp_path / "current/models/sass/content.txt").read_text() == "models/sass version 2\n"
    capfd.readouterr()
    assert runs.diff_runs(project, "run-20220501-01", "20220501") == 0
    lines = [line.split() for line in capfd.readouterr().out.splitlines()]
    assert lines[:2] == [["Path", "Metric", "run-20220501-01", "day-20220501", "Change"],
                         ["metrics/metrics.json", "rows.sass.macro.ndcg@50", "0.21", "0.22", "0.01"]]
    assert cli.main(["--root", str(project), "diff", "run-20220501-01", "run-20220501-02"]) == 0
    assert ["metrics/metrics.json", "rows.sass.macro.ndcg@50", "0.21", "0.22", "0.01"] in [
        line.split() for line in capfd.readouterr().out.splitlines()]
    assert cli.main(["--root", str(project), "diff", "run-20220501-02", "run-20220501-03"]) == 0
    assert capfd.readouterr().out == ""   # one commit: nothing changed
    assert cli.main(["--root", str(project), "list", "--json"]) == 0
    out = capfd.readouterr().out
    as_json = json.loads(out[out.index("["):])
    assert [(r["run_tag"], r["current"]) for r in as_json][:2] == [("run-20220501-01", False),
                                                                   ("run-20220501-02", False)]
    assert as_json[0]["run_id"] == "scheduled__2022-05-01T02:00:00+00:00" and as_json[0]["recorded_at"]

    # an unknown run tag, a malformed one: one line each, with the project's exit codes
    with pytest.raises(runs.MissingFile, match=r"runs of 20220501: run-20220501-01, run-20220501-02, run-20220501-03"):
        runs.restore(project, "run-20220501-09")
    assert run_main(cli.main, ["--root", str(project), "restore", "run-20220501-09"]) == EXIT_MISSING
    assert capfd.readouterr().err.splitlines() == [
        "error: no recorded run run-20220501-09 (no git tag run-20220501-09; runs of 20220501: run-20220501-01, "
        "run-20220501-02, run-20220501-03)"]
    assert run_main(cli.main, ["--root", str(project), "diff", "20220501", "run-20220503-01"]) == EXIT_MISSING
    assert capfd.readouterr().err.splitlines() == [
        "error: no recorded run run-20220503-01 (no git tag run-20220503-01; runs of 20220503: none)"]
    assert run_main(cli.main, ["--root", str(project), "restore", "run-2022-05-01"]) == EXIT_BAD_INPUT
    assert len(capfd.readouterr().err.splitlines()) == 1


def test_runs_recorded_before_run_tags_still_list(project: Path, tmp_path: Path) -> None:
    """A day recorded by the earlier record_run (a day- tag only) is one row; recording that day again keeps
    it as a run of its own (a run tag on its commit) before the day tag moves."""
    run_all(project)
    runs.record_run(project, "20220430", push=False)
    # what the earlier record_run left: the day tag with its metadata, no run tag
    old = {"day": "20220430", "recorded_at": "2022-05-01T03:00:00+00:00", "pushed": False,
           "run_id": "scheduled__2022-04-30T02:00:00+00:00"}
    git_as_test(project, "tag", "-d", "run-20220430-01")
    git_as_test(project, "tag", "-f", "-a", "day-20220430", "-m", json.dumps(old), "day-20220430^{commit}")
    old_commit = sh("git", "rev-parse", "day-20220430^{commit}", cwd=project)
    set_version(project, 2)
    run_all(project)
    runs.record_run(project, "20220501", push=False)

    listed = runs.list_runs(project)
    assert [(r["day"], r["tag"], r["run_tag"], r["current"]) for r in listed] == [
        ("20220430", "day-20220430", None, True), ("20220501", "run-20220501-01", "run-20220501-01", True)]
    assert listed[0]["recorded_at"] == old["recorded_at"] and listed[0]["run_id"] == old["run_id"]
    assert listed[0]["version"] == "v1"
    table = runs.format_runs(listed).splitlines()
    assert any(line.split()[:4] == ["*", "20220430", "-", "scheduled"] for line in table), table
    assert len([line for line in table if "2022043" in line or "20220501" in line]) == 2
    runs.restore(project, "20220430", to=tmp_path / "old")
    assert (tmp_path / "old/models/sass/content.txt").read_text() == "models/sass version 1\n"

    # the old day is recorded again: its earlier run gets a run tag first, so both stay listed
    runs.record_run(project, "20220430", push=False)
    assert sh("git", "rev-parse", "run-20220430-01^{commit}", cwd=project) == old_commit
    kept = tag_meta(project, "run-20220430-01")
    assert kept["run_id"] == old["run_id"] and kept["tagged_from"] == "day-20220430"
    assert runs.current_run_tag(project, "20220430") == "run-20220430-02"
    listed = runs.list_runs(project)
    assert [(r["run_tag"], r["current"]) for r in listed] == [
        ("run-20220430-01", False), ("run-20220501-01", True), ("run-20220430-02", True)]


def test_run_tags_are_valid_git_refs_and_sort_by_number() -> None:
    assert runs.run_tag_name("20220501", 1) == "run-20220501-01"
    assert runs.run_tag_name("2022-05-01", 12) == "run-20220501-12"
    assert runs.run_tag_name("20220501", 100) == "run-20220501-100"
    for name in ("run-20220501-01", "run-20220501-100"):
        assert subprocess.run(["git", "check-ref-format", f"refs/tags/{name}"]).returncode == 0
    with pytest.raises(runs.NotADay):
        runs.resolve_run(Path("/nonexistent"), "run-20220501")
