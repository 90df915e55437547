"""Publishing a run's files: versions are installed whole and ``current`` moves by one rename.

The decision itself is tests/pipelines/test_publish_gate.py; the stage end to end runs in tests/pipelines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sass_retrieval.atomic import temp_path
from sass_retrieval.publish import current_version, install_version, point_current, sweep_stale
from sass_retrieval.publish_run import validation_passed


def test_validation_must_have_run_and_succeeded(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    assert not validation_passed(summary)
    summary.write_text(json.dumps({"success": False}))
    assert not validation_passed(summary)
    summary.write_text(json.dumps({"success": True}))
    assert validation_passed(summary)


def test_a_version_is_installed_whole_and_reused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "models/sass").mkdir(parents=True)
    (src / "models/sass/model.pt").write_bytes(b"w")
    (src / "metrics.json").write_text("{}")
    root = tmp_path / "published"
    v = install_version(root, "20220501-abc", {"models/sass": src / "models/sass", "metrics.json": src / "metrics.json"},
                        {"served.json": '{"row": "sass"}\n'})
    assert sorted(p.relative_to(v).as_posix() for p in v.rglob("*")) == [
        "metrics.json", "models", "models/sass", "models/sass/model.pt", "served.json"]
    assert [p.name for p in (root / "versions").iterdir()] == ["20220501-abc"]   # no temporary left
    (src / "metrics.json").write_text('{"changed": 1}')
    assert install_version(root, "20220501-abc", {"metrics.json": src / "metrics.json"}) == v
    assert (v / "metrics.json").read_text() == "{}"   # a version is never modified


def test_a_failed_install_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "published"
    with pytest.raises(FileNotFoundError):
        install_version(root, "v1", {"metrics.json": tmp_path / "missing.json"})
    assert not (root / "versions/v1").exists() and list((root / "versions").iterdir()) == []


def test_current_moves_by_one_rename(tmp_path: Path) -> None:
    root = tmp_path / "published"
    a, b = (root / "versions/a"), (root / "versions/b")
    a.mkdir(parents=True)
    b.mkdir()
    point_current(root, a)
    assert current_version(root) == a.resolve() and os.readlink(root / "current") == "versions/a"
    point_current(root, b)
    assert current_version(root) == b.resolve()
    assert sorted(p.name for p in root.iterdir()) == ["current", "versions"]   # no link left aside


def test_the_publish_sweep_removes_a_killed_installs_leftovers_and_nothing_in_service(tmp_path: Path) -> None:
    root = tmp_path / "published"
    a = root / "versions/20220501-abc"
    (a / "indexes").mkdir(parents=True)
    point_current(root, a)
    staged = temp_path(root / "versions" / "20220502-def")   # install_version's folder, killed while filling it
    (staged / "models").mkdir(parents=True)
    link = temp_path(root / "current", "")                   # point_current's link, killed before the rename
    link.symlink_to("versions/20220502-def")
    (root / "decisions.jsonl").write_text("{}\n")
    assert sweep_stale(root) == 2
    assert sorted(p.name for p in root.iterdir()) == ["current", "decisions.jsonl", "versions"]
    assert [p.name for p in (root / "versions").iterdir()] == ["20220501-abc"]
    assert current_version(root) == a.resolve()
