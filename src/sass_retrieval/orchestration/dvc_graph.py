"""The stage graph of dvc.yaml as DVC itself resolves it (``Repo(root).index``: vars, foreach, matrix,
``${...}``; the edges ``dvc repro`` follows), collapsed for Airflow into one task per plain stage and one
mapped task per foreach/matrix entry. The dag-processor must not import DVC (slow, and in every parsing
process), so :func:`load_graph` reads a JSON cache keyed by the sha256 of the files DVC resolves, and
rebuilds it in a subprocess when they changed (``python -m sass_retrieval.orchestration.dvc_graph --write .``).
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

from ..atomic import write_text
from ..errors import BadConfigError

MODULE = "sass_retrieval.orchestration.dvc_graph"
JOIN = "@"
CACHE_FILE = ".dvc/tmp/sass-dag-graph.json"
FORMAT = 2


class GraphError(BadConfigError, ValueError):
    """DVC could not build the stage graph (bad dvc.yaml, unknown variable, cycle...)."""


@dataclass(frozen=True)
class Stage:
    name: str                         # "ingest", "split@s0"
    group: str                        # "ingest", "split"
    item: str | None                  # the foreach/matrix key ("s0"); None for a plain stage
    cmd: str                          # a list cmd joined with " && "
    wdir: str = "."                   # POSIX, relative to the project root
    uncached: tuple[str, ...] = ()    # its ``cache: false`` outputs: they never reach the DVC remote
    params: tuple[str, ...] = ()      # the params keys it declares ("window", "publish.dir")


@dataclass(frozen=True)
class TaskGroup:
    """One Airflow task: a plain stage, or a foreach stage mapped over its items."""

    name: str
    stages: tuple[str, ...]           # its dvc.yaml stages ("split@s0", ...)
    items: tuple[str, ...] | None     # None: a plain stage; else the keys to `.expand(item=...)`
    upstream: tuple[str, ...] = ()

    @property
    def mapped(self) -> bool:
        return self.items is not None


@dataclass
class StageGraph:
    stages: dict[str, Stage]                                  # in dvc.yaml order
    edges: set[tuple[str, str]] = field(default_factory=set)  # (upstream, downstream) stage names

    def upstream(self, name: str) -> list[str]:
        return [a for a in self.stages if (a, name) in self.edges]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in self.stages.values():
            out.setdefault(s.group, []).append(s.name)
        return out

    def topological(self) -> list[str]:
        """Stage names in an order that respects every edge (dvc.yaml order breaks ties)."""
        return _toposort(list(self.stages), {s: set(self.upstream(s)) for s in self.stages})


def _toposort(nodes: list[str], preds: dict[str, set[str]]) -> list[str]:
    sorter = TopologicalSorter({n: preds[n] for n in nodes})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise GraphError(f"cycle between stages: {', '.join(exc.args[1])}") from exc
    rank, order = {n: i for i, n in enumerate(nodes)}, []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order += ready
        sorter.done(*ready)
    return order


def from_dvc(root: str | Path) -> StageGraph:
    """The stages and edges of ``root``'s dvc.yaml, from ``dvc.repo.Repo(root).index`` (imports DVC)."""
    from dvc.dependency.param import ParamsDependency
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
                continue  # .dvc files (imports, added data) and other pipelines are not DAG tasks
            group, _, item = s.name.partition(JOIN)
            cmd = s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd)
            wdir = os.path.relpath(s.wdir, repo.root_dir).replace(os.sep, "/")
            uncached = tuple(str(o.def_path) for o in s.outs if not o.use_cache)
            keys = tuple(k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params)
            stages[s.name] = Stage(s.name, group, item or None, cmd, wdir, uncached, keys)
        edges = {(up.name, down.name) for down, up in repo.index.graph.edges if {up.name, down.name} <= set(stages)}
    except DvcException as exc:
        raise GraphError(f"DVC rejects {root / 'dvc.yaml'}: {exc}") from exc
    finally:
        repo.close()
    return StageGraph(stages, edges)


def _inputs(root: Path) -> list[Path]:
    """The files DVC reads to resolve dvc.yaml: dvc.yaml, params.yaml and dvc.yaml's ``vars`` files."""
    import yaml

    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    extra = [root / v.partition(":")[0] for v in (doc.get("vars") or []) if isinstance(v, str)] \
        if isinstance(doc, dict) else []
    return list(dict.fromkeys([root / "dvc.yaml", root / "params.yaml", *extra]))


