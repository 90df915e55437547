"""The stage graph declared in dvc.yaml, resolved the way DVC resolves it, without importing DVC.

dvc.yaml (+ params.yaml for ``${...}``) is the one declaration of the pipeline. This module reads it and
returns every stage with its resolved ``cmd``, ``deps`` and ``outs`` (``metrics`` and ``plots`` of a stage
are outputs too, as in DVC), and the edges between stages: B depends on A when one of B's deps equals one
of A's outs or lies under or above it (a dep on ``data/features`` waits for every ``data/features/<s>``).

The resolution covers what DVC 3 documents for dvc.yaml: ``vars`` (files, ``file:key`` and inline dicts;
params.yaml is always loaded), ``foreach`` over a list or a dict (``${item}``, ``${item.k}``, ``${key}``),
``matrix``, ``wdir``, dotted and indexed lookups (``${a.b}``, ``${a[0]}``) and ``\\${`` escapes. Stage names
follow DVC: ``group@key`` for foreach items and ``group@v1-v2`` for matrix combinations. A test checks the
result against ``dvc.repo.Repo(root).index.stages`` on the real dvc.yaml.

It is pure Python (PyYAML only), so the Airflow DAG file can call it at parse time and stay fast. The
Airflow-facing view is :func:`task_groups`: a foreach/matrix stage becomes ONE mapped task over its items,
a plain stage becomes one task; edges between task groups are the union of the edges of their stages.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS_FILE = "params.yaml"
JOIN = "@"
_KEYCRE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")


class GraphError(ValueError):
    """dvc.yaml can not be resolved (unknown variable, bad foreach, cycle...)."""


@dataclass(frozen=True)
class Stage:
    """One resolved DVC stage. Paths are POSIX, relative to the project root."""

    name: str                         # "ingest", "split@s0"
    group: str                        # "ingest", "split"
    item: str | None                  # None for a plain stage, else the foreach/matrix key ("s0")
    cmd: str                          # joined with " && " when dvc.yaml gives a list
    wdir: str = "."
    deps: tuple[str, ...] = ()        # path deps (params files are in ``params``)
    outs: tuple[str, ...] = ()        # outs + metrics + plots declared by the stage
    params: tuple[str, ...] = ()      # "params.yaml:window", ... (file:key)
    cached_outs: tuple[str, ...] = ()  # the subset of outs DVC keeps in its cache

    @property
    def param_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.rsplit(":", 1)[0] for p in self.params))


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
    stages: dict[str, Stage]                           # in dvc.yaml order
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
        order, done = [], set()
        pending = list(self.stages)
        while pending:
            ready = [s for s in pending if all(a in done for a in self.upstream(s))]
            if not ready:
                raise GraphError(f"cycle between stages: {', '.join(pending)}")
            for s in ready:
                order.append(s)
                done.add(s)
            pending = [s for s in pending if s not in done]
        return order


# ---------------------------------------------------------------- interpolation (DVC's ${...} syntax)

def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        raise GraphError(f"can not interpolate a {type(value).__name__} inside a string: {value!r}")
    return str(value)


def _key_str(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _select(context: Mapping[str, Any], expr: str) -> Any:
    """``a.b[0].c`` in ``context``, like DVC's Context.select."""
    parts = [p for p in expr.strip().replace("[", ".").replace("]", "").split(".") if p != ""]
    node: Any = context
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise GraphError(f"could not find '{'.'.join(parts[: i + 1])}' while resolving '${{{expr}}}'")
    return node


