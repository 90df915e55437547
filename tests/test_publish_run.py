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


def test_an_older_day_never_replaces_a_later_days_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Days that run at once (several workers) may publish out of order: the gate's yes for day 20220429 keeps
    the version of 20220430 in service, and says why; the same run publishes when the model in service is older."""
    from types import SimpleNamespace

    from sass_retrieval.publish_run import _decide_and_install, version_day

    def run_of(day: int) -> SimpleNamespace:
        publish = SimpleNamespace(challenger="dssm_mixed", tolerance=0.005)
        return SimpleNamespace(params=SimpleNamespace(publish=publish), window=SimpleNamespace(test_end=day))

    monkeypatch.chdir(tmp_path)   # the run's outputs, as the publish stage finds them in its workspace
    for f in ("models/sass/model.pt", "indexes/sass/s0/index.faiss"):
        (tmp_path / f).parent.mkdir(parents=True)
        (tmp_path / f).write_bytes(b"x")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"rows": {"sass": {"macro": {"ndcg@50": 0.9}},
                                            "dssm_mixed": {"macro": {"ndcg@50": 0.1}}}}))
    validation = tmp_path / "summary.json"
    validation.write_text(json.dumps({"success": True}))
    for day, expected in ((20220430, False), (20220428, True)):
        root = tmp_path / f"published-{day}"
        version = root / "versions" / f"{day}-abc"
        version.mkdir(parents=True)
        (version / "metrics.json").write_text(json.dumps({"rows": {"sass": {"macro": {"ndcg@50": 0.5}}}}))
        point_current(root, version)
        entry = _decide_and_install(run_of(20220429), root, metrics, tmp_path / "no-per-pair.npz", validation)
        assert entry["publish"] is expected, entry
        if expected:
            assert current_version(root).name == entry["version"] and entry["version"].startswith("20220429-")
        else:
            assert entry["reason"].startswith(f"kept {day}-abc, a later day's model")
            assert current_version(root) == version.resolve()
    assert version_day("20220430-32aa4ff978") == 20220430 and version_day("manual") == 0
