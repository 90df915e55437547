"""sass_retrieval.errors: every project error has one class, one exit code and one line a person can act on.

The classification is checked on the project's own exception classes (not copies), so a new error class
that forgets its base fails here; the entry points are checked statically (each `python -m pipelines.X`
goes through ``run_main``) and through ``sass`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sass_retrieval import errors
from sass_retrieval.config import ConfigError
from sass_retrieval.data.kuairand import SourceError
from sass_retrieval.data.schema import SchemaError
from sass_retrieval.data.store import MissingDays
from sass_retrieval.data.validation import ValidationFailed
from sass_retrieval.index.faiss_index import IndexLoadError
from sass_retrieval.models.checkpoint import CheckpointError
from sass_retrieval.orchestration.dvc_graph import GraphError
from sass_retrieval.runlock import RunLocked

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("exc", "code"), [
    (SchemaError("a.parquet: table 'interactions' is missing column(s) ['is_click']"), errors.EXIT_BAD_INPUT),
    (SourceError("/x: KuaiRand release folder: not found"), errors.EXIT_BAD_INPUT),
    (ValidationFailed([{"message": "interactions (20220501): column is_click: rows failed"}]), errors.EXIT_BAD_INPUT),
    (MissingDays("src: date: rows for every requested day: no rows for 20220501"), errors.EXIT_BAD_INPUT),
    (errors.NotADay("not a day: 'x'"), errors.EXIT_BAD_INPUT),
    (ConfigError("params.yaml: finetune.lr: must be > 0"), errors.EXIT_BAD_CONFIG),
    (GraphError("dvc.yaml: stage 'x': unknown variable"), errors.EXIT_BAD_CONFIG),
    (CheckpointError("models/sass/model.pt: missing"), errors.EXIT_MISSING),
    (IndexLoadError("indexes/sass/s0/index.faiss", "missing"), errors.EXIT_MISSING),
    (errors.MissingFile("data/features: no split output"), errors.EXIT_MISSING),
    (FileNotFoundError(2, "No such file or directory", "data/features/s0/meta.json"), errors.EXIT_MISSING),
    (RunLocked("sass run: another run is in progress"), errors.EXIT_BUSY),
    (ZeroDivisionError("division by zero"), errors.EXIT_INTERNAL),
])
def test_each_error_class_has_its_exit_code(exc: BaseException, code: int) -> None:
    assert errors.exit_code(exc) == code


def test_the_codes_are_distinct_and_only_retryable_ones_are_retried() -> None:
    codes = [errors.EXIT_INTERNAL, errors.EXIT_BAD_INPUT, errors.EXIT_BAD_CONFIG, errors.EXIT_MISSING, errors.EXIT_BUSY]
    assert len(set(codes)) == len(codes)
    assert set(errors.FINAL_EXIT_CODES) == {errors.EXIT_BAD_INPUT, errors.EXIT_BAD_CONFIG, errors.EXIT_MISSING}


def test_project_errors_stay_what_callers_catch() -> None:
    """The new bases are added beside the old ones: ``except ValueError`` / ``FileNotFoundError`` still work."""
    assert isinstance(ConfigError("x"), ValueError) and isinstance(SchemaError("x"), ValueError)
    assert isinstance(SourceError("x"), FileNotFoundError) and isinstance(errors.MissingFile("x"), FileNotFoundError)
    assert isinstance(CheckpointError("x"), RuntimeError) and isinstance(RunLocked("x"), RuntimeError)


def test_format_is_one_error_line_per_problem_then_a_hint() -> None:
    exc = ValidationFailed([{"message": "interactions (a.parquet): column is_click: not null failed: observed 3"},
                            {"message": "users (users.parquet): column user_id: unique failed: observed 2"}],
                           Path("reports/validation"))
    lines = errors.format_error(exc)
    assert lines[:2] == ["error: interactions (a.parquet): column is_click: not null failed: observed 3",
                         "error: users (users.parquet): column user_id: unique failed: observed 2"]
    assert lines[2].startswith("hint: validation failed: ") and "published model stays in place" in lines[2]
    assert "reports/validation/data_docs/index.html" in lines[2]
    missing = FileNotFoundError(2, "No such file or directory", "data/features/s0/meta.json")
    assert errors.format_error(missing) == ["error: data/features/s0/meta.json: No such file or directory"]
    assert errors.format_error(ZeroDivisionError("division by zero")) == ["error: ZeroDivisionError: division by zero"]


def _raiser(exc: BaseException):
    def main(argv: list[str]) -> int:
        assert "--debug" not in argv   # the wrapper consumes it; the stage's parser never sees it
        raise exc
    return main


def test_run_main_prints_one_line_and_the_traceback_only_with_debug(capsys, monkeypatch) -> None:
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    bad = ConfigError("params.yaml: window.train_days: must be >= 1: got 0")
    assert errors.run_main(_raiser(bad), ["--params", "params.yaml"]) == errors.EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: params.yaml: window.train_days: must be >= 1: got 0"]
    assert errors.run_main(_raiser(bad), ["--debug"]) == errors.EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].startswith("error: params.yaml")
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    assert errors.run_main(_raiser(bad), []) == errors.EXIT_BAD_CONFIG
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(capsys, monkeypatch) -> None:
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.run_main(_raiser(ZeroDivisionError("division by zero")), []) == errors.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: ZeroDivisionError: division by zero"


def test_debug_after_a_separator_is_not_ours(monkeypatch) -> None:
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.debug_requested(["a", "--", "--debug"]) == (False, ["a", "--", "--debug"])
    assert errors.debug_requested(["x", "--debug"]) == (True, ["x"])


def test_every_stage_entry_point_goes_through_run_main() -> None:
    """`python -m pipelines.X`, as dvc.yaml runs it, formats errors the same way as `sass X` (the other
    commands are reached through `sass`, whose main() wraps them)."""
    import re

    modules = set(re.findall(r"python -m pipelines\.(\w+)", (ROOT / "dvc.yaml").read_text()))
    assert {"check_params", "ingest", "validate", "split", "train", "index", "evaluate", "publish"} <= modules
    offenders = []
    for name in sorted(modules):
        tree = ast.parse((ROOT / "pipelines" / f"{name}.py").read_text())
        mains = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        if not mains or "run_main(main)" not in ast.unparse(mains[0]):
            offenders.append(name)
    assert not offenders, f"entry points without sass_retrieval.errors.run_main: {offenders}"


def test_sass_unknown_command_and_a_busy_workspace(tmp_path: Path, capsys, monkeypatch) -> None:
    from support import cwd

    from sass_retrieval import cli
    from sass_retrieval.runlock import run_lock

    assert cli.main(["nope"]) == errors.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("error: sass: unknown command 'nope'")
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with cwd(tmp_path), run_lock(tmp_path / ".locks" / "run.lock", "sass run"):
        assert cli.main(["run"]) == errors.EXIT_BUSY
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: sass run: another run is in progress")