def interpolate(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve ``${...}`` in strings (recursively in lists and dicts).

    A string that is exactly one ``${x}`` takes x's value as is (a list stays a list, as DVC does for
    ``foreach: ${scenarios.names}``); otherwise each match is formatted into the string.
    """
    if isinstance(value, str):
        matches = list(_KEYCRE.finditer(value))
        if not matches:
            return value.replace("\\${", "${")
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return _select(context, matches[0].group("inner"))
        buf, pos = "", 0
        for m in matches:
            buf += value[pos : m.start()] + _to_str(_select(context, m.group("inner")))
            pos = m.end()
        return (buf + value[pos:]).replace("\\${", "${")
    if isinstance(value, list):
        return [interpolate(v, context) for v in value]
    if isinstance(value, Mapping):
        return {interpolate(k, context): interpolate(v, context) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- vars

def _read_yaml(path: Path) -> Any:
    try:
        with path.open() as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError as exc:
        raise GraphError(f"vars file not found: {path}") from exc


def _merge_vars(context: dict[str, Any], new: Mapping[str, Any], where: str) -> None:
    for k, v in new.items():
        if k in context and context[k] != v:
            raise GraphError(f"{where}: variable {k!r} is defined twice with different values")
        context[k] = v


def _load_vars(context: dict[str, Any], entries: Iterable[Any], base: Path, loaded: set[str],
               default: str | None = None) -> None:
    entries = list(entries)
    if default and default not in loaded and (base / default).exists():
        _merge_vars(context, _read_yaml(base / default), default)
        loaded.add(default)
    for entry in entries:
        if isinstance(entry, Mapping):
            _merge_vars(context, entry, "vars")
            continue
        spec = str(entry)
        fname, _, keys = spec.partition(":")
        if fname in loaded and not keys:
            continue
        data = _read_yaml(base / fname)
        if keys:
            for key in keys.split(","):
                _merge_vars(context, {key: _select(data, key)}, spec)
        else:
            _merge_vars(context, data, spec)
            loaded.add(fname)


# ---------------------------------------------------------------- stage resolution

def _norm(path: str, wdir: str) -> str:
    return posixpath.normpath(posixpath.join(wdir, str(path))) if wdir not in ("", ".") else posixpath.normpath(str(path))


def _entries(section: Any) -> list[tuple[str, dict[str, Any]]]:
    """deps/outs/metrics/plots entries: "path" or {"path": {options}} -> [(path, options)]."""
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in section or []:
        if isinstance(entry, Mapping):
            for path, opts in entry.items():
                out.append((str(path), dict(opts or {})))
        else:
            out.append((str(entry), {}))
    return out


def _params(section: Any, wdir: str) -> list[str]:
    out: list[str] = []
    for entry in section or []:
        if isinstance(entry, Mapping):
            for fname, keys in entry.items():
                for key in keys or []:
                    out.append(f"{_norm(fname, wdir)}:{key}")
                if not keys:
                    out.append(f"{_norm(fname, wdir)}:")
        else:
            out.append(f"{_norm(DEFAULT_PARAMS_FILE, wdir)}:{entry}")
    return out


def _make_stage(name: str, group: str, item: str | None, body: Mapping[str, Any], root_wdir: str) -> Stage:
    if "cmd" not in body:
        raise GraphError(f"stage {name!r} has no cmd")
    wdir = _norm(body.get("wdir", "."), root_wdir) if body.get("wdir") else root_wdir
    cmd = body["cmd"]
    cmd = " && ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)
    deps = tuple(_norm(p, wdir) for p, _ in _entries(body.get("deps")))
    outs, cached = [], []
    for section in ("outs", "metrics", "plots"):
        for path, opts in _entries(body.get(section)):
            p = _norm(path, wdir)
            outs.append(p)
            if opts.get("cache", section == "outs"):
                cached.append(p)
    return Stage(name=name, group=group, item=item, cmd=cmd, wdir=wdir or ".", deps=deps, outs=tuple(outs),
                 params=tuple(_params(body.get("params"), wdir)), cached_outs=tuple(cached))


def _foreach_items(iterable: Any, name: str) -> dict[str, Any]:
    if isinstance(iterable, Mapping):
        return {_key_str(k): v for k, v in iterable.items()}
    if isinstance(iterable, list | tuple):
        if any(isinstance(v, Mapping | list | tuple) for v in iterable):
            return {str(i): v for i, v in enumerate(iterable)}
        return {_key_str(v): v for v in iterable}
    raise GraphError(f"stage {name!r}: foreach must be a list or a dict, got {iterable!r}")


def _matrix_items(matrix: Mapping[str, Any], context: Mapping[str, Any], name: str) -> dict[str, dict[str, Any]]:
    resolved: dict[str, list[Any]] = {}
    for k, v in matrix.items():
        v = interpolate(v, context)
        if not isinstance(v, list | tuple):
            raise GraphError(f"stage {name!r}: matrix.{k} must be a list, got {v!r}")
        resolved[k] = list(v)
    out: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(list(enumerate(v)) for v in resolved.values())):
        d, frags = {}, []
        for k, (i, v) in zip(resolved, combo, strict=True):
            d[k] = v
            frags.append(f"{k}{i}" if isinstance(v, Mapping | list | tuple) else _key_str(v))
        out["-".join(frags)] = d
    return out


def resolve_stages(root: str | Path, dvc_yaml: str = "dvc.yaml") -> dict[str, Stage]:
    """Every stage of ``root/dvc_yaml`` resolved, in declaration order (foreach items expanded)."""
    root = Path(root)
    doc = _read_yaml(root / dvc_yaml)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("stages"), Mapping):
        raise GraphError(f"{root / dvc_yaml}: no 'stages' mapping")
    context: dict[str, Any] = {}
    loaded: set[str] = set()
    _load_vars(context, doc.get("vars") or [], root, loaded, default=DEFAULT_PARAMS_FILE)
    stages: dict[str, Stage] = {}
    for group, definition in doc["stages"].items():
        group = str(group)
        if JOIN in group:
            raise GraphError(f"stage name {group!r} must not contain {JOIN!r}")
        if not isinstance(definition, Mapping):
            raise GraphError(f"stage {group!r}: definition must be a mapping")
        if "foreach" in definition or "matrix" in definition:
            template = definition.get("do") if "foreach" in definition else {
                k: v for k, v in definition.items() if k != "matrix"}
            if not isinstance(template, Mapping):
                raise GraphError(f"stage {group!r}: foreach needs a 'do' mapping")
            if "foreach" in definition:
                items = _foreach_items(interpolate(definition["foreach"], context), group)
            else:
                items = _matrix_items(definition["matrix"], context, group)
            for key, value in items.items():
                local = dict(context)
                local_vars = template.get("vars") or []
                _load_vars(local, local_vars, root, set(loaded))
                local["item"] = value
                if "foreach" in definition and isinstance(interpolate(definition["foreach"], context), Mapping):
                    local["key"] = key
                body = interpolate({k: v for k, v in template.items() if k != "vars"}, local)
                name = f"{group}{JOIN}{key}"
                stages[name] = _make_stage(name, group, key, body, ".")
        else:
            local = dict(context)
            _load_vars(local, definition.get("vars") or [], root, set(loaded))
            body = interpolate({k: v for k, v in definition.items() if k != "vars"}, local)
            stages[group] = _make_stage(group, group, None, body, ".")
    return stages


# ---------------------------------------------------------------- edges and graph

def overlaps(a: str, b: str) -> bool:
    """Same path, or one lies under the other (``data/features`` vs ``data/features/s0``)."""
    a, b = posixpath.normpath(a), posixpath.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def stage_edges(stages: Mapping[str, Stage]) -> set[tuple[str, str]]:
    """(A, B) for every pair where a dep of B overlaps an out of A (never a self-edge)."""
    edges: set[tuple[str, str]] = set()
    for b in stages.values():
        for a in stages.values():
            if a.name != b.name and any(overlaps(d, o) for d in b.deps for o in a.outs):
                edges.add((a.name, b.name))
    return edges


def load_graph(root: str | Path, dvc_yaml: str = "dvc.yaml") -> StageGraph:
    stages = resolve_stages(root, dvc_yaml)
    graph = StageGraph(stages=stages, edges=stage_edges(stages))
    graph.topological()  # raises on a cycle
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
        if group_of[a] != group_of[b]:
            ups[group_of[b]].add(group_of[a])
        else:
            raise GraphError(f"stages {a!r} and {b!r} of the same foreach depend on each other; "
                             "they can not run as one mapped task")
    order: list[str] = []
    pending = list(members)
    while pending:
        ready = [g for g in pending if ups[g] <= set(order)]
        if not ready:
            raise GraphError(f"cycle between stages: {', '.join(pending)}")
        order += ready
        pending = [g for g in pending if g not in ready]
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


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(describe(load_graph(sys.argv[1] if len(sys.argv) > 1 else ".")))
