"""The service's settings: where the version in service, the features and the store are, and how it reloads.

``sass serve`` resolves them once (paths not given on the command line come from params.yaml) and hands
them to every uvicorn worker process through ``SASS_SERVE_*`` environment variables, from which each
worker's app factory (``FACTORY``) reads them back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("serve")

FACTORY = "sass_retrieval.serve.app:create_app"   # the import string uvicorn starts each worker's app with
LOOPBACK = ("127.0.0.1", "localhost", "::1")

ENV = {"published": "SASS_SERVE_PUBLISHED", "features": "SASS_SERVE_FEATURES", "store": "SASS_SERVE_STORE",
       "reload_interval": "SASS_SERVE_RELOAD_INTERVAL", "threads": "SASS_SERVE_THREADS"}


@dataclass(frozen=True)
class ServeSettings:
    published: Path               # the publish folder holding ``current`` (or one version folder)
    features: Path                # the workspace's split output (data/features)
    store: Path                   # the store, for the static user and item tables
    reload_interval: float = 5.0  # seconds between polls of ``current``; <= 0: never reload
    threads: int | None = None    # torch and FAISS threads per process; None: leave them as they are

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for worker processes started by uvicorn."""
        env = {ENV["published"]: str(self.published), ENV["features"]: str(self.features),
               ENV["store"]: str(self.store), ENV["reload_interval"]: str(self.reload_interval)}
        if self.threads is not None:
            env[ENV["threads"]] = str(self.threads)
        return env

    @classmethod
    def from_env(cls) -> ServeSettings:
        missing = [v for k, v in ENV.items() if k in ("published", "features", "store") and v not in os.environ]
        if missing:
            raise RuntimeError(f"sass serve: {', '.join(missing)} not set (start the service with `sass serve`)")
        threads = os.environ.get(ENV["threads"])
        return cls(published=Path(os.environ[ENV["published"]]), features=Path(os.environ[ENV["features"]]),
                   store=Path(os.environ[ENV["store"]]),
                   reload_interval=float(os.environ.get(ENV["reload_interval"], "5")),
                   threads=int(threads) if threads else None)


def resolve_settings(params_path: str | Path, *, published: str | None, features: str, store: str | None,
                     reload_interval: float, threads: int | None) -> ServeSettings:
    """The settings of ``sass serve``; ``published`` and ``store`` not given come from params.yaml
    (publish.dir, data.store_dir), which is read only then."""
    from ..config import load_params
    from ..run import safe_path

    params = load_params(params_path) if published is None or store is None else None
    return ServeSettings(
        published=Path(published).resolve() if published else safe_path(params.publish.dir),
        features=Path(features).resolve(),
        store=Path(store).resolve() if store else safe_path(params.data.store_dir),
        reload_interval=reload_interval, threads=threads)


def warn_if_exposed(host: str) -> None:
    """The service has no authentication: binding beyond this machine deserves a line in the log."""
    if host not in LOOPBACK:
        log.warning("binding %s: the service has no authentication; anyone who can reach this port can query it",
                    host)
