"""`sass serve` as it runs in production: a uvicorn process with two workers on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_uvicorn_workers_serve_the_published_version(served_project: dict) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "pipelines.serve", "--port", str(port), "--workers", "2",
           "--reload-interval", "0", "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=served_project["root"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.3)
        user = int(pd.read_parquet(served_project["features"] / "s0" / "users.parquet")["user_id"].iloc[0])
        with httpx.Client(base_url=base, timeout=10) as c:
            answers = [c.get("/recommend", params={"user": user, "scenario": "s0", "k": 5}) for _ in range(20)]
        assert all(r.status_code == 200 for r in answers)
        assert {r.json()["version"] for r in answers} == {served_project["a"].name}
        assert len({tuple(r.json()["items"]) for r in answers}) == 1       # every worker: the same answer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
