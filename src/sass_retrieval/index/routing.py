"""Which index serves a scenario: its own, or the fallback of a scenario skipped today.

A declared scenario with too few training rows on some day is skipped (``data.features.skipped_scenarios``):
its index folder holds a ``skipped.json`` marker instead of ``index.faiss``, naming the scenario that
serves it (``served_by``, decided by ``data.features.serving_scenario``: 'other' when the run trains it,
else the trained scenario with the most training rows). :func:`resolve_index` reads that back, so every
caller (``sass recommend``, the HTTP service) routes a request the same way, from the files alone.

No faiss import here: resolving a route is file lookups, and the caller loads the index it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.features import SKIPPED_FILE, SkippedScenario

INDEX_FILE = "index.faiss"
BUILD_FILE = "build.json"


class UnknownScenarioError(KeyError):
    """The scenario has no index folder: it was not declared (scenarios.names) in the run that built them."""


@dataclass(frozen=True)
class IndexRoute:
    """How a request of ``requested`` is served: the index of ``scenario``, queried with a user vector
    embedded in ``scenario`` too (a skipped scenario has no scenario parameters in the model)."""

    requested: str
    scenario: str
    index: Path                            # <indexes>/<scenario>/index.faiss
    skipped: SkippedScenario | None = None  # why the request falls back (None: served by its own index)

    @property
    def fallback(self) -> bool:
        return self.scenario != self.requested


def resolve_index(indexes: str | Path, scenario: str) -> IndexRoute:
    """The index that serves ``scenario`` under ``indexes``, a folder of ``<scenario>/`` index folders:
    a published version's ``indexes/`` or a workspace's ``indexes/<row>/``.

    A ``skipped.json`` marker wins over an ``index.faiss`` beside it (a stale index of a day when the
    scenario was big must not be served). Raises :class:`UnknownScenarioError` when ``scenario`` has no
    folder (or is not a plain folder name: a request can not walk out of ``indexes``), and
    ``FileNotFoundError`` when the index that should serve it is missing.
    """
    root = Path(indexes)
    folder = root / str(scenario)
    plain = Path(str(scenario)).name == str(scenario) and not str(scenario).startswith(".")  # no ../, no /
    if not plain or not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []
        raise UnknownScenarioError(f"no index folder for scenario {scenario!r} under {root}; known: {known}")
    skipped = SkippedScenario.read(folder)
    target = skipped.served_by if skipped is not None else str(scenario)
    index = root / target / INDEX_FILE
    if not index.is_file():
        via = f" (serving skipped scenario {scenario!r})" if skipped is not None else ""
        raise FileNotFoundError(f"{index} not found{via}")
    return IndexRoute(requested=str(scenario), scenario=target, index=index, skipped=skipped)


def resolve_all(indexes: str | Path) -> dict[str, IndexRoute]:
    """:func:`resolve_index` of every scenario folder under ``indexes`` (what a server loads at start:
    the distinct ``route.scenario`` values are the indexes to read, the keys the scenarios it answers)."""
    root = Path(indexes)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    return {s: resolve_index(root, s) for s in names}


def mark_skipped(folder: Path, skipped: SkippedScenario) -> Path:
    """Write the marker of a skipped scenario's index folder and remove a stale index of an earlier day.

    Airflow runs the stage command in place (no ``dvc repro`` clearing outputs first), so yesterday's
    ``index.faiss`` may still be there."""
    folder = Path(folder)
    for name in (INDEX_FILE, BUILD_FILE):
        (folder / name).unlink(missing_ok=True)
    return skipped.write(folder)


def clear_skipped(folder: Path) -> None:
    """Remove the marker of an earlier day from an index folder about to receive a real index."""
    (Path(folder) / SKIPPED_FILE).unlink(missing_ok=True)
