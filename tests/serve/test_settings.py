"""The service's settings: resolved from the command line and params.yaml, and passed to workers intact."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from support import cwd

from sass_retrieval.serve.settings import ServeSettings, resolve_settings, warn_if_exposed

ROOT = Path(__file__).resolve().parents[2]


def test_paths_not_given_come_from_params(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    with cwd(tmp_path):
        s = resolve_settings("params.yaml", published=None, features="feat", store=None, reload_interval=0.5,
                             threads=2)
        given = resolve_settings("missing.yaml", published="pub", features="feat", store="st",
                                 reload_interval=1.0, threads=None)   # params never read: the file may be absent
    from sass_retrieval.config import load_params

    params = load_params(tmp_path / "params.yaml")
    assert s.published == (tmp_path / params.publish.dir).resolve()
    assert s.store == (tmp_path / params.data.store_dir).resolve()
    assert s.features == (tmp_path / "feat").resolve() and s.threads == 2 and s.reload_interval == 0.5
    assert given.published == (tmp_path / "pub").resolve() and given.store == (tmp_path / "st").resolve()


def test_settings_survive_the_environment_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ServeSettings(published=Path("/p"), features=Path("/f"), store=Path("/s"), reload_interval=2.5, threads=3)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert ServeSettings.from_env() == s


def test_binding_beyond_this_machine_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="serve"):
        warn_if_exposed("127.0.0.1")
        assert not caplog.records
        warn_if_exposed("0.0.0.0")
    assert "no authentication" in caplog.text
