"""Reading checkpoints: verified loads of the tensors-only files and their JSON manifests.

A checkpoint is a tensors-only file plus ``<file>.json`` carrying the model config and a SHA-256 of the
tensor file; the hash is checked before torch sees a byte, and ``torch.load(weights_only=True)`` refuses
arbitrary pickles, so a truncated, swapped or hostile file is refused. Training, indexing, evaluation and
serving all read through here; writing is training's business (``train.checkpoint``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingPrerequisiteError
from .ctnet import CTNet
from .multitask import MultiTaskModel
from .retrieval import ModelConfig, RetrievalModel


class CheckpointError(MissingPrerequisiteError, RuntimeError):
    """A checkpoint is missing, truncated or does not match its manifest; the message names the file."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(path: Path) -> Path:
    """``<checkpoint>.json``: the manifest beside a checkpoint."""
    return Path(path).with_suffix(Path(path).suffix + ".json")


def read_manifest(path: Path) -> dict[str, Any]:
    mpath = manifest_path(path)
    if not Path(path).exists() or not mpath.exists():
        raise CheckpointError(f"checkpoint not found: {path} (and its manifest {mpath.name})")
    try:
        return json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint manifest {mpath} is corrupt: {exc}") from exc


def load_payload(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verified load: the hash must match the manifest before torch sees a byte of the file."""
    path = Path(path)
    manifest = read_manifest(path)
    actual = sha256(path)
    if actual != manifest.get("sha256"):
        raise CheckpointError(f"checkpoint {path} does not match its manifest hash (truncated or replaced); refusing to load")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {exc}") from exc
    return manifest, payload


def load_model(path: Path) -> tuple[RetrievalModel | MultiTaskModel, dict[str, Any]]:
    """A row's model; a multi-task checkpoint (its manifest has a "multitask" entry) comes back with its heads."""
    manifest, payload = load_payload(path)
    model = RetrievalModel(ModelConfig.from_dict(manifest["config"]))
    spec = manifest.get("meta", {}).get("multitask")
    if spec is not None:
        model = MultiTaskModel(model, spec["objectives"], spec["head_dim"], spec["weights"])
    model.load_state_dict(payload["model"])
    model.eval()
    return model, manifest


def load_ctnet(path: Path, source_path: Path, same_source: bool = True) -> tuple[CTNet, dict[str, Any]]:
    """Load a CTNet target over its source.

    ``same_source`` (serving, evaluation): the source must be the exact checkpoint the target was trained
    against. False (the next day's warm start): the target and its adapters are read over today's refreshed
    source, which is what makes the transfer continual. A missing source fails with a CheckpointError naming
    both files (the published model stays in service: nothing was replaced)."""
    manifest, payload = load_payload(path)
    info = manifest.get("meta", {}).get("ctnet")
    if info is None:
        raise CheckpointError(f"{path} is not a CTNet target checkpoint (its manifest has no 'ctnet' entry)")
    if not Path(source_path).exists():
        raise CheckpointError(f"CTNet target {path} needs its source model {source_path}: not found")
    if same_source and sha256(Path(source_path)) != info["source_sha256"]:
        raise CheckpointError(f"CTNet target {path} was trained over another source than {source_path} "
                              "(hash differs); refusing to serve it over this one")
    source, _ = load_model(source_path)
    model = CTNet(source, RetrievalModel(ModelConfig.from_dict(manifest["config"])),
                  source_view=info.get("source_view"))   # absent before the key existed: the rows as they are
    missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"CTNet target {path} does not match the model: missing {missing}, unexpected "
                              f"{unexpected}")
    model.eval()
    return model, manifest


def row_checkpoint(models_dir: Path, row: str, scenario: str) -> Path:
    """The checkpoint a row serves ``scenario`` with, whatever the row's layout under ``models_dir/row``:

    - ``model_<scenario>.pt``: one model per scenario (dssm_single; a ctnet target, read over its source);
    - ``model.pt``: one model for every scenario (sass, dssm_mixed, ...);
    - ``source.pt``: the ctnet source, which serves its own (the largest) scenario.

    The one place that maps (row, scenario) to a checkpoint: the index stage, the evaluation, the model in
    service and the HTTP service all go through it (load_row_model)."""
    folder = Path(models_dir) / row
    for name in (f"model_{scenario}.pt", "model.pt", "source.pt"):
        if (folder / name).exists():
            return folder / name
    raise CheckpointError(f"{folder}: no checkpoint for row {row!r} and scenario {scenario!r} "
                          f"(looked for model_{scenario}.pt, model.pt, source.pt); train the row first")


def load_row_model(models_dir: Path, row: str, scenario: str,
                   cache: dict[Path, tuple[Any, dict[str, Any]]] | None = None) -> tuple[RetrievalModel | CTNet, dict[str, Any]]:
    """Load :func:`row_checkpoint`; a CTNet target is loaded over the source its manifest names. ``cache``
    (checkpoint path -> loaded) makes a row with one model for every scenario load it once."""
    path = row_checkpoint(models_dir, row, scenario)
    if cache is not None and path in cache:
        return cache[path]
    info = read_manifest(path).get("meta", {}).get("ctnet")
    loaded = load_ctnet(path, path.parent / info["source"]) if info else load_model(path)
    if cache is not None:
        cache[path] = loaded
    return loaded


def load_row_models(models_dir: Path, row: str, scenarios: list[str]) -> dict[str, RetrievalModel | CTNet]:
    """scenario -> the model the row serves it with (one shared model loaded once, or one per scenario)."""
    cache: dict = {}
    return {s: load_row_model(models_dir, row, s, cache)[0] for s in scenarios}
