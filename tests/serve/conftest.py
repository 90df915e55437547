"""A tiny project with two real published versions: A (published by the publish stage) and B (the other
row's model and indexes of the same run, installed the way publish installs a version)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import cwd


@pytest.fixture(scope="session")
def served_project(built_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines import publish
    from sass_retrieval.publish import SERVED_FILE, current_version, install_version, served_row

    root = tmp_path_factory.mktemp("serve") / "project"
    shutil.copytree(built_project, root, symlinks=True)
    with cwd(root):
        assert publish.main([]) == 0
    published = root / "published"
    a = current_version(published)
    row_a = served_row(a)
    row_b = "dssm_mixed" if row_a == "sass" else "sass"
    b = install_version(published, "B-" + a.name, {f"models/{row_b}": root / "models" / row_b,
                                                  "indexes": root / "indexes" / row_b,
                                                  "metrics.json": root / "metrics" / "metrics.json"},
                        {SERVED_FILE: json.dumps({"row": row_b}) + "\n"})
    return {"root": root, "published": published, "features": root / "data" / "features",
            "store": root / "data" / "store", "a": a, "b": b, "row_a": row_a, "row_b": row_b}


@pytest.fixture
def published_copy(served_project: dict, tmp_path: Path) -> Path:
    """A private copy of the publish folder (``current`` -> A) that a test may re-point."""
    dst = tmp_path / "published"
    shutil.copytree(served_project["published"], dst, symlinks=True)
    return dst


@pytest.fixture
def make_settings(served_project: dict):
    """``make_settings(published, interval=0.0)``: service settings over the project's features and store."""
    from sass_retrieval.serve.settings import ServeSettings

    def make(published: Path, interval: float = 0.0) -> ServeSettings:
        return ServeSettings(published=published, features=served_project["features"],
                             store=served_project["store"], reload_interval=interval)

    return make
