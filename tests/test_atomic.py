"""Atomic writes: a reader sees the old content or the new one, never a mix, and a failure leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sass_retrieval.atomic import atomic_path, staged_dir, swap_dir, temp_path, write_json, write_text


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
