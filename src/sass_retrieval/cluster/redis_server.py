"""A private Redis server: the Celery broker between the scheduler and the workers.

127.0.0.1 only, a free port, a password (new at every start), nothing saved to disk (``save ""``, no append
only file): a broker's queue is lost with the server, which a restart of the whole cluster may lose. The
settings, password included, are in a config file of mode 600 rather than on the command line, which every
local user can read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis

from . import binaries
from .credentials import write_private
from .ports import LOOPBACK
from .processes import ClusterError, ManagedProcess, spawn, stop, wait_until


@dataclass
class RedisServer:
    process: ManagedProcess
    port: int
    password: str

    @property
    def url(self) -> str:
        """Celery's broker URL (database 0)."""
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    def stop(self, grace: float = 10.0) -> None:
        stop([self.process], grace=grace)


def start_redis(home: Path, log: Path, port: int, *, password: str, timeout: float = 30.0) -> RedisServer:
    """Starts the server and waits until it answers PING."""
    program = binaries.redis_server()
    if program is None:
        raise ClusterError(f"redis: redis-server not installed ({binaries.INSTALL_HINT})")
    folder = home / "services" / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "redis.conf"
    write_private(config, "\n".join([
        f"bind {LOOPBACK}", f"port {port}", "protected-mode yes", 'save ""', "appendonly no",
        "daemonize no", 'logfile ""', f'dir "{folder}"', f"requirepass {password}", ""]))
    process = spawn("redis", [str(program), str(config)], log=log, cwd=folder,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    server = RedisServer(process, port, password)

    def answers() -> bool:
        try:
            with redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=2) as client:
                return bool(client.ping())
        except redis.exceptions.RedisError:
            return False

    try:
        wait_until(answers, timeout=timeout, what=f"redis on {LOOPBACK}:{port}", watch=[process])
    except BaseException:
        server.stop(grace=2)
        raise
    return server
