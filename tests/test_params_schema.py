"""params_schema: params.yaml is checked key by key, with one line per problem, before anything runs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import typing
from pathlib import Path

import pydantic
import pytest
import yaml
from support import TINY_PARAMS, copy_project

from pipelines import check_params
from sass_retrieval import params_schema, rows
from sass_retrieval.config import ConfigError, load_params, read_params_file
from sass_retrieval.errors import EXIT_BAD_CONFIG, run_main
from sass_retrieval.params_schema import Params, known_keys, validate_params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())


def problems_of(**changes) -> list[str]:
    """Validate the shipped params with dotted changes (a value of ... deletes the key); the error lines."""
    params = copy.deepcopy(SHIPPED)
    for dotted, value in changes.items():
        *head, last = dotted.split("__")
        node = params
        for h in head:
            node = node[h]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    with pytest.raises(ConfigError) as info:
        validate_params(params)
    return str(info.value).splitlines()


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        out += leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


def test_the_shipped_params_validate() -> None:
    assert isinstance(validate_params(SHIPPED), Params)
    assert load_params(ROOT / "params.yaml").to_dict() == SHIPPED


def test_params_yaml_lists_every_key_of_the_schema_and_nothing_else() -> None:
    assert set(leaf_keys(SHIPPED)) == set(known_keys())


def test_every_knob_is_declared_once_with_its_default_and_a_one_line_description() -> None:
    # the defaults are the values params.yaml ships: one declaration, the file repeats it for DVC
    assert Params().to_dict() == SHIPPED
    for key in known_keys():
        *head, last = key.split(".")
        section: type[pydantic.BaseModel] = Params
        for part in head:
            section = section.model_fields[part].annotation
        info = section.model_fields[last]
        assert info.description and "\n" not in info.description, key
        assert section is params_schema.ObjectiveWeights or not info.is_required(), key


def test_params_yaml_has_at_most_one_comment_line_per_key_and_no_lab_history() -> None:
    """Why a value is what it is lives in docs/lab/params-history.md; the file says what a key does, in a line."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    first_key = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    continued = [line for line in lines[first_key:] if line.strip().startswith("#")]
    assert continued == [], "a comment line of its own continues a key's comment"
    text = "\n".join(lines)
    assert "bench/results" not in text and "[+0." not in text and "[-0." not in text


def test_a_file_that_leaves_a_key_out_is_refused_not_run_on_the_default() -> None:
    assert problems_of(finetune__patience=...) == [
        "params.yaml: finetune.patience: missing (must be an integer > 0)"]
    assert problems_of(ctnet=...)[0].startswith("params.yaml: ctnet: missing (must be a mapping with keys source")
    assert problems_of(multitask__weights__like=...) == [
        "params.yaml: multitask.weights.like: missing (must be a number >= 0)"]


def test_problems_come_in_the_schemas_order() -> None:
    assert problems_of(window__train_days=0, finetune__lr=..., data__source="x", finetune__epochs=0) == [
        "params.yaml: data.source: 'x' is not allowed: must be one of synthetic, kuairand",
        "params.yaml: window.train_days: 0 is not allowed: must be > 0",
        "params.yaml: finetune.epochs: 0 is not allowed: must be > 0",
        "params.yaml: finetune.lr: missing (must be a number > 0)"]


def test_override_derives_a_validated_copy() -> None:
    shipped = Params()
    derived = shipped.override({"finetune.lr": 1e-3, "train.mode": "incremental"})
    assert derived.finetune.lr == 1e-3 and derived.train.mode == "incremental"
    assert shipped.finetune.lr == SHIPPED["finetune"]["lr"]       # the original is untouched
    with pytest.raises(ConfigError, match="^overrides: finetune.lr: -1 is not allowed: must be > 0$"):
        shipped.override({"finetune.lr": -1})


def test_every_model_forbids_unknown_keys() -> None:
    models = [m for m in vars(params_schema).values()
              if isinstance(m, type) and issubclass(m, pydantic.BaseModel) and m is not pydantic.BaseModel]
    assert len(models) >= 13
    for m in models:
        assert m.model_config.get("extra") == "forbid", m.__name__
        assert m.model_config.get("strict") is True, m.__name__


def test_the_tiny_test_params_are_complete() -> None:
    validate_params(TINY_PARAMS)


def test_unknown_key_is_named_with_a_suggestion() -> None:
    assert problems_of(finetune__temprature=0.5) == [
        "params.yaml: finetune.temprature: unknown key (did you mean finetune.temperature?)"]
    assert problems_of(data__synthetic__seeds=1) == [
        "params.yaml: data.synthetic.seeds: unknown key (did you mean data.synthetic.seed?)"]
    assert problems_of(finetunes={}) == ["params.yaml: finetunes: unknown key (did you mean finetune?)"]
    assert problems_of(finetune__zzz=1) == ["params.yaml: finetune.zzz: unknown key"]


