"""A real ``sass serve --workers 2`` over a multi-objective (sass_mt) version: a new version published while
requests are in flight, and concurrent requests with different objective weights.

A response does not say which worker process wrote it, but a TCP connection is accepted, and served to
its end, by one worker: each client here holds one keep-alive connection, and the operating system says
which worker holds its server end (``Server.worker_of``). So one connection's responses are one worker's
responses, in the order that worker answered them.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from sass_retrieval.publish import install_version, point_current

pytestmark = pytest.mark.slow

SAFETY = 300.0   # seconds: a bound on a stuck test (a loaded 2-core runner), never a measurement
K = 10
WEIGHTS = [None, "click=1", "long_view=1", "click=1,long_view=0.5,like=0.2", "like=1"]


@dataclass(frozen=True)
class Query:
    user: int
    scenario: str
    weights: str | None

    def params(self) -> dict[str, Any]:
        return {"user": self.user, "scenario": self.scenario, "k": K,
                **({"weights": self.weights} if self.weights else {})}


@dataclass(frozen=True)
class Sample:
    """One response of a load: the connection (numbered per client) and the worker that carried it."""

    conn: int
    pid: int
    query: Query
    status: int
    body: dict[str, Any]


def warm_users(features: Path, scenario: str, n: int) -> list[int]:
    """``n`` users with behaviour in ``scenario``: the model answers them, so their answers depend on the
    version and on the weights (the popular fallback depends on neither)."""
    users = pd.read_parquet(features / scenario / "users.parquet")
    return [int(u) for u in users.loc[users["exp_count"] > 0, "user_id"].iloc[:n]]


def queries(project: dict) -> list[Query]:
    """Every weighting for a few warm users of two scenarios, the weights varying fastest."""
    users = [(u, "s0") for u in warm_users(project["features"], "s0", 3)]
    users += [(u, "s1") for u in warm_users(project["features"], "s1", 2)]
    return [Query(u, s, w) for u, s in users for w in WEIGHTS]


def answer(body: dict[str, Any]) -> tuple:
    """What must not change between a request alone and the same request among others."""
    return (body["version"], body["row"], body["weights"], body["fallback"], tuple(body["items"]),
            tuple(body["scores"]))


def client_port(response: httpx.Response) -> int:
    """The local port of the connection ``response`` came over."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def ask(client: httpx.Client, q: Query) -> dict[str, Any]:
    r = client.get("/recommend", params=q.params())
    assert r.status_code == 200, r.text
    return r.json()


