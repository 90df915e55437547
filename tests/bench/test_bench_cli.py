"""bench/bench_cli.py: recorded commands name no machine's folders; the params a benchmark reads are typed and
validated with their --set overrides; each source declares its scenarios."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from support import load_bench

ROOT = Path(__file__).resolve().parents[2]


def test_recorded_paths_are_relative_to_the_checkout_or_only_their_name() -> None:
    cli = load_bench("bench_cli")
    assert cli.recorded_path(str(ROOT.parent / "shared" / "data" / "kuairand_pure")) == "../shared/data/kuairand_pure"
    assert cli.recorded_path(str(ROOT / "bench" / ".work" / "q")) == "bench/.work/q"
    assert cli.recorded_path("/somewhere/else/run1") == "<dir>/run1"
    assert cli.recorded_path("bench/results/x") == "bench/results/x" and cli.recorded_path("0.5") == "0.5"
    args = cli.recorded_args(["--work", "/scratch/w", f"--data-dir={ROOT.parent / 'shared'}", "--seeds", "0"])
    assert args == ["--work", "<dir>/w", "--data-dir=../shared", "--seeds", "0"]


def test_provenance_records_the_script_relative_and_its_arguments() -> None:
    cli = load_bench("bench_cli")
    prov = cli.bench_provenance(str(ROOT / "bench" / "quality.py"), ["--out", "/scratch/out/q", "--seeds", "0"])
    assert prov["command"].endswith("bench/quality.py --out <dir>/q --seeds 0")
    assert str(ROOT) not in prov["command"]


def test_bench_params_apply_set_overrides_and_refuse_unknown_keys(tmp_path: Path) -> None:
    from sass_retrieval.config import ConfigError

    cli = load_bench("bench_cli")
    args = argparse.Namespace(params=str(ROOT / "params.yaml"), set=["finetune.epochs=2", "model.gate=none"])
    params = cli.bench_params(args)
    assert params.finetune.epochs == 2 and params.model.gate == "none"
    with pytest.raises(ConfigError, match="finetune"):
        cli.bench_params(argparse.Namespace(params=str(ROOT / "params.yaml"), set=["finetune.epochz=2"]))


def test_each_source_declares_its_reported_scenarios_and_other() -> None:
    from sass_retrieval.config import load_params

    cli = load_bench("bench_cli")
    params = load_params(ROOT / "params.yaml")
    ns = argparse.Namespace
    assert cli.declared_scenarios(ns(scenarios=None, source="kuairand"), params) == ["1", "0", "4", "6", "2", "other"]
    assert cli.declared_scenarios(ns(scenarios=None, source="synthetic"), params) == [*params.scenarios.names, "other"]
    assert cli.declared_scenarios(ns(scenarios="1,0", source="kuairand"), params) == ["1", "0", "other"]
