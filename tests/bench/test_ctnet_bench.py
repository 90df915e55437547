"""bench/ctnet.py: --rows and --variant make the continual rows of one run, each a set of params overrides."""

from __future__ import annotations

import pytest
from support import load_bench


def test_variants_are_ctnet_with_their_overrides_beside_the_chosen_rows() -> None:
    ctnet = load_bench("ctnet")
    rows = ctnet.continual_rows("pf_all", ["ct_lr:ctnet.adapter_lr=0.1",
                                           "ct_two:train.incremental_epochs=1;ctnet.adapt_output=false"])
    assert list(rows) == ["ctnet", "pf_all", "ct_lr", "ct_two"]
    assert rows["ct_lr"] == ({"ctnet.adapters": True, "ctnet.adapter_lr": 0.1}, False)
    assert rows["ct_two"][0] == {"ctnet.adapters": True, "train.incremental_epochs": 1, "ctnet.adapt_output": False}
    assert rows["pf_all"] == ctnet.CONTINUAL["pf_all"]


@pytest.mark.parametrize("names,variants,message", [
    ("pf_none", [], "unknown continual row 'pf_none'"),
    ("", ["ct_lr"], "expected NEW_NAME:key=value"),
    ("pf_all", ["pf_all:ctnet.adapter_lr=0.1"], "a new row name"),
    ("", ["dssm_single:ctnet.adapter_lr=0.1"], "a new row name"),
])
def test_bad_rows_and_variants_stop_with_one_line(names: str, variants: list[str], message: str) -> None:
    ctnet = load_bench("ctnet")
    with pytest.raises(SystemExit, match=message):
        ctnet.continual_rows(names, variants)


def test_negated_turns_a_minus_b_into_b_minus_a() -> None:
    """The row − dssm_single table is dssm_single − row turned round: the interval flips with the sign."""
    ctnet = load_bench("ctnet")
    ci = {"diff": 0.01, "lo": -0.002, "hi": 0.02, "pairs": 7, "significant": False}
    assert ctnet.negated(ci) == {"diff": -0.01, "lo": -0.02, "hi": 0.002, "pairs": 7, "significant": False}
