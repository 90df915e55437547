"""The stage graph of dvc.yaml as DVC itself resolves it, cached as JSON for the Airflow DAG file.

DVC does the work: ``dvc.repo.Repo(root).index`` expands ``vars``/``foreach``/``matrix``/``${...}`` into
stages (``split@s0``...) and ``index.graph`` holds the edges ``dvc repro`` and ``dvc dag`` use. This module
only copies what the DAG needs out of them (name, cmd, wdir, the edges) and collapses it for Airflow:
:func:`task_groups` makes each foreach/matrix entry ONE mapped task over its items and each plain stage one
task; order comes from :class:`graphlib.TopologicalSorter`.

Parse time: importing DVC and building its index takes about 0.5 s idle (more under load), and the DAG
file is parsed every few seconds by the dag-processor, which must not import DVC (it would also pull DVC
into every parsing process). So :func:`load_graph` reads ``.dvc/tmp/sass-dag-graph.json`` when its
fingerprint (sha256 of dvc.yaml, params.yaml and dvc.yaml's ``vars`` files) matches, and otherwise
regenerates it in a subprocess (``python -m sass_retrieval.orchestration.dvc_graph --write ROOT``).
``make dag-graph`` writes it ahead of time; the DAG's ``configure`` task rewrites params.yaml, so the
first parse after a run regenerates it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from ..errors import BadConfigError

JOIN = "@"
CACHE_FILE = ".dvc/tmp/sass-dag-graph.json"
FORMAT = 1


class GraphError(BadConfigError, ValueError):
    """DVC could not build the stage graph (bad dvc.yaml, unknown variable, cycle...)."""


@dataclass(frozen=True)
class Stage:
    """One stage as DVC resolved it. ``wdir`` is POSIX, relative to the project root."""

    name: str                         # "ingest", "split@s0"
    group: str                        # "ingest", "split"
    item: str | None                  # None for a plain stage, else the foreach/matrix key ("s0")
    cmd: str                          # joined with " && " when dvc.yaml gives a list
    wdir: str = "."


@dataclass(frozen=True)
class TaskGroup:
    """What the DAG turns into one Airflow task: a plain stage, or a foreach stage mapped over its items."""

    name: str
    stages: tuple[str, ...]
    items: tuple[str, ...] | None     # None: a plain stage; else the keys to `.expand(item=...)`
    upstream: tuple[str, ...] = ()

    @property
    def mapped(self) -> bool:
        return self.items is not None

    def stage_for(self, item: str | None = None) -> str:
        if self.items is None:
            return self.name
        if item not in self.items:
            raise GraphError(f"{self.name}: unknown item {item!r} (items: {', '.join(self.items)})")
        return f"{self.name}{JOIN}{item}"


@dataclass
class StageGraph:
    stages: dict[str, Stage]                                  # in dvc.yaml order
    edges: set[tuple[str, str]] = field(default_factory=set)  # (upstream, downstream) stage names

    def upstream(self, name: str) -> list[str]:
        return [a for a in self.stages if (a, name) in self.edges]

    def downstream(self, name: str) -> list[str]:
        return [b for b in self.stages if (name, b) in self.edges]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in self.stages.values():
            out.setdefault(s.group, []).append(s.name)
        return out

    def topological(self) -> list[str]:
        """Stage names in an order that respects every edge (dvc.yaml order breaks ties)."""
        return _toposort(list(self.stages), {s: set(self.upstream(s)) for s in self.stages})


def _toposort(nodes: list[str], preds: dict[str, set[str]]) -> list[str]:
    ts = TopologicalSorter({n: preds[n] for n in nodes})
    try:
        ts.prepare()
    except CycleError as exc:
        raise GraphError(f"cycle between stages: {', '.join(exc.args[1])}") from exc
    rank, order = {n: i for i, n in enumerate(nodes)}, []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=rank.__getitem__)
        order += ready
        ts.done(*ready)
    return order


# ---------------------------------------------------------------- from DVC's index

def _split_name(name: str) -> tuple[str, str | None]:
    group, sep, item = name.partition(JOIN)
    return group, (item if sep else None)


def from_dvc(root: str | Path) -> StageGraph:
    """The stages and edges of ``root``'s dvc.yaml, from ``dvc.repo.Repo(root).index`` (imports DVC)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(root).resolve()
    try:
        repo = Repo(str(root), uninitialized=not (root / ".dvc").is_dir())
    except DvcException as exc:
        raise GraphError(f"{root}: {exc}") from exc
    try:
        stages: dict[str, Stage] = {}
        for s in repo.index.stages:
            if not getattr(s, "cmd", None) or s.dvcfile.relpath != "dvc.yaml":
                continue  # .dvc files (imports/added data) and other pipelines are not DAG tasks
            group, item = _split_name(s.name)
            cmd = s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd)
            wdir = os.path.relpath(s.wdir, repo.root_dir).replace(os.sep, "/")
            stages[s.name] = Stage(name=s.name, group=group, item=item, cmd=cmd, wdir=wdir)
        edges = {(up.name, down.name) for down, up in repo.index.graph.edges
                 if up.name in stages and down.name in stages}
    except DvcException as exc:
        raise GraphError(f"DVC rejects {root / 'dvc.yaml'}: {exc}") from exc
    finally:
        repo.close()
    return StageGraph(stages=stages, edges=edges)


