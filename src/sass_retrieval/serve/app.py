"""The FastAPI application: ``/recommend``, ``/healthz`` and ``/version`` over the version in service.

``create_app`` is also the uvicorn factory (``sass_retrieval.serve.app:create_app``, ``factory=True``):
uvicorn needs an import string to start several worker processes, and each worker builds its own app
(and loads its own copy of the version) from the ``SASS_SERVE_*`` environment variables that
``sass serve`` sets (:meth:`~sass_retrieval.serve.settings.ServeSettings.to_env`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .loader import MAX_K, LoadedVersion, load_version
from .query import UnknownScenario, WeightsNotSupported, recommend
from .service import Service
from .settings import ServeSettings

log = logging.getLogger(__name__)


def _error(status: int, error: str, reason: str, **extra) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "reason": reason, **extra})


def _set_threads(n: int) -> None:
    """One thread per request: requests run concurrently in the threadpool, and per-request work is one
    user vector and one search, too small for intra-op parallelism to pay for its synchronisation."""
    import torch

    from ..index.faiss_index import set_threads

    torch.set_num_threads(n)
    set_threads(n)


def build_app(service: Service) -> FastAPI:
    """The routes over ``service``; its lifespan starts the first load and the reload poller."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="sass-retrieval", summary="Per-scenario top-k retrieval from the published model",
                  lifespan=lifespan)
    app.state.service = service

    def unavailable() -> JSONResponse:
        return _error(503, "unavailable", service.error or "no version loaded yet")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        version = service.current
        if version is None:
            return JSONResponse(status_code=503, content={"status": "unavailable",
                                                          "reason": service.error or "no version loaded yet"})
        return JSONResponse({"status": "ok", "version": version.run_id, "row": version.row,
                             "last_reload_error": service.error})

    @app.get("/version")
    def version_info() -> JSONResponse:
        version = service.current
        if version is None:
            return unavailable()
        return JSONResponse({**version.describe(), "last_reload_error": service.error})

    @app.get("/recommend")
    def recommend_route(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        version: LoadedVersion | None = service.current   # read once: this request's version throughout
        q = request.query_params
        user_text, scenario, k_text = q.get("user"), q.get("scenario"), q.get("k", "20")
        if user_text is None or user_text.strip() == "":
            return _error(400, "bad_request", "query parameter 'user' (an integer user id) is required")
        try:
            user = int(user_text)
        except ValueError:
            return _error(400, "bad_request", f"user must be an integer id, got {user_text!r}")
        try:
            k = int(k_text)
        except ValueError:
            return _error(400, "bad_request", f"k must be an integer in 1..{MAX_K}, got {k_text!r}")
        if not 1 <= k <= MAX_K:
            return _error(400, "bad_request", f"k must be in 1..{MAX_K}, got {k}")
        if not scenario:
            return _error(400, "bad_request", "query parameter 'scenario' is required")
        if version is None:
            return unavailable()
        # goal weights of the list re-ranker (click:1,diversity:0.3) and/or objective weights of a multi-objective
        # version (click=1,long_view=0.5): serve.query.split_weights
        weights = q.get("weights") or None
        try:
            rec = recommend(version, user, scenario, k, weights)
        except (WeightsNotSupported, ValueError) as exc:
            return _error(400, "bad_request", str(exc))
        except UnknownScenario:
            return _error(404, "unknown_scenario", f"scenario {scenario!r} has no index in version "
                                                   f"{version.run_id}", known=version.scenarios)
        return JSONResponse({"user": user, "scenario": scenario, "k": k, "weights": weights,
                             "goal_weights": rec.goal_weights, "utilities": rec.utilities,
                             "items": rec.items, "scores": rec.scores,
                             "fallback": rec.fallback, "reason": rec.reason, "served_by": rec.served_by,
                             "stages": list(rec.stages),
                             "version": version.run_id,
                             "row": version.row, "took_ms": round((time.perf_counter() - t0) * 1000, 3)})

    return app


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the ``SASS_SERVE_*`` environment; the uvicorn factory)."""
    settings = settings or ServeSettings.from_env()
    if not logging.getLogger().handlers:   # a worker process uvicorn spawned: log like the stages do
        logging.basicConfig(level=os.environ.get("SASS_LOG_LEVEL", "INFO"),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.threads is not None:
        _set_threads(settings.threads)

    def load(target: Path) -> LoadedVersion:
        return load_version(target, settings.features, settings.store)

    return build_app(Service(settings.published, load, settings.reload_interval))
