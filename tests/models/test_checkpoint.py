"""Reading checkpoints (models.checkpoint): which file serves a (row, scenario), loading it once, refusing bad files.

Written by train.checkpoint, here only as the way to make real files; the training round trips and resume
checkpoints are tests/train/test_training.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sass_retrieval.errors import EXIT_MISSING, exit_code
from sass_retrieval.models import checkpoint
from sass_retrieval.models.checkpoint import CheckpointError, load_row_model, load_row_models, row_checkpoint
from sass_retrieval.models.retrieval import RetrievalModel
from sass_retrieval.train.checkpoint import save_checkpoint


def test_a_scenarios_own_checkpoint_wins_over_the_shared_one_and_the_source(tmp_path: Path) -> None:
    row = tmp_path / "ctnet"
    row.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint for row 'ctnet' and scenario 's0'") as err:
        row_checkpoint(tmp_path, "ctnet", "s0")
    assert exit_code(err.value) == EXIT_MISSING   # run the training stage first
    (row / "source.pt").write_bytes(b"")
    assert row_checkpoint(tmp_path, "ctnet", "s0").name == "source.pt"
    (row / "model.pt").write_bytes(b"")
    assert row_checkpoint(tmp_path, "ctnet", "s0").name == "model.pt"
    (row / "model_s0.pt").write_bytes(b"")
    assert row_checkpoint(tmp_path, "ctnet", "s0").name == "model_s0.pt"
    assert row_checkpoint(tmp_path, "ctnet", "s1").name == "model.pt"


def test_a_shared_model_is_loaded_once_for_every_scenario(tiny_bank, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, cfg = tiny_bank
    save_checkpoint(tmp_path / "sass" / "model.pt", RetrievalModel(cfg))
    loads: list[str] = []
    real = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda p: loads.append(Path(p).name) or real(p))
    models = load_row_models(tmp_path, "sass", list(cfg.scenarios))
    assert loads == ["model.pt"] and len({id(m) for m in models.values()}) == 1
    assert set(models) == set(cfg.scenarios) and not next(iter(models.values())).training   # eval mode
    cache: dict = {}
    first = load_row_model(tmp_path, "sass", cfg.scenarios[0], cache)
    assert load_row_model(tmp_path, "sass", cfg.scenarios[1], cache) is first


def test_a_replaced_or_corrupt_file_is_refused_before_loading(tiny_bank, tmp_path: Path) -> None:
    _, cfg = tiny_bank
    path = tmp_path / "m.pt"
    save_checkpoint(path, RetrievalModel(cfg))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.json"]   # no temporary left
    manifest = json.loads((tmp_path / "m.pt.json").read_text())
    (tmp_path / "m.pt.json").write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="does not match its manifest hash"):
        checkpoint.load_model(path)
    (tmp_path / "m.pt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest .* is corrupt"):
        checkpoint.load_model(path)
    (tmp_path / "m.pt.json").unlink()
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoint.load_model(path)
