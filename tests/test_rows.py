"""sass_retrieval.rows: one registry of the rows, light to import, and every row list derived from it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sass_retrieval import rows
from sass_retrieval.rows import CTNET, NO_MODEL, PER_SCENARIO, SHARED, spec


def test_every_row_is_declared_once_in_the_benchmark_order() -> None:
    assert rows.ROWS == ("popular", "dssm_mixed", "senet_mixed", "dssm_single", "sass_base", "sass", "ctnet",
                         "sass_mt")
    assert [s.name for s in rows.SPECS] == list(rows.REGISTRY) == list(rows.ROWS)
    assert all(s.description and "\n" not in s.description for s in rows.SPECS)


def test_the_row_lists_are_derived_from_the_specs() -> None:
    assert tuple(r for r in rows.ROWS if r != "popular") == rows.TRAINED_ROWS
    assert rows.CHALLENGERS == ("dssm_mixed", "senet_mixed", "sass_base", "ctnet", "sass_mt")
    assert rows.BENCHMARK_ROWS == ("dssm_mixed", "senet_mixed", "dssm_single", "sass_base", "ctnet", "sass_mt")
    assert rows.CANDIDATE == "sass" and spec("sass").daily and not spec("sass").challenger
    assert [s.name for s in rows.SPECS if s.multi_objective] == ["sass_mt"]
    assert [s.name for s in rows.SPECS if s.pretrained] == ["sass"]
    for s in rows.SPECS:
        assert not (s.challenger and s.daily), s.name          # a challenger competes with the daily candidate
        assert s.benchmark == (s.trained and not s.daily), s.name


def test_layouts_match_trainers() -> None:
    layout = {s.name: s.layout for s in rows.SPECS}
    assert layout == {"popular": NO_MODEL, "dssm_mixed": SHARED, "dssm_single": PER_SCENARIO, "sass_base": SHARED,
                      "sass": SHARED, "ctnet": CTNET, "sass_mt": SHARED, "senet_mixed": SHARED}
    trainers = {s.name: s.trainer.rpartition(":")[2] for s in rows.SPECS if s.trained}
    assert trainers == {"dssm_mixed": "train_shared", "dssm_single": "train_per_scenario", "sass_base": "train_shared",
                        "sass": "train_shared", "ctnet": "train_ctnet_row", "sass_mt": "train_shared",
                        "senet_mixed": "train_shared"}
    assert {s.name for s in rows.SPECS if s.arch == "dssm"} == {"dssm_mixed", "dssm_single", "ctnet"}


def test_every_trainer_resolves_to_a_function() -> None:
    for s in rows.SPECS:
        if s.trained:
            assert callable(rows.trainer(s)), s.name
    with pytest.raises(ValueError, match="nothing to train"):
        rows.trainer(spec("popular"))


def test_an_unknown_row_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown row 'sas'; choose from popular, dssm_mixed"):
        spec("sas")


def test_importing_the_registry_imports_no_torch() -> None:
    code = "import sys, sass_retrieval.rows, sass_retrieval.params_schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_train_stage_and_the_cli_offer_the_trained_rows() -> None:
    from pipelines import train

    with pytest.raises(SystemExit):
        train.main(["--row", "popular"])
    from sass_retrieval.cli import COMMANDS

    assert all(r in COMMANDS["train"][1] for r in rows.TRAINED_ROWS)
