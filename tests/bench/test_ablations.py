"""bench/ablations.py: variants are the params with their knobs overridden, compared with the default on the
same pairs; a smoke run on the tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_bench


def test_every_variant_is_a_valid_override_of_the_shipped_params() -> None:
    """A variant naming a key the schema does not know (or a bad value) fails here, not hours into a run."""
    from sass_retrieval.config import load_params

    ablations = load_bench("ablations")
    base = load_params(ablations.ROOT / "params.yaml")
    for name, knobs in ablations.VARIANTS.items():
        varied = base.override(knobs, source=name)
        for dotted, value in knobs.items():
            section, *rest = dotted.split(".")
            node = getattr(varied, section)
            for part in rest:
                node = getattr(node, part)
            assert node == value or list(node) == list(value), (name, dotted)


def test_unknown_variants_stop_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_bench("ablations").main(["--variants", "default,gate=maybe", "--work", str(tmp_path)])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_smoke_run_on_the_tiny_synthetic_project(tmp_path: Path, tiny_params_file: Path, tiny_end: int) -> None:
    out = tmp_path / "results" / "ablations"
    assert load_bench("ablations").main([
        "--source", "synthetic", "--params", str(tiny_params_file), "--end-date", str(tiny_end),
        "--train-days", "3", "--test-days", "2", "--seeds", "0", "--variants", "default,logq=off",
        "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    assert list(payload["results"]) == ["default", "logq=off"]
    assert set(payload["significance"]) == {"logq=off"}          # each variant against the default
    ci = payload["significance"]["logq=off"]["all"]["macro"]
    assert ci["lo"] <= ci["diff"] <= ci["hi"]
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Ablations of sass on the synthetic generator")
    assert "| logq=off |" in md and "- command: `python bench/ablations.py --source synthetic" in md
