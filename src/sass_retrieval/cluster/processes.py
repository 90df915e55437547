"""The cluster's child processes: each in its own process group, its output in one log file, stopped as a
whole tree.

Why process groups: every component starts children of its own (the api-server's uvicorn workers, a Celery
worker's pool, PostgreSQL's backends). One signal to the group reaches all of them; a signal to the parent
alone leaves orphans behind. Why descendants as well: the Task SDK's supervisor puts each task runner in a
process group of its own (so it can signal the task's tree), which a signal to the worker's group misses, and
a runner whose worker died is re-parented to init, where no walk from the worker finds it any more. So
stopping keeps a list of every descendant it has seen and kills what is left of that list at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class ClusterError(RuntimeError):
    """A component or service did not start, or stopped: the message names it and its log file."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it can not be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class ManagedProcess:
    """One started process: its name (``scheduler``, ``worker-w0``, ``postgres``...), the Popen and its log."""

    name: str
    popen: subprocess.Popen
    log: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_descendants(self) -> list[psutil.Process]:
        """Adds the current descendants to :attr:`seen` (they may leave the tree later) and returns all of
        :attr:`seen` that still run, the process itself first."""
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            self.seen.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        return [p for p in self.seen.values() if _running(p)]

    def failure(self, what: str = "exited") -> ClusterError:
        """The error for a process that stopped when it should run: its exit code and the end of its log."""
        code = self.popen.poll()
        return ClusterError(f"{self.name} {what} (exit code {code}); log {self.log}:\n{log_tail(self.log)}")


def _running(process: psutil.Process) -> bool:
    """Runs and is not a zombie (``is_running`` also checks the pid was not reused)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spawn(name: str, argv: Sequence[str], *, log: Path, env: dict[str, str], cwd: Path,
          user: str | None = None) -> ManagedProcess:
    """Starts ``argv`` in a new session (so a new process group), stdin from /dev/null, stdout and stderr
    appended to ``log``. ``user``: run as that user (the caller is root), with that user's primary group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    identity: dict = {}
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with open(log, "ab") as out:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=env, cwd=cwd, start_new_session=True, **identity)
    process = ManagedProcess(name, popen, log)
    process.remember_descendants()
    return process


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal_each(processes: Iterable[psutil.Process], sig: int) -> None:
    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def stop(processes: Sequence[ManagedProcess], *, grace: float = 20.0, first: int = signal.SIGTERM) -> None:
    """Stops every process with its whole tree: ``first`` (SIGTERM) to each process group and to each
    descendant that left it (a task runner), up to ``grace`` seconds to exit, then SIGKILL to each group and
    to every descendant still running, also those re-parented meanwhile. Every Popen is reaped (no zombies
    left by this process)."""
    for p in processes:
        family = p.remember_descendants()
        if p.alive():
            _signal_group(p.pid, first)
        _signal_each([q for q in family if _group(q) not in (p.pid, None)], first)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(p.remember_descendants() for p in processes):
            break
        time.sleep(0.2)
    for p in processes:
        _signal_group(p.pid, signal.SIGKILL)
        _signal_each(p.remember_descendants(), signal.SIGKILL)
    for p in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(timeout=10)
    psutil.wait_procs([q for p in processes for q in p.seen.values() if _running(q)], timeout=10)


def kill(process: ManagedProcess) -> None:
    """SIGKILL at once to the process's group and every descendant: a machine dying, nothing shuts down
    cleanly. Waits until all of them are gone."""
    family = process.remember_descendants()
    _signal_group(process.pid, signal.SIGKILL)
    _signal_each(family, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=10)
    psutil.wait_procs([p for p in family if _running(p)], timeout=10)


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, watch: Sequence[ManagedProcess] = (),
               interval: float = 0.5) -> None:
    """Polls ``ready()`` until it is true. Raises :class:`ClusterError` naming ``what`` when ``timeout``
    seconds pass, or at once when one of ``watch`` exits (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        for p in watch:
            if not p.alive():
                raise p.failure(f"exited while waiting for {what}")
        if ready():
            return
        if time.monotonic() > deadline:
            logs = "; ".join(f"log {p.log}" for p in watch)
            tails = "\n".join(f"--- {p.name} ({p.log})\n{log_tail(p.log, 20)}" for p in watch)
            raise ClusterError(f"{what}: not ready after {timeout:.0f}s ({logs})\n{tails}")
        time.sleep(interval)
