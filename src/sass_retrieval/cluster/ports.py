"""Free TCP ports on the loopback interface, for servers that must not collide with anything else running
(another cluster, a test's Airflow, a developer's PostgreSQL on 5432)."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nobody listens on now. All sockets stay open until every port is chosen, so
    the ports differ; another process may still take one before the server binds it (rare on loopback)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((LOOPBACK, 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port() -> int:
    return free_ports(1)[0]


def port_free(port: int) -> bool:
    """True when nothing listens on ``port`` of the loopback interface (a chosen port, e.g. 8080)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
