"""Checkpoints: tensors only (state dicts) plus a JSON side file, written atomically.

Tensors-only files load with ``torch.load(weights_only=True)``, which refuses arbitrary pickles; the
JSON file carries the model config and a SHA-256 of the tensor file, so a truncated or swapped file
is refused before it is ever deserialised. Mid-training resume checkpoints are the exception: one
file, so that a kill between two renames cannot split them (see ``save_resume``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingPrerequisiteError
from ..models.ctnet import CTNet
from ..models.multitask import MultiTaskModel
from ..models.retrieval import ModelConfig, RetrievalModel


class CheckpointError(MissingPrerequisiteError, RuntimeError):
    """A checkpoint is missing, truncated or does not match its manifest; the message names the file."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: Path, model: RetrievalModel | CTNet, meta: dict[str, Any] | None = None,
                    state: dict[str, Any] | None = None) -> None:
    """Write ``path`` (model weights, optional training state) and ``path.json`` (config + hash).

    A CTNet stores its target and adapters only (the frozen source has its own checkpoint, see save_ctnet)."""
    path = Path(path)
    if isinstance(model, MultiTaskModel):   # what load_model needs to rebuild the heads around the towers
        meta = {**(meta or {}), "multitask": model.spec()}
    payload = {"model": model.state_dict()}   # a CTNet's holds its target and adapters, not its source
    if state is not None:
        payload["state"] = state
    _atomic_bytes(path, lambda p: torch.save(payload, p))
    manifest = {"config": model.cfg.to_dict(), "sha256": sha256(path), "meta": meta or {}}
    _atomic_bytes(path.with_suffix(path.suffix + ".json"),
                  lambda p: p.write_text(json.dumps(manifest, indent=2, sort_keys=True)))


def read_manifest(path: Path) -> dict[str, Any]:
    mpath = Path(path).with_suffix(Path(path).suffix + ".json")
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


def save_resume(path: Path, model: RetrievalModel, state: dict[str, Any]) -> None:
    """Write a mid-training checkpoint as ONE atomically replaced file.

    A model checkpoint is two files (tensors + manifest); a SIGKILL between their two renames pairs the
    new tensors with the old manifest, and the hash check then throws the checkpoint away. Resume
    checkpoints are overwritten every few steps, so that window is hit in practice: here the state
    travels inside the tensor file and a single ``os.replace`` is the commit point.
    """
    _atomic_bytes(Path(path), lambda p: torch.save({"model": model.state_dict(), "state": state}, p))


def discard_resume(path: Path) -> None:
    """Remove a finished run's resume checkpoint and any temporary file a kill mid-save left beside it."""
    path = Path(path)
    for f in [path, *path.parent.glob(f".{path.name}.*.tmp")]:   # the names _atomic_bytes writes
        f.unlink(missing_ok=True)


def load_resume(path: Path) -> dict[str, Any]:
    """Load a resume checkpoint (weights only); an unreadable file raises CheckpointError naming it."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(f"resume checkpoint {path} cannot be loaded: {exc}") from exc
    if not isinstance(payload, dict) or "model" not in payload or "state" not in payload:
        raise CheckpointError(f"resume checkpoint {path} lacks model weights or training state")
    return payload


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


def save_ctnet(path: Path, model: CTNet, source_path: Path, meta: dict[str, Any] | None = None) -> None:
    """A CTNet target checkpoint; its manifest names the source checkpoint and hash it was trained against,
    so it is never served over another source by accident (load_ctnet checks)."""
    ctnet = {"source": Path(source_path).name, "source_sha256": sha256(Path(source_path)),
             "source_view": model.source_view}
    save_checkpoint(path, model, meta={**(meta or {}), "ctnet": ctnet})


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
