"""Writing checkpoints: tensors only (state dicts) plus a JSON side file, each written atomically.

The JSON file carries the model config and a SHA-256 of the tensor file, which ``models.checkpoint``
checks before loading. Mid-training resume checkpoints are the exception: one file, so that a kill
between two renames cannot split them (see ``save_resume``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import TMP_SUFFIX, atomic_path, write_text
from ..models.checkpoint import CheckpointError, manifest_path, sha256
from ..models.ctnet import CTNet
from ..models.multitask import MultiTaskModel
from ..models.retrieval import RetrievalModel


def _save_tensors(path: Path, payload: dict[str, Any]) -> None:
    # Saved through a file object: torch.save names the archive inside after a path's file name (here the
    # temporary one), so two saves of the same tensors would differ byte for byte and DVC would see a change.
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


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
    _save_tensors(path, payload)
    manifest = {"config": model.cfg.to_dict(), "sha256": sha256(path), "meta": meta or {}}
    write_text(manifest_path(path), json.dumps(manifest, indent=2, sort_keys=True), durable=True)


def save_resume(path: Path, model: RetrievalModel, state: dict[str, Any]) -> None:
    """Write a mid-training checkpoint as ONE atomically replaced file.

    A model checkpoint is two files (tensors + manifest); a SIGKILL between their two renames pairs the
    new tensors with the old manifest, and the hash check then throws the checkpoint away. Resume
    checkpoints are overwritten every few steps, so that window is hit in practice: here the state
    travels inside the tensor file and a single ``os.replace`` is the commit point.
    """
    _save_tensors(Path(path), {"model": model.state_dict(), "state": state})


def discard_resume(path: Path) -> None:
    """Remove a finished run's resume checkpoint and any temporary file a kill mid-save left beside it."""
    path = Path(path)
    for f in [path, *path.parent.glob(f".{path.name}.*{TMP_SUFFIX}")]:   # the names atomic.temp_path gives
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


def save_ctnet(path: Path, model: CTNet, source_path: Path, meta: dict[str, Any] | None = None) -> None:
    """A CTNet target checkpoint; its manifest names the source checkpoint and hash it was trained against,
    so it is never served over another source by accident (models.checkpoint.load_ctnet checks)."""
    ctnet = {"source": Path(source_path).name, "source_sha256": sha256(Path(source_path)),
             "source_view": model.source_view}
    save_checkpoint(path, model, meta={**(meta or {}), "ctnet": ctnet})
