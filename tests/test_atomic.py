"""Atomic writes: a reader sees the old content or the new one, never a mix, and a failure leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sass_retrieval.atomic import (
    atomic_path,
    staged_dir,
    swap_dir,
    sweep_temps,
    temp_name_pattern,
    temp_path,
    write_json,
    write_text,
)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_temp_names_are_hidden_unique_siblings(tmp_path: Path) -> None:
    a, b = temp_path(tmp_path / "x.json"), temp_path(tmp_path / "x.json", ".new")
    assert a.parent == tmp_path and a.name.startswith(".x.json.") and a.name.endswith(".tmp")
    assert b.name.endswith(".new") and a != temp_path(tmp_path / "x.json")


@pytest.mark.parametrize("durable", [False, True])
def test_a_file_is_replaced_whole_or_not_at_all(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "sub" / "f.txt"
    write_text(path, "old", durable=durable)
    with pytest.raises(RuntimeError), atomic_path(path, durable=durable) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and listing(path.parent) == ["f.txt"]
    write_text(path, "new é", durable=durable)
    assert path.read_text(encoding="utf-8") == "new é" and listing(path.parent) == ["f.txt"]


def test_json_is_indented_sorted_and_stringifies_the_rest(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"b": 1, "a": tmp_path})
    text = (tmp_path / "m.json").read_text()
    assert text == json.dumps({"a": str(tmp_path), "b": 1}, indent=2)


def test_a_folder_is_swapped_in_whole_and_a_failed_one_leaves_the_old(tmp_path: Path) -> None:
    dest = tmp_path / "features"
    with staged_dir(dest) as new:
        (new / "a.parquet").write_text("1")
    assert listing(dest) == ["a.parquet"]
    with pytest.raises(RuntimeError), staged_dir(dest) as new:
        (new / "b.parquet").write_text("2")
        raise RuntimeError("failed split")
    assert listing(dest) == ["a.parquet"] and listing(tmp_path) == ["features"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.parquet").write_text("3")
    swap_dir(other, dest)
    assert listing(dest) == ["c.parquet"] and listing(tmp_path) == ["features"]   # the old one deleted


def test_a_sweep_removes_only_the_temporaries_this_module_names(tmp_path: Path, caplog) -> None:
    """What a kill leaves (a temp file, a staged folder, a temp link) goes; everything else stays."""
    import logging

    (tmp_path / "index.faiss").write_text("in service")
    left_file = temp_path(tmp_path / "index.faiss")
    left_file.write_text("half")
    left_dir = temp_path(tmp_path / "20220501-abc")
    (left_dir / "models").mkdir(parents=True)
    (left_dir / "models" / "model.pt").write_text("x")
    linked = tmp_path / "v1"
    linked.mkdir()
    left_link = temp_path(tmp_path / "v2")
    left_link.symlink_to(linked)                      # a link to a folder: the link goes, the folder stays
    old = temp_path(tmp_path / "features", ".old")    # swap_dir's aside copy: maybe the only one left
    old.mkdir()
    keep = [".index.faiss.notahexname.tmp", ".index.faiss." + "0" * 31 + ".tmp", ".gitignore", "x.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    nested = tmp_path / "sub"
    nested.mkdir()
    temp_path(nested / "deeper").write_text("not this folder")
    with caplog.at_level(logging.INFO, logger="sass_retrieval.atomic"):
        assert sweep_temps(tmp_path) == 3
    assert listing(tmp_path) == sorted([*keep, old.name, "index.faiss", "sub", "v1"])
    assert listing(linked) == [] and len(listing(nested)) == 1
    assert any("removed 3 stale temporaries" in r.getMessage() for r in caplog.records)
    assert sweep_temps(tmp_path) == 0 and sweep_temps(tmp_path / "absent") == 0


def test_a_sweep_for_one_destination_leaves_the_others(tmp_path: Path) -> None:
    link = temp_path(tmp_path / "current", "")
    link.symlink_to("versions/a")                     # dangling is fine: the link itself is the temporary
    other_link = temp_path(tmp_path / "currently", "")
    other_link.symlink_to("versions/a")
    tmp_file = temp_path(tmp_path / "current")        # the .tmp ending is not the ending asked for
    tmp_file.write_text("x")
    assert sweep_temps(tmp_path, "current", suffix="") == 1
    assert listing(tmp_path) == sorted([other_link.name, tmp_file.name])


def test_the_name_pattern_matches_what_temp_path_gives(tmp_path: Path) -> None:
    for dest, suffix in [("index.faiss", ".tmp"), ("current", ""), ("a b.json", ".npz")]:
        name = temp_path(tmp_path / dest, suffix).name
        assert temp_name_pattern(dest, suffix).fullmatch(name) and temp_name_pattern(None, suffix).fullmatch(name)
        assert not temp_name_pattern("other", suffix).fullmatch(name)
        assert not temp_name_pattern(dest, suffix).fullmatch(dest)