def pinned_clients(server: Any, per_worker: int, workers: int = 2,
                   attempts: int = 400) -> dict[int, list[httpx.Client]]:
    """worker pid -> ``per_worker`` clients of one keep-alive connection each, held by that worker. New
    connections are opened until every worker has accepted enough of them (the kernel decides which)."""
    by: dict[int, list[httpx.Client]] = {}
    try:
        for _ in range(attempts):
            c = httpx.Client(base_url=server.base, timeout=60,
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            r = c.get("/healthz")
            assert r.status_code == 200, r.text
            held = by.setdefault(server.worker_of(client_port(r)), [])
            if len(held) < per_worker:
                held.append(c)
            else:
                c.close()
            assert len(by) <= workers, f"more worker processes than --workers {workers}: {sorted(by)}"
            if len(by) == workers and all(len(cs) == per_worker for cs in by.values()):
                return by
    except BaseException:
        close_all(by)
        raise
    close_all(by)
    raise AssertionError(f"{attempts} connections did not reach {workers} workers {per_worker} times each: "
                         f"{ {pid: len(cs) for pid, cs in by.items()} }")


def close_all(by: dict[int, list[httpx.Client]]) -> None:
    for cs in by.values():
        for c in cs:
            c.close()


def wait_until(done: Callable[[], bool], timeout: float = SAFETY) -> bool:
    """Poll ``done`` until it holds or the safety limit passes; the caller asserts on the result."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def drive(server: Any, client: httpx.Client, qs: list[Query], stop: threading.Event, out: list[Sample],
          errors: list[str], limit: int = 100_000) -> None:
    """Requests over ``client`` one after another until ``stop`` (or ``limit``, a safety bound), each
    recorded with the worker that answered it (looked up again if the client had to reconnect)."""
    port, pid, conn = -1, -1, -1
    try:
        for i in range(limit):
            if stop.is_set():
                return
            q = qs[i % len(qs)]
            r = client.get("/recommend", params=q.params())
            if client_port(r) != port:
                port = client_port(r)
                pid, conn = server.worker_of(port), conn + 1
            out.append(Sample(conn, pid, q, r.status_code, r.json() if r.status_code == 200 else {"text": r.text}))
    except Exception as exc:  # noqa: BLE001 - every failure is reported by the test's assertions
        errors.append(f"{type(exc).__name__}: {exc}")


def went_back(log: list[Sample], new: str) -> bool:
    """Whether one connection of ``log`` (one worker's answers, in order) had an answer from another
    version after one from ``new``."""
    seen: set[int] = set()
    for s in list(log):
        if s.body.get("version") == new:
            seen.add(s.conn)
        elif s.conn in seen:
            return True
    return False


def serve_args(project: dict, published: Path, reload_interval: float) -> list[str]:
    return ["--published", str(published), "--features", str(project["features"]), "--store",
            str(project["store"]), "--reload-interval", str(reload_interval), "--threads", "1",
            "--log-level", "info"]


def alone(clients: dict[int, list[httpx.Client]], qs: list[Query]) -> dict[int, dict[Query, tuple]]:
    """Each query asked alone (one request at a time) of each worker: worker pid -> query -> answer."""
    return {pid: {q: answer(ask(cs[0], q)) for q in qs} for pid, cs in clients.items()}


def test_a_version_published_under_load_moves_each_worker_from_old_to_new_once(
        mt_published: dict, sass_server, tmp_path: Path) -> None:
    published = tmp_path / "published"
    shutil.copytree(mt_published["published"], published, symlinks=True)
    old, new = mt_published["old"], mt_published["new_id"]
    server = sass_server(mt_published["root"], *serve_args(mt_published, published, 0.2))
    qs = queries(mt_published)
    clients = pinned_clients(server, per_worker=2)
    try:
        before = alone(clients, qs)
        a, b = before.values()
        assert a == b                                            # both workers: the same answers...
        assert {v[0] for v in a.values()} == {old}               # ...from the old version
        assert all(v[3] is None for v in a.values())             # the model answered (no popular fallback)

        pinned = [c for cs in clients.values() for c in cs]
        logs: list[list[Sample]] = [[] for _ in pinned]
        errors: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=drive, args=(server, c, qs[i:] + qs[:i], stop, logs[i], errors))
                   for i, c in enumerate(pinned)]
        for t in threads:
            t.start()
        try:
            assert wait_until(lambda: bool(errors) or all(len(log) >= 3 for log in logs)), "no load"
            # publish, as the publish stage installs a version: copied aside and renamed in, then `current`
            point_current(published, install_version(published, new, mt_published["new_sources"],
                                                     mt_published["new_texts"]))
            # until every connection has had the new version a few times (or one went back: fail at once)
            switched = wait_until(lambda: bool(errors) or any(went_back(log, new) for log in logs) or all(
                sum(s.body.get("version") == new for s in list(log)) >= 3 for log in logs))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=SAFETY)
        assert not any(t.is_alive() for t in threads), "a client thread did not stop"
        assert not errors, errors
        samples = [s for log in logs for s in log]
        assert all(s.status == 200 for s in samples), [s.body for s in samples if s.status != 200][:3]
        assert {s.body["version"] for s in samples} <= {old, new}   # each response names one of the two
        for i, log in enumerate(logs):   # each connection (one worker, in order): old...old, then new...new
            assert not went_back(log, new), (i, [(s.conn, s.body["version"]) for s in log])
        assert switched, f"not every connection reached version {new}:\n{server.output()}"
        workers = set(clients)
        assert {s.pid for s in samples if s.body["version"] == old} == workers   # every worker served old,
        assert {s.pid for s in samples if s.body["version"] == new} == workers   # then every worker new

        after = alone(clients, qs)
        a_new, b_new = after.values()
        assert a_new == b_new and {v[0] for v in a_new.values()} == {new}
        # the two versions answer differently, so a response mixing them could not pass as either
        assert any(a[q][4] != a_new[q][4] for q in qs)
        expected = {old: a, new: a_new}
        for s in samples:   # and each response is its version's answer to its query
            assert answer(s.body) == expected[s.body["version"]][s.query], (s.query, s.body)
    finally:
        close_all(clients)


def test_concurrent_requests_with_different_weights_get_the_answers_they_get_alone(
        mt_published: dict, sass_server) -> None:
    server = sass_server(mt_published["root"], *serve_args(mt_published, mt_published["published"], 0))
    qs = queries(mt_published)
    one_each = pinned_clients(server, per_worker=1)
    try:
        by_worker = alone(one_each, qs)
    finally:
        close_all(one_each)
    expected = next(iter(by_worker.values()))
    assert all(answers == expected for answers in by_worker.values())   # the workers agree
    assert all(expected[q][3] is None for q in qs)                     # the model answered each
    for q in qs:   # the weights change the answer: one request's weights leaking into another would show
        assert len({expected[Query(q.user, q.scenario, w)][4] for w in WEIGHTS}) > 1, q

    clients = pinned_clients(server, per_worker=4)
    try:
        pinned = [c for cs in clients.values() for c in cs]
        # jobs[j] goes to connection j % len(pinned): at any moment the connections ask different weights
        jobs = [q for _ in range(4) for q in qs]
        shares = [jobs[i::len(pinned)] for i in range(len(pinned))]
        assert all(len({q.weights for q in share[:len(WEIGHTS)]}) > 1 for share in shares)
        start = threading.Barrier(len(pinned), timeout=SAFETY)

        def run(i: int) -> list[tuple[Query, int, tuple]]:
            start.wait()
            out, port, pid = [], -1, -1
            for q in shares[i]:
                r = pinned[i].get("/recommend", params=q.params())
                assert r.status_code == 200, r.text
                if client_port(r) != port:   # the connection's worker (again, had it to reconnect)
                    port = client_port(r)
                    pid = server.worker_of(port)
                out.append((q, pid, answer(r.json())))
            return out

        with ThreadPoolExecutor(max_workers=len(pinned)) as pool:
            results = [x for part in pool.map(run, range(len(pinned)), timeout=SAFETY) for x in part]
    finally:
        close_all(clients)
    assert len(results) == len(jobs)
    assert {pid for _, pid, _ in results} == set(by_worker)   # both workers answered concurrent requests
    for q, _, got in results:
        assert got == expected[q], (q, got, expected[q])
