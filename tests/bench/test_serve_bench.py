"""bench/serve_bench.py: its load client counts what it sent, what failed, what the pre-ranker and the re-ranker
ordered and what the server said it took; a smoke run of the real server on tiny synthetic setups: retrieval
alone, with the rank stage, and with the rank stage and the list re-ranker."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from support import load_bench


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as uvicorn serves

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        q = parse_qs(urlsplit(self.path).query)
        user = int(q["user"][0])
        if user % 5 == 0:            # every fifth user: a server error the client must count, not time
            body, status = b'{"error": "boom"}', 500
        else:
            body = json.dumps({"items": [1, 2], "fallback": "popular" if user % 2 else None,
                               "stages": ["popular"] if user % 2 else ["retrieval", "rank"]
                               + (["rerank"] if user % 4 == 0 else []),
                               "took_ms": 0.5}).encode()
            status = 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_drive_counts_requests_errors_and_fallbacks() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        users = np.arange(1, 11)            # 2 of 10 users (5, 10) fail; 5 of 10 (odd) fall back
        out = load_bench("serve_bench").drive(f"http://127.0.0.1:{server.server_port}", "s0", users, k=2,
                                             requests=200, rate=0, duration=30, concurrency=3, seed=1)
    finally:
        server.shutdown()
    picks = np.random.default_rng(1).choice(users, size=200)
    assert out["sent"] == 200
    assert out["errors"] == int((picks % 5 == 0).sum())
    assert out["ok"] == 200 - out["errors"]
    assert out["fallbacks"] == int(((picks % 2 == 1) & (picks % 5 != 0)).sum())
    assert out["ranked"] == int(((picks % 2 == 0) & (picks % 5 != 0)).sum())
    assert out["reranked"] == int(((picks % 4 == 0) & (picks % 5 != 0)).sum()) > 0
    assert out["server_p99_ms"] == 0.5
    assert 0 < out["p50_ms"] <= out["p99_ms"]


@pytest.mark.slow
def test_smoke_run_of_the_real_server_on_a_tiny_synthetic_setup(tmp_path: Path) -> None:
    """The real `python -m pipelines.serve` over loopback at a tiny size; the KuaiRand setup, without a published
    folder, is skipped and says so. synthetic_rerank trains its re-ranker (rerank.stage.fit_rerank) here."""
    from sass_retrieval.config import load_params

    out = tmp_path / "results" / "serve"
    assert load_bench("serve_bench").main([
        "--setups", "kuairand,synthetic,synthetic_rank,synthetic_rerank", "--items", "2000", "--requests", "40", "--rate", "20", "--warmup", "5",
        "--workers", "1", "--duration", "30", "--startup-timeout", "300", "--work", str(tmp_path / "work"),
        "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    row, ranked, reranked = payload["rows"]
    assert row["setup"] == "synthetic" and row["index"].lower().startswith("hnsw")
    assert row["sent"] == 40 and row["errors"] == 0 and row["ok"] == 40
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["stages"] == "retrieval" and row["ranked"] == 0 and row["target_p99_ms"] == 10.0
    assert ranked["setup"] == "synthetic_rank" and ranked["stages"] == "retrieval+rank"
    assert ranked["ok"] == ranked["ranked"] == 40 and ranked["target_p99_ms"] == 15.0   # every answer reranked
    top_k = load_params(Path(__file__).resolve().parents[2] / "params.yaml").rank.top_k   # what rank_setup records
    assert ranked["rank_top_k"] == top_k and "retrieval_score" in ranked["rank_features"]
    assert reranked["setup"] == "synthetic_rerank" and reranked["stages"] == "retrieval+rank+rerank"
    assert reranked["ok"] == reranked["reranked"] == reranked["ranked"] == 40 and reranked["errors"] == 0
    assert reranked["target_p99_ms"] == 25.0 and reranked["target_rps"] == 100.0 and reranked["rate"] == 20
    shape = load_params(Path(__file__).resolve().parents[2] / "params.yaml").rerank
    assert (reranked["rerank_candidates"], reranked["rerank_length"]) == (shape.candidates, shape.length)
    assert payload["target"]["rerank_p99_ms"] == 25.0
    assert payload["skipped"] == ["kuairand: no --published given"]
