"""Shared steps of the serving tests on the tiny published project (the ``served_project`` fixture): warm users,
loading its versions, and what a broken model file in a version must do (one line; the old version stays)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest


def warm_users(project: dict, scenario: str, n: int) -> list[int]:
    users = pd.read_parquet(project["features"] / scenario / "users.parquet")
    return [int(u) for u in users.loc[users["exp_count"] > 0, "user_id"].iloc[:n]]


def load(project: dict, target: Path):
    from sass_retrieval.serve.loader import load_version

    return load_version(target, project["features"], project["store"])


def assert_refused_in_one_line(project: dict, tmp_path: Path, breaking: Callable[[Path, str], None], match: str,
                               words: str) -> None:
    """A copy of version a broken by ``breaking(version, row)`` is refused at load, in one line naming ``words``."""
    from sass_retrieval.serve.loader import VersionLoadError

    bad = tmp_path / "bad"
    shutil.copytree(project["a"], bad)
    breaking(bad, project["row_a"])
    with pytest.raises(VersionLoadError, match=match) as err:
        load(project, bad)
    assert words in str(err.value) and "\n" not in str(err.value)


def reload_a_broken_version(project: dict, published_copy: Path, corrupt: Callable[[Path, str], None]):
    """A started service on version a; ``current`` then moves to a copy corrupted by ``corrupt(version, row)``.
    The reload fails, and version a is still in service: the caller checks what it still serves, then stops it."""
    from sass_retrieval.publish import point_current
    from sass_retrieval.serve.service import Service

    service = Service(published_copy, lambda target: load(project, target), interval=0)
    service.start()
    a = project["a"].name
    assert service.current is not None and service.current.run_id == a
    broken = published_copy / "versions" / "broken"
    shutil.copytree(published_copy / "versions" / a, broken)
    corrupt(broken, project["row_a"])
    point_current(published_copy, broken)
    assert service.reload() is False
    assert service.current.run_id == a and "\n" not in service.error
    return service
