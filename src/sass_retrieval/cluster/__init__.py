"""A multi-worker Airflow on one machine (CeleryExecutor, Redis, PostgreSQL, an S3 stand-in) for tests,
benchmarks and trials: :class:`Cluster` in Python, ``python -m sass_retrieval.cluster`` (``make
airflow-cluster``) in a shell.

The names are loaded lazily: every Airflow process imports :mod:`.hostname` (``[core] hostname_callable``),
which must not pull in psycopg2, redis and psutil with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import Cluster
    from .processes import ClusterError

__all__ = ["Cluster", "ClusterError"]


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from .cluster import Cluster

        return Cluster
    if name == "ClusterError":
        from .processes import ClusterError

        return ClusterError
    raise AttributeError(name)
