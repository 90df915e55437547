"""Atomic reload: publish moves ``current``, the service loads the new version aside and swaps it in."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from sass_retrieval.publish import point_current

pytestmark = pytest.mark.slow


def warm_user(project: dict) -> int:
    users = pd.read_parquet(project["features"] / "s0" / "users.parquet")
    return int(users["user_id"].iloc[0])


def ask(c: TestClient, user: int) -> dict:
    r = c.get("/recommend", params={"user": user, "scenario": "s0", "k": 5})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_reload_switches_every_response_to_the_new_version(served_project: dict, published_copy: Path,
                                                             make_settings) -> None:
    from sass_retrieval.serve.app import create_app

    a, b, user = served_project["a"].name, served_project["b"].name, warm_user(served_project)
    rows = {a: served_project["row_a"], b: served_project["row_b"]}
    with TestClient(create_app(make_settings(published_copy))) as c:
        assert ask(c, user)["version"] == a
        seen: list[dict] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def hammer() -> None:   # requests in flight while the new version loads and is swapped in
            try:
                while not stop.is_set():
                    seen.append(ask(c, user))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        point_current(published_copy, published_copy / "versions" / b)
        assert c.app.state.service.reload() is True
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert not errors and seen
        # every answer came from one whole version: its id and its row belong together
        assert all(rows[r["version"]] == r["row"] for r in seen)
        after = ask(c, user)
        assert after["version"] == b and after["row"] == served_project["row_b"]
        assert c.get("/version").json()["version"] == b
        assert c.app.state.service.reload() is False        # same target: nothing to do


def test_the_poller_notices_a_new_current(served_project: dict, published_copy: Path, make_settings) -> None:
    from sass_retrieval.serve.app import create_app

    b = served_project["b"].name
    with TestClient(create_app(make_settings(published_copy, interval=0.1))) as c:
        assert c.get("/healthz").json()["version"] == served_project["a"].name
        point_current(published_copy, published_copy / "versions" / b)
        deadline = time.monotonic() + 60
        while c.get("/healthz").json()["version"] != b:
            assert time.monotonic() < deadline, "the poller did not load the new version"
            time.sleep(0.1)
        assert ask(c, warm_user(served_project))["version"] == b


def test_a_broken_new_version_keeps_the_old_one_in_service(served_project: dict, published_copy: Path,
                                                           make_settings, caplog) -> None:
    from sass_retrieval.serve.app import create_app

    a = served_project["a"].name
    broken = published_copy / "versions" / "broken"
    shutil.copytree(published_copy / "versions" / a, broken)
    model = broken / "models" / served_project["row_a"] / "model.pt"
    model.write_bytes(model.read_bytes()[:100])                 # truncated: refused before torch reads it
    with TestClient(create_app(make_settings(published_copy))) as c:
        service = c.app.state.service
        point_current(published_copy, broken)
        with caplog.at_level(logging.ERROR, logger="sass_retrieval.serve.service"):
            assert service.reload() is False
            assert service.reload() is False                    # the same broken target is not retried
        lines = [r for r in caplog.records if r.name == "sass_retrieval.serve.service" and r.levelno >= logging.ERROR]
        assert len(lines) == 1 and "still serving " + a in lines[0].getMessage()
        assert "manifest hash" in lines[0].getMessage()
        health = c.get("/healthz").json()
        assert health["version"] == a and "broken" in health["last_reload_error"]
        assert ask(c, warm_user(served_project))["version"] == a
        # the next good version is loaded as usual
        point_current(published_copy, published_copy / "versions" / served_project["b"].name)
        assert service.reload() is True and c.get("/healthz").json()["last_reload_error"] is None
