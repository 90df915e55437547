"""Run a stage in this process and SIGKILL it at a chosen call: crash tests that kill for real.

A monkeypatched exception runs the writer's ``except``/``finally`` cleanup, which a real kill skips; a kill
timed with sleeps lands somewhere different on every machine. Here the stage runs unchanged, one library
function is wrapped, and at its n-th call whose path arguments contain a given text the process sends
itself SIGKILL, before or after the real call. Nothing else in the stage changes, and nothing after the
kill runs.

    python -c "import killpoint; killpoint.main()" os:replace /.current. 1 before -- pipelines.publish [args]

The folder of this file must be on the child's PYTHONPATH (:func:`command` does that). A child that never
reaches the point exits normally, so a test can tell "killed there" (returncode -SIGKILL) from "never got
there".
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def command(target: str, match: str, n: int, when: str, module: str, *args: str) -> list[str]:
    """The child's argv: run ``python -m module args`` with a kill at the n-th matching call of ``target``."""
    return [sys.executable, "-c", "import killpoint; killpoint.main()", target, match, str(n), when, "--",
            module, *args]


def child_env() -> dict[str, str]:
    """This environment with this folder on PYTHONPATH, so the child can import this module."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{path}" if path else str(HERE)}


def _paths(args: tuple[Any, ...]) -> list[str]:
    """The path arguments of a call as text; a file descriptor becomes the path it is open on (os.fsync)."""
    out = []
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool):
            with contextlib.suppress(OSError):
                out.append(os.readlink(f"/proc/self/fd/{a}"))
        elif isinstance(a, str | os.PathLike):
            out.append(os.fspath(a))
    return out


def arm(target: str, match: str, n: int, when: str) -> None:
    """Wrap ``target`` ("module:function") so its n-th call with a path argument containing ``match``
    kills this process, ``before`` the real call or ``after`` it returned."""
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    real: Callable[..., Any] = getattr(module, name)
    seen = 0

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        hit = any(match in p for p in _paths(args))
        if hit:
            seen += 1
        if hit and seen == n and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit and seen == n and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, wrapper)


def main(argv: list[str] | None = None) -> None:
    """``target match n when -- module args...``: arm the kill, then run the module as ``python -m`` would."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--")
    target, match, n, when = argv[:split]
    module, *args = argv[split + 1:]
    arm(target, match, int(n), when)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
