"""Errors a person can act on: the project's error classes, their exit codes, and the one wrapper that
turns them into lines a person (or Airflow) can act on.

Why one place: the same failure reaches a user through ``sass <command>``, ``python -m pipelines.<stage>``
(what dvc.yaml runs) and an Airflow task log. Each of them must say the same thing and exit with the same
code, so the exit code decides, in one table here, what a scheduler does next (retry or stop) and what a
person should fix (the data, the params, or an earlier stage).

=====  =====================  ========================================================================
code   class                  what to do
=====  =====================  ========================================================================
0      -                      nothing: the command succeeded
1      internal               a bug or an environment failure (disk full, killed...): the traceback is
                              printed; Airflow retries
2      bad input              the data (or the command line) is wrong: fix the file the line names
3      bad config             params.yaml (or dvc.yaml) is wrong: fix the key the line names
4      missing prerequisite   a file an earlier stage makes (features, checkpoint, index, recorded day)
                              is missing: run that stage first
5      busy                   another run holds the workspace: wait for it, then retry
=====  =====================  ========================================================================

Codes 2, 3 and 4 are final for the daily DAG (retrying can not fix them); 1 and 5 are retried.

An error of the project prints one line per problem, ``error: <file>: <column or key>: <rule>: <observed>``
(the fields that do not apply are left out), and at most one ``hint:`` line; the traceback only with
``--debug`` anywhere on the command line, or ``SASS_DEBUG=1``.

This module imports nothing heavy: every stage imports it (through ``config``), and the error classes of
the data, training and index modules derive from the bases here, so classifying an error never imports
torch or FAISS.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_BAD_CONFIG = 3
EXIT_MISSING = 4
EXIT_BUSY = 5
EXIT_INTERRUPTED = 130
# What a scheduler must not retry: the same inputs give the same failure.
FINAL_EXIT_CODES = (EXIT_BAD_INPUT, EXIT_BAD_CONFIG, EXIT_MISSING)
DEBUG_FLAG = "--debug"
DEBUG_ENV = "SASS_DEBUG"


class SassError(Exception):
    """Base of the project's own errors. The message names the file (and column or key) first;
    ``hint`` (optional) says what happens next or where to look."""

    exit_code = EXIT_INTERNAL
    kind = "internal"

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint


class BadInputError(SassError):
    """The data is wrong (schema, source files, validation): a person fixes the file the message names."""

    exit_code = EXIT_BAD_INPUT
    kind = "bad input"


class BadConfigError(SassError):
    """params.yaml or dvc.yaml is wrong: a person fixes the key the message names."""

    exit_code = EXIT_BAD_CONFIG
    kind = "bad config"


class MissingPrerequisiteError(SassError):
    """Something an earlier stage writes is missing (features, checkpoint, index, a recorded day)."""

    exit_code = EXIT_MISSING
    kind = "missing prerequisite"


class BusyError(SassError):
    """Another run holds the workspace; the same command succeeds once it is done."""

    exit_code = EXIT_BUSY
    kind = "busy"


class MissingFile(MissingPrerequisiteError, FileNotFoundError):
    """A file or folder an earlier step writes is absent; still a FileNotFoundError for callers."""


class NotADay(BadInputError, ValueError):
    """A value that should be a day (YYYYMMDD or an ISO date) is not one."""


def exit_code(exc: BaseException) -> int:
    """The exit code of an exception: the project's class decides; a plain FileNotFoundError (a file
    another step should have written) is a missing prerequisite; anything else is internal."""
    if isinstance(exc, SassError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, FileNotFoundError):
        return EXIT_MISSING
    return EXIT_INTERNAL


def format_error(exc: BaseException) -> list[str]:
    """The lines printed for ``exc``: ``error: ...`` per problem (a multi-line message is one problem a
    line), then ``hint: ...`` when the error carries one."""
    if isinstance(exc, FileNotFoundError) and not isinstance(exc, SassError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or 'not found'}"
    else:
        text = str(exc) or type(exc).__name__
    if exit_code(exc) == EXIT_INTERNAL:
        text = f"{type(exc).__name__}: {text}"
    lines = [f"error: {line}" for line in text.splitlines() if line.strip()]
    hint = getattr(exc, "hint", None)
    if hint:
        lines.append(f"hint: {hint}")
    return lines


def debug_requested(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """(debug?, argv without ``--debug``). Only arguments before a ``--`` separator are looked at, so a
    ``--debug`` meant for a wrapped command (``sass run -- ...``) passes through."""
    args = list(argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = DEBUG_FLAG in args[:cut]
    if debug:
        args = [a for a in args[:cut] if a != DEBUG_FLAG] + args[cut:]
    return debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"), args


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *,
             debug: bool | None = None) -> int:
    """Call an entry point's ``main(argv)`` and return its exit code, turning exceptions into lines.

    The project's errors and a missing file print :func:`format_error`'s lines (the traceback first with
    ``--debug`` / SASS_DEBUG=1); anything else is a bug or an environment failure and keeps its traceback,
    followed by the same ``error:`` line. Used by ``sass`` (``cli.main``) and every
    ``python -m pipelines.<stage>``, so the message and the code never depend on how a stage was started.
    ``debug``: already decided by the caller (``sass --debug <command>``); None: read argv and the env.
    """
    asked, args = debug_requested(sys.argv[1:] if argv is None else argv)
    debug = asked or bool(debug)
    try:
        return int(main(args) or 0)
    except SystemExit:
        raise  # argparse's usage errors (exit 2) and --help (exit 0) already printed their message
    except BaseException as exc:  # noqa: BLE001 - the one place that turns every failure into an exit code
        code = exit_code(exc)
        if debug or code == EXIT_INTERNAL:
            traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        for line in format_error(exc):
            print(line, file=sys.stderr)
        return code
