"""The published models on shared storage, for tasks that share no disk (orchestration/workspace.py).

A task's workspace holds the publish folder (:mod:`sass_retrieval.publish`: ``versions/<id>/``, ``current``,
``decisions.jsonl``) only for the task's lifetime. The store is its lasting copy, any fsspec URL
(``s3://bucket/published`` on an S3-compatible server, a local folder in the one-machine tests):

    versions/<id>/...    a version's files, never modified once ``current`` names it
    current              one line: the id of the version in service
    decisions.jsonl      every publish attempt of every day

A task that reads the model in service pulls ``current`` and its version into the workspace's publish
folder first; the publish task pushes a new version's files, then ``decisions.jsonl``, and rewrites
``current`` last. Object stores write each object whole, so a reader sees the old version or the new one,
never half of one: a publish killed mid-upload leaves ``current`` on the model in service. Publishes of
several days do not interleave: the DAG lets one publish task run at a time (``max_active_tis_per_dag``).
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path
from typing import Any

from .atomic import staged_dir, write_text
from .publish import current_version, point_current

log = logging.getLogger("sass.published_store")
CURRENT, DECISIONS, VERSIONS = "current", "decisions.jsonl", "versions"


class StoreError(RuntimeError):
    """The published-model store could not be read or written (its URL is in the message)."""


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path inside it. An S3 URL reaches the endpoint in
    $SASS_S3_ENDPOINT_URL when set (an S3-compatible server); credentials come from the environment."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options: dict[str, Any] = {}
    if protocol == "s3" and os.environ.get("SASS_S3_ENDPOINT_URL"):
        options["client_kwargs"] = {"endpoint_url": os.environ["SASS_S3_ENDPOINT_URL"]}
    if protocol == "file":
        options["auto_mkdir"] = True
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path.rstrip("/")


def _failed(url: str, what: str, exc: BaseException) -> StoreError:
    detail = str(exc).strip().splitlines()
    return StoreError(f"published-model store {url}: {what} failed: {type(exc).__name__}: "
                      f"{detail[-1] if detail else ''}".rstrip(": "))


def current_id(url: str) -> str | None:
    """The id of the version in service, or None when nothing was ever published."""
    fs, root = filesystem(url)
    try:
        if not fs.exists(posixpath.join(root, CURRENT)):
            return None
        return fs.cat_file(posixpath.join(root, CURRENT)).decode().strip() or None
    except Exception as exc:  # noqa: BLE001  (any transport error: one line naming the store)
        raise _failed(url, "reading current", exc) from exc


def pull(url: str, local: str | Path) -> str | None:
    """Make ``local`` (a publish folder) hold the store's version in service and its decisions: the id, or
    None when the store has none (then ``local`` is left as it is)."""
    local = Path(local)
    vid = current_id(url)
    fs, root = filesystem(url)
    try:
        if fs.exists(posixpath.join(root, DECISIONS)):
            write_text(local / DECISIONS, fs.cat_file(posixpath.join(root, DECISIONS)).decode())
        if vid is None:
            return None
        target = local / VERSIONS / vid
        if not target.exists():
            with staged_dir(target) as tmp:
                fs.get(posixpath.join(root, VERSIONS, vid) + "/", str(tmp), recursive=True)
        point_current(local, target)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _failed(url, f"pulling version {vid}", exc) from exc
    log.info("pulled published version %s from %s", vid, url)
    return vid


def push(local: str | Path, url: str) -> str | None:
    """Upload what the publish stage left in ``local``: the version in service (when the store has not got
    it yet), the decisions, then ``current``. Returns the id in service, None when nothing was published."""
    local = Path(local)
    version = current_version(local)
    fs, root = filesystem(url)
    try:
        if version is not None and current_id(url) != version.name:
            remote = posixpath.join(root, VERSIONS, version.name)
            fs.put(str(version) + "/", remote, recursive=True)
        if (local / DECISIONS).is_file():
            fs.pipe_file(posixpath.join(root, DECISIONS), (local / DECISIONS).read_bytes())
        if version is not None:
            fs.pipe_file(posixpath.join(root, CURRENT), f"{version.name}\n".encode())
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _failed(url, "pushing the published version", exc) from exc
    if version is not None:
        log.info("published version %s is in service in %s", version.name, url)
    return None if version is None else version.name
