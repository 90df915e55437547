"""Task workspaces against a real S3-compatible server (moto's server mode on loopback), without Airflow: each
stage runs in an empty checkout of the run's commit, pulls its inputs from the DVC remote, pushes its outputs
and hands its dvc.lock entry on; a remote that stops during a push fails the task in one line naming it, and
the retry succeeds once it is back; the published-model store never shows a half-published version.

The DAG running these on Celery workers is tests/cluster/test_sass_daily_cluster.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dvc_object_key, tiny_airflow_project

from sass_retrieval import published_store
from sass_retrieval.cluster.ports import free_port
from sass_retrieval.cluster.s3_server import REMOTE_URL, S3Server, spawn_s3, wait_s3
from sass_retrieval.orchestration import workspace
from sass_retrieval.publish import current_version, point_current

pytestmark = pytest.mark.slow
DAY = "20220429"


def start_s3(home: Path, port: int | None = None, keys: tuple[str, str] = ("test-key", "test-secret")) -> S3Server:
    home.mkdir(parents=True, exist_ok=True)
    server = spawn_s3(home, home / "s3.log", port or free_port(), access_key=keys[0], secret_key=keys[1],
                      env={"PATH": "/usr/bin:/bin"})
    wait_s3(server)
    return server


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    server = start_s3(tmp_path / "s3")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop(grace=2)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_airflow_project(tmp_path / "proj", commit=True)


def settings_for(project: Path, root: Path) -> workspace.Settings:
    return workspace.Settings.from_env(project, {"SASS_WORKSPACE_ROOT": str(root), **_env()})


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("SASS_", "AWS_"))}


def remote_keys(server: S3Server) -> set[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket="sass-dvc")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_stages_run_in_empty_workspaces_and_hand_their_outputs_on_through_the_remote(
        s3: S3Server, project: Path, tmp_path: Path) -> None:
    settings = settings_for(project, tmp_path / "ws")
    commit = workspace.run_commit(settings.repo_url)
    results = {}
    for stage in ("params", "ingest", "validate"):
        upstream = list(results.values())
        results[stage] = workspace.run_task(settings, [stage], commit, DAY, upstream, stage)
        assert list(settings.root.iterdir()) == [], "a workspace was left behind"
    assert set(results["params"]["files"]) == {"reports/params.ok"}        # cache: false travels as XCom
    keys = remote_keys(s3)
    for stage in ("ingest", "validate"):
        entry = results[stage]["lock"][stage]
        assert [o["path"] for o in entry["outs"]] == {"ingest": ["data/store"],
                                                      "validate": ["reports/validation"]}[stage]
        assert all(dvc_object_key(o["md5"]) in keys for o in entry["outs"]), stage
        assert set(results[stage]["seconds"]) >= {"checkout", "stage", "push"}
    # validate read ingest's output: it pulled the very folder ingest pushed
    dep = {d["path"]: d["md5"] for d in results["validate"]["lock"]["validate"]["deps"]}
    assert dep["data/store"] == results["ingest"]["lock"]["ingest"]["outs"][0]["md5"]
    assert results["validate"]["seconds"]["pull"] > 0
    # the run cache went along: `dvc pull --run-cache` elsewhere restores these stages without running them
    assert any(k.startswith("remote/runs/") for k in keys)


def test_a_push_to_a_stopped_remote_fails_in_one_line_and_the_retry_succeeds(
        s3: S3Server, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(project, tmp_path / "ws")
    commit = workspace.run_commit(settings.repo_url)
    push = workspace.Workspace.push

    def stop_then_push(self: workspace.Workspace, stages) -> None:
        s3.stop(grace=1)           # the remote goes away after the stage ran, before its outputs are pushed
        push(self, stages)

    params = workspace.run_task(settings, ["params"], commit, DAY, [], "params")   # pushes nothing: cache: false
    monkeypatch.setattr(workspace.Workspace, "push", stop_then_push)
    with pytest.raises(workspace.RemoteFailed) as failed:
        workspace.run_task(settings, ["ingest"], commit, DAY, [params], "ingest")
    message = str(failed.value)
    assert "\n" not in message and REMOTE_URL in message and "dvc push" in message, message
    assert list(settings.root.iterdir()) == []
    monkeypatch.setattr(workspace.Workspace, "push", push)
    back = start_s3(tmp_path / "s3-again", s3.port, (s3.access_key, s3.secret_key))   # the same endpoint, back
    try:
        retried = workspace.run_task(settings, ["ingest"], commit, DAY, [params], "ingest")
        assert dvc_object_key(retried["lock"]["ingest"]["outs"][0]["md5"]) in remote_keys(back)
    finally:
        back.stop(grace=2)


def test_settings_name_the_missing_remote(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="SASS_DVC_REMOTE_URL"):
        workspace.Settings.from_env(tmp_path, {"SASS_WORKSPACE_ROOT": str(tmp_path)})


def version(root: Path, vid: str) -> Path:
    folder = root / "versions" / vid
    (folder / "models/sass").mkdir(parents=True)
    (folder / "models/sass/model.pt").write_bytes(vid.encode())
    (folder / "served.json").write_text(json.dumps({"row": "sass"}))
    point_current(root, folder)
    (root / "decisions.jsonl").open("a").write(json.dumps({"version": vid}) + "\n")
    return folder


def test_the_published_store_never_shows_a_half_published_version(s3: S3Server, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = "s3://sass-dvc/published"
    assert published_store.current_id(url) is None and published_store.pull(url, tmp_path / "empty") is None
    local = tmp_path / "publisher"
    version(local, "20220428-aaa")
    assert published_store.push(local, url) == "20220428-aaa"
    # a reader elsewhere gets the version in service, whole, and the decisions
    reader = tmp_path / "reader"
    assert published_store.pull(url, reader) == "20220428-aaa"
    assert current_version(reader).name == "20220428-aaa"
    assert (current_version(reader) / "models/sass/model.pt").read_bytes() == b"20220428-aaa"
    assert len((reader / "decisions.jsonl").read_text().splitlines()) == 1
    # the next publish dies after uploading its files, before `current` moves: readers keep the old version
    version(local, "20220429-bbb")
    real = published_store.filesystem

    class Dying:   # the store's filesystem, whose small writes (decisions, current) fail
        def __init__(self, fs) -> None:
            self.fs = fs

        def __getattr__(self, name: str):
            return getattr(self.fs, name)

        def pipe_file(self, path: str, data: bytes, **kw) -> None:
            raise ConnectionError("the network went away")

    def dying(u: str):
        fs, root = real(u)
        return Dying(fs), root

    monkeypatch.setattr(published_store, "filesystem", dying)
    with pytest.raises(published_store.StoreError, match=f"published-model store {url}"):
        published_store.push(local, url)
    monkeypatch.setattr(published_store, "filesystem", real)
    assert published_store.current_id(url) == "20220428-aaa"
    assert published_store.pull(url, tmp_path / "reader2") == "20220428-aaa"
    assert published_store.push(local, url) == "20220429-bbb"       # the retry completes it
    assert published_store.pull(url, reader) == "20220429-bbb"
    assert (current_version(reader) / "models/sass/model.pt").read_bytes() == b"20220429-bbb"
