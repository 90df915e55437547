"""experiment.write_results: the .md people read and a compact .json whose floats keep 6 significant digits."""

from __future__ import annotations

import json

import numpy as np

from sass_retrieval.experiment import significant, write_results


def test_significant_rounds_every_float_and_leaves_the_rest() -> None:
    obj = {"a": 0.123456789, "b": [1.0 / 3.0, 2, "x", (12345.678901,)], "c": {"d": -1.2345678e-9, "e": True}}
    assert significant(obj) == {"a": 0.123457, "b": [0.333333, 2, "x", [12345.7]],
                                "c": {"d": -1.23457e-9, "e": True}}


def test_write_results_writes_the_markdown_and_a_rounded_json(tmp_path) -> None:
    prov = {"command": "python bench/x.py", "date": "today", "machine": "m", "cores": 2, "torch_threads": 1,
            "commit": "abc"}
    write_results(tmp_path / "x", "X", prov, "| a |\n", {"score": float(np.float64(0.1234567891)), "n": 3})
    assert (tmp_path / "x.md").read_text().startswith("# X\n\n- command: `python bench/x.py`")
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["score"] == 0.123457 and data["n"] == 3 and data["provenance"]["commit"] == "abc"