def test_out_of_range_value_names_key_value_and_bound() -> None:
    assert problems_of(finetune__lr=-1) == ["params.yaml: finetune.lr: -1 is not allowed: must be > 0"]
    assert problems_of(validation__max_duplicate_rate=1.5) == [
        "params.yaml: validation.max_duplicate_rate: 1.5 is not allowed: must be <= 1"]
    assert problems_of(model__dropout=1.0) == ["params.yaml: model.dropout: 1.0 is not allowed: must be < 1"]
    assert problems_of(evaluate__ks=[20, 0]) == ["params.yaml: evaluate.ks[1]: 0 is not allowed: must be > 0"]
    assert problems_of(scenarios__names=[]) == [
        "params.yaml: scenarios.names: [] is not allowed: must have at least 1 item(s)"]
    assert problems_of(scenarios__names=["s0", "s0"]) == [
        "params.yaml: scenarios.names: ['s0', 's0'] is not allowed: must not repeat an entry (repeated: s0)"]


def test_wrong_type_is_refused_without_coercion() -> None:
    assert problems_of(finetune__epochs="two") == [
        "params.yaml: finetune.epochs: 'two' is not allowed: must be an integer > 0"]
    assert problems_of(finetune__epochs=2.5) == [
        "params.yaml: finetune.epochs: 2.5 is not allowed: must be an integer > 0"]
    assert problems_of(finetune__logq=1) == ["params.yaml: finetune.logq: 1 is not allowed: must be true or false"]
    assert problems_of(finetune__lr="fast") == ["params.yaml: finetune.lr: 'fast' is not allowed: must be a number"]
    assert problems_of(scenarios__names=[1, 0]) == [
        "params.yaml: scenarios.names[0]: 1 is not allowed: must be a string",
        "params.yaml: scenarios.names[1]: 0 is not allowed: must be a string"]
    assert problems_of(index=None)[0].startswith("params.yaml: index: null is not allowed: must be a mapping with keys kind")
    # what YAML itself hands over stays valid: 1e-3 (read as a string by YAML 1.1) and ints for floats
    params = copy.deepcopy(SHIPPED)
    params["finetune"].update(lr="1e-3", temperature=1)
    validate_params(params)


def test_bad_choice_lists_the_choices() -> None:
    assert problems_of(model__gate="adaptiv") == [
        "params.yaml: model.gate: 'adaptiv' is not allowed: must be one of adaptive, sigmoid, none "
        "(did you mean adaptive?)"]
    assert problems_of(finetune__loss="ce") == [
        "params.yaml: finetune.loss: 'ce' is not allowed: must be one of softmax, bpr, hinge"]
    assert problems_of(data__source="kuairnd")[0].endswith("must be one of synthetic, kuairand (did you mean kuairand?)")
    assert problems_of(index__kind="ivfpq")[0].startswith("params.yaml: index.kind: 'ivfpq' is not allowed: must be one of flat, ivf, hnsw")
    assert problems_of(train__mode="daily")[0].endswith("must be one of full, incremental")
    assert problems_of(evaluate__rows=["popular", "sas"]) == [
        "params.yaml: evaluate.rows[1]: 'sas' is not allowed: must be one of popular, dssm_mixed, senet_mixed, "
        "dssm_single, sass_base, sass, ctnet, sass_mt (did you mean sass?)"]


def test_refit_takes_its_modes_and_the_legacy_booleans() -> None:
    for value in ("full", "holdout", "none", True, False):
        params = copy.deepcopy(SHIPPED)
        params["finetune"]["refit"] = value
        validate_params(params)
    assert problems_of(finetune__refit="holdot") == [
        "params.yaml: finetune.refit: 'holdot' is not allowed: must be one of full, holdout, none, or legacy "
        "true/false (= full/none) (did you mean holdout?)"]


def test_end_date_is_auto_or_a_real_day() -> None:
    for value in ("auto", 20220505, "20220505"):
        params = copy.deepcopy(SHIPPED)
        params["window"]["end_date"] = value
        validate_params(params)
    for value in (20221345, "yesterday", True):
        assert problems_of(window__end_date=value) == [
            f"params.yaml: window.end_date: {params_schema._show(value)} is not allowed: must be 'auto' "
            "(the last stored day) or a date YYYYMMDD (e.g. 20220505)"]
    assert problems_of(data__synthetic__start_date=20220230) == [
        "params.yaml: data.synthetic.start_date: 20220230 is not allowed: must be a date YYYYMMDD (e.g. 20220505)"]


def test_missing_key_says_what_it_must_be() -> None:
    assert problems_of(finetune__lr=...) == ["params.yaml: finetune.lr: missing (must be a number > 0)"]
    assert problems_of(model__gate=...) == ["params.yaml: model.gate: missing (must be one of adaptive, sigmoid, none)"]


def test_null_is_not_an_absent_key() -> None:
    params = copy.deepcopy(SHIPPED)
    params["model"].update(scenario_layer="star", residual=True)
    params["evaluate"].update(n_boot=200, level=0.9, seed=1, cold_max=5, cold_min_other=5)
    validate_params(params)
    assert problems_of(evaluate__n_boot=None) == [
        "params.yaml: evaluate.n_boot: null is not allowed: must be an integer > 0"]
    assert problems_of(model__scenario_layer="sta")[0].endswith("must be one of full, star, lowrank (did you mean star?)")


