"""`sass published pull`: a serving host's publish folder takes the store's version in service."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sass_retrieval.cli import main as sass
from sass_retrieval.publish import current_version, point_current

ROOT = Path(__file__).resolve().parents[2]


def test_pull_makes_the_local_publish_folder_serve_the_stores_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    from sass_retrieval import published_store

    monkeypatch.chdir(tmp_path)
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.delenv("SASS_PUBLISHED_URL", raising=False)
    assert sass(["published", "pull"]) == 4                                  # no store named: one line, exit 4
    assert "no store URL" in capsys.readouterr().err
    store = tmp_path / "store"
    assert sass(["published", "pull", "--from", str(store)]) == 0            # nothing published yet
    assert current_version(tmp_path / "published") is None
    publisher = tmp_path / "publisher"
    version = publisher / "versions" / "20220501-abc"
    version.mkdir(parents=True)
    (version / "served.json").write_text(json.dumps({"row": "sass"}))
    point_current(publisher, version)
    published_store.push(publisher, str(store))
    monkeypatch.setenv("SASS_PUBLISHED_URL", str(store))
    assert sass(["published", "pull"]) == 0
    assert current_version(tmp_path / "published").name == "20220501-abc"
    assert "version 20220501-abc in service" in capsys.readouterr().out