# ---------------------------------------------------------------- the JSON cache

def _inputs(root: Path) -> list[Path]:
    """The files DVC's resolution of dvc.yaml reads: dvc.yaml, params.yaml and dvc.yaml's ``vars`` files."""
    import yaml

    files = [root / "dvc.yaml", root / "params.yaml"]
    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    for entry in (doc.get("vars") or []) if isinstance(doc, dict) else []:
        if isinstance(entry, str):
            files.append(root / entry.partition(":")[0])
    return list(dict.fromkeys(files))


def fingerprint(root: str | Path) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    for path in _inputs(Path(root)):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


def to_json(graph: StageGraph, fp: str) -> dict:
    return {"format": FORMAT, "fingerprint": fp, "stages": [asdict(s) for s in graph.stages.values()],
            "edges": sorted(map(list, graph.edges))}


def from_json(doc: dict) -> StageGraph:
    stages = {s["name"]: Stage(**s) for s in doc["stages"]}
    return StageGraph(stages=stages, edges={(a, b) for a, b in doc["edges"]})


def write_cache(root: str | Path) -> Path:
    """Resolve ``root``'s dvc.yaml with DVC and write the JSON cache atomically."""
    root = Path(root).resolve()
    fp = fingerprint(root)
    graph = from_dvc(root)
    _toposort(list(graph.stages), {s: set(graph.upstream(s)) for s in graph.stages})  # DVC forbids cycles too
    path = root / CACHE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sass-dag-graph.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(to_json(graph, fp), fh, indent=1)
    os.replace(tmp, path)
    return path


def _read_cache(root: Path) -> StageGraph | None:
    try:
        doc = json.loads((root / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("format") != FORMAT or doc.get("fingerprint") != fingerprint(root):
        return None
    return from_json(doc)


def _regenerate(root: Path) -> None:
    """``write_cache`` in a subprocess, so the caller (the DAG parser) never imports DVC."""
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-m", "sass_retrieval.orchestration.dvc_graph", "--write", str(root)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        lines = [x for x in (out.stderr or out.stdout).strip().splitlines() if x.strip()]
        raise GraphError(lines[-1] if lines else f"dvc_graph --write exited with {out.returncode}")


def load_graph(root: str | Path, dvc_yaml: str | Path = "dvc.yaml") -> StageGraph:
    """The stage graph of ``root``, from the JSON cache when it is current, else resolved by DVC.

    ``dvc_yaml`` other than ``root/dvc.yaml`` (e.g. the repository's dvc.yaml against a benchmark
    folder's params.yaml) is resolved by DVC in a scratch copy holding that dvc.yaml and ``root``'s
    params files; nothing is cached then.
    """
    root = Path(root).resolve()
    spec = Path(dvc_yaml) if Path(dvc_yaml).is_absolute() else root / dvc_yaml
    if spec.resolve() != (root / "dvc.yaml").resolve():
        with tempfile.TemporaryDirectory(prefix="sass-dvc-graph-") as tmp:
            shutil.copy2(spec, Path(tmp) / "dvc.yaml")
            for f in _inputs(Path(tmp))[1:]:
                if (root / f.name).is_file():
                    shutil.copy2(root / f.name, f)
            return load_graph(tmp)
    graph = _read_cache(root)
    if graph is None:
        _regenerate(root)
        graph = _read_cache(root)
        if graph is None:  # params.yaml changed while we resolved: resolve once more, in process
            write_cache(root)
            graph = _read_cache(root) or from_dvc(root)
    return graph


def task_groups(graph: StageGraph) -> list[TaskGroup]:
    """Collapse the stage graph: one TaskGroup per dvc.yaml entry, in a topological order.

    A foreach/matrix entry is one mapped task over its keys; a plain stage is one task. Group B is
    downstream of group A when any stage of B depends on any stage of A.
    """
    members = graph.groups()
    group_of = {s.name: s.group for s in graph.stages.values()}
    ups: dict[str, set[str]] = {g: set() for g in members}
    for a, b in graph.edges:
        if group_of[a] == group_of[b]:
            raise GraphError(f"stages {a!r} and {b!r} of the same foreach depend on each other; "
                             "they can not run as one mapped task")
        ups[group_of[b]].add(group_of[a])
    order = _toposort(list(members), ups)
    out = []
    for g in order:
        names = members[g]
        first = graph.stages[names[0]]
        items = None if first.item is None else tuple(graph.stages[n].item for n in names)
        out.append(TaskGroup(name=g, stages=tuple(names), items=items,
                             upstream=tuple(u for u in order if u in ups[g])))
    return out


def describe(graph: StageGraph) -> str:
    """Human-readable listing (``python -m sass_retrieval.orchestration.dvc_graph``)."""
    lines = []
    for g in task_groups(graph):
        kind = f"mapped over {', '.join(g.items)}" if g.items is not None else "task"
        lines.append(f"{g.name:<12} {kind:<40} after: {', '.join(g.upstream) or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sass_retrieval.orchestration.dvc_graph", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=".")
    p.add_argument("--write", action="store_true", help=f"(re)write {CACHE_FILE} from DVC's index and exit")
    args = p.parse_args(argv)
    try:
        if args.write:
            print(write_cache(args.root))
        else:
            print(describe(load_graph(args.root)))
    except GraphError as exc:
        print(f"dvc_graph: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
