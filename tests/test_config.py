"""sass_retrieval.config: dotted updates of params.yaml keep the file a user reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from sass_retrieval.config import set_dotted, update_params_file


def test_set_dotted_creates_levels_and_returns_the_previous_value() -> None:
    doc = {"a": {"b": 1}}
    assert set_dotted(doc, "a.b", 2) == 1
    assert set_dotted(doc, "x.y.z", "new") is None
    assert doc == {"a": {"b": 2}, "x": {"y": {"z": "new"}}}


def test_update_params_file_keeps_comments_and_other_values(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("# top comment\nwindow:\n  end_date: auto   # or YYYYMMDD\n  train_days: 8\nscenarios:\n"
                 "  names: [s0, s1]\n")
    previous = update_params_file(p, {"window.train_days": 4, "scenarios.names": ["1", "0"], "train.mode": "x"})
    assert previous == {"window.train_days": 8, "scenarios.names": ["s0", "s1"], "train.mode": None}
    text = p.read_text()
    assert "# top comment" in text and "# or YYYYMMDD" in text
    assert yaml.safe_load(text) == {"window": {"end_date": "auto", "train_days": 4},
                                    "scenarios": {"names": ["1", "0"]}, "train": {"mode": "x"}}
    assert [f.name for f in tmp_path.iterdir()] == ["params.yaml"]       # no temp file left