def fingerprint(root: str | Path) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    for path in _inputs(Path(root)):
        h.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>"))
    return h.hexdigest()


def write_cache(root: str | Path) -> Path:
    """Resolve ``root``'s dvc.yaml with DVC and write the JSON cache (atomically: the DAG parser may read it)."""
    root = Path(root).resolve()
    fp, graph = fingerprint(root), from_dvc(root)
    doc = {"fingerprint": fp, "stages": [asdict(s) for s in graph.stages.values()],
           "edges": sorted(map(list, graph.edges))}
    write_text(root / CACHE_FILE, json.dumps(doc, indent=1))
    return root / CACHE_FILE


def _read_cache(root: Path, *, current: bool = True) -> StageGraph | None:
    """The cached graph; None when there is none or (``current``) it is not of the files as they are now."""
    try:
        doc = json.loads((root / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if current and doc.get("fingerprint") != fingerprint(root):   # the fingerprint covers FORMAT too
        return None
    stages = {s["name"]: Stage(**{**s, "uncached": tuple(s["uncached"]), "params": tuple(s["params"])})
              for s in doc["stages"]}
    return StageGraph(stages, {(a, b) for a, b in doc["edges"]})


def load_graph(root: str | Path, dvc_yaml: str | Path = "dvc.yaml") -> StageGraph:
    """The stage graph of ``root``: the JSON cache while it is current, else rebuilt by DVC in a subprocess.

    Another ``dvc_yaml`` than ``root/dvc.yaml`` (the repository's, against a benchmark folder's params.yaml)
    is resolved in a scratch copy of it and ``root``'s params files, and not cached.
    """
    root = Path(root).resolve()
    spec = root / dvc_yaml
    if spec.resolve() != (root / "dvc.yaml").resolve():
        with tempfile.TemporaryDirectory(prefix="sass-dvc-graph-") as tmp:
            shutil.copy2(spec, Path(tmp) / "dvc.yaml")
            for f in _inputs(Path(tmp))[1:]:
                if (root / f.name).is_file():
                    shutil.copy2(root / f.name, f)
            return load_graph(tmp)
    graph = _read_cache(root)
    if graph is None:
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (src, os.environ.get("PYTHONPATH"))))}
        out = subprocess.run([sys.executable, "-m", MODULE, "--write", str(root)], cwd=root, env=env,
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            lines = (out.stderr or out.stdout).strip().splitlines()
            raise GraphError(lines[-1] if lines else f"dvc_graph --write exited with {out.returncode}")
        # what DVC just resolved; had params.yaml changed meanwhile, the next load resolves again
        graph = _read_cache(root, current=False)
    if graph is None:
        raise GraphError(f"dvc_graph --write left no readable {root / CACHE_FILE}")
    return graph


def task_groups(graph: StageGraph) -> list[TaskGroup]:
    """One TaskGroup per dvc.yaml entry, in dependency order: group B is downstream of group A when a stage
    of B depends on a stage of A."""
    members = graph.groups()
    group_of = {s.name: s.group for s in graph.stages.values()}
    ups: dict[str, set[str]] = {g: set() for g in members}
    for a, b in graph.edges:
        if group_of[a] == group_of[b]:
            raise GraphError(f"stages {a!r} and {b!r} of the same foreach depend on each other; "
                             "they can not run as one mapped task")
        ups[group_of[b]].add(group_of[a])
    order = _toposort(list(members), ups)
    items = {g: None if graph.stages[names[0]].item is None else tuple(str(graph.stages[n].item) for n in names)
             for g, names in members.items()}
    return [TaskGroup(g, tuple(members[g]), items[g], tuple(u for u in order if u in ups[g])) for g in order]


def describe(graph: StageGraph) -> str:
    """One line per task group (``python -m sass_retrieval.orchestration.dvc_graph [ROOT]``)."""
    return "\n".join(f"{g.name:<12} {'mapped over ' + ', '.join(g.items) if g.items else 'task':<40} "
                     f"after: {', '.join(g.upstream) or '-'}" for g in task_groups(graph))


if __name__ == "__main__":  # python -m ...dvc_graph [--write] [ROOT]: rewrite the cache, or print the tasks
    root = next((a for a in sys.argv[1:] if a != "--write"), ".")
    try:
        print(write_cache(root) if "--write" in sys.argv else describe(load_graph(root)))
    except GraphError as exc:
        sys.exit(f"dvc_graph: {exc}")
