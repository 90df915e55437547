"""Fixtures of the benchmark smoke tests: the tiny synthetic project's params as a file a script reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import TINY_PARAMS, write_project


@pytest.fixture()
def tiny_params_file(tmp_path: Path) -> Path:
    """A params.yaml of the tiny synthetic project (tests/support.py), for a script's --params."""
    return write_project(tmp_path / "tiny") / "params.yaml"


@pytest.fixture()
def tiny_end() -> int:
    """The tiny generator's last day (YYYYMMDD), where its default window ends."""
    from sass_retrieval.data.synthetic import SyntheticConfig
    from sass_retrieval.params_schema import validate_params

    return SyntheticConfig.from_params(validate_params(TINY_PARAMS)).dates[-1]