def test_every_problem_is_one_line_naming_the_source() -> None:
    lines = problems_of(finetune__temprature=0.5, finetune__lr=-1, model__gate="x", window__train_days=0)
    assert len(lines) == 4 and all(line.startswith("params.yaml: ") for line in lines)
    with pytest.raises(ConfigError, match=r"^custom.yaml: finetune.lr: -1 is not allowed"):
        validate_params({**SHIPPED, "finetune": {**SHIPPED["finetune"], "lr": -1}}, source="custom.yaml")


def test_choices_are_the_codes_choices() -> None:
    from sass_retrieval.data.schema import OBJECTIVES
    from sass_retrieval.index.faiss_index import KINDS
    from sass_retrieval.models.tower import ScenarioLinear
    from sass_retrieval.models.transfer import GATE_KINDS
    from sass_retrieval.train.finetune import refit_mode

    def choices(section: type[pydantic.BaseModel], key: str) -> tuple:
        return params_schema._choices(section.model_fields[key].annotation)

    def entry_choices(section: type[pydantic.BaseModel], key: str) -> tuple:
        listed = params_schema._split(section.model_fields[key].annotation)[0]
        return params_schema._choices(typing.get_args(listed)[0])

    assert choices(params_schema.Model, "gate") == GATE_KINDS
    assert choices(params_schema.Index, "kind") == KINDS
    assert choices(params_schema.Model, "scenario_layer") == ScenarioLinear.MODES
    assert entry_choices(params_schema.Evaluate, "rows") == rows.ROWS
    assert entry_choices(params_schema.Evaluate, "benchmark_rows") == rows.BENCHMARK_ROWS
    assert choices(params_schema.Publish, "challenger") == rows.CHALLENGERS
    assert tuple(OBJECTIVES) == params_schema.OBJECTIVE_NAMES
    assert choices(params_schema.Finetune, "objective") == tuple(OBJECTIVES)
    assert tuple(params_schema.ObjectiveWeights.model_fields) == tuple(OBJECTIVES)
    assert {refit_mode(v) for v in params_schema.REFIT_CHOICES} == set(params_schema.REFIT_CHOICES)


def test_load_params_validates_and_returns_the_files_content(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text((ROOT / "params.yaml").read_text().replace("  lr: 0.0005", "  lr: -0.0005"))
    with pytest.raises(ConfigError, match=rf"^{p}: finetune.lr: -0.0005 is not allowed: must be > 0$"):
        load_params(p)
    assert read_params_file(p)["finetune"]["lr"] == -0.0005
    p.write_text("finetune: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(p)


# ---------------------------------------------------------------- the `params` stage


def test_check_params_writes_a_marker_that_does_not_depend_on_the_values(tmp_path: Path, capsys) -> None:
    params, out = tmp_path / "params.yaml", tmp_path / "reports/params.ok"
    params.write_text(yaml.safe_dump(SHIPPED))
    assert check_params.main(["--params", str(params), "--out", str(out)]) == 0
    first = out.read_bytes()
    params.write_text(yaml.safe_dump({**SHIPPED, "finetune": {**SHIPPED["finetune"], "lr": 0.1, "epochs": 1}}))
    assert check_params.main(["--params", str(params), "--out", str(out)]) == 0
    assert out.read_bytes() == first
    params.write_text(yaml.safe_dump({**SHIPPED, "finetune": {**SHIPPED["finetune"], "temprature": 0.5}}))
    assert run_main(check_params.main, ["--params", str(params), "--out", str(out)]) == EXIT_BAD_CONFIG == 3
    assert capsys.readouterr().err.strip() == (
        f"error: {params}: finetune.temprature: unknown key (did you mean finetune.temperature?)")
    assert not out.exists()


def _dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(project / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_dvc_exp_run_with_a_misspelt_key_fails_at_once(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    shipped = (project / "params.yaml").read_text()
    # DVC 3.x refuses to add a key with a plain -S (Hydra's struct mode): it fails before running anything
    res = _dvc(project, "exp", "run", "-S", "finetune.temprature=0.5")
    assert res.returncode != 0
    assert "Could not override 'finetune.temprature'" in res.stdout + res.stderr
    assert not (project / "data/store").exists()
    # with +key DVC adds it; the `params` stage, first in the graph, fails with the one-line message
    res = _dvc(project, "exp", "run", "-S", "+finetune.temprature=0.5")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "error: params.yaml: finetune.temprature: unknown key (did you mean finetune.temperature?)" in out.splitlines()
    assert "failed to reproduce 'params'" in out and "exited with 3" in out
    assert "Running stage 'ingest'" not in out and not (project / "data/store").exists()
    # a bad value of a known key: the same stop, naming the key, the value and the bound
    (project / "params.yaml").write_text(shipped)
    res = _dvc(project, "exp", "run", "-S", "finetune.lr=-1")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "error: params.yaml: finetune.lr: -1 is not allowed: must be > 0" in out.splitlines()
    assert "Running stage 'ingest'" not in out and not (project / "data/store").exists()
