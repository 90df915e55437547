"""dvc.yaml's deps cover every project module each stage runs, by construction.

For every stage DVC resolves (``dvc.repo.Repo(root).index.stages``), the cmd ``python -m pipelines.X``
names the entry module pipelines/X.py; its import closure over the project (pipelines/ and
src/sass_retrieval/) is every ``import`` / ``from ... import`` anywhere in each module, lazy imports
inside functions included, relative imports resolved, plus the ``__init__.py`` of every package on the
way. Each module of the closure must be a dep of the stage, or lie under a folder dep. Two exceptions,
both of code that can not change a stage's outputs:

- a package ``__init__.py`` with no code (empty or a docstring) runs nothing;
- ``params_schema.py`` (imported by ``config.load_params``) only accepts or rejects params; the stage
  ``params`` depends on it, and a stage that depends on that stage's output is covered.

The slow test records the pipeline in a copy of the project with ``dvc commit`` and checks that editing
a comment in a deep module (data/schema.py) makes ``dvc status`` report exactly the stages that import
it, and that the knobs that can not change results (train.threads, train.checkpoint_every,
train.checkpoint_seconds) rerun none.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from support import copy_project

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pipelines": Path("pipelines"), "sass_retrieval": Path("src/sass_retrieval")}
GATED = {"src/sass_retrieval/params_schema.py"}  # covered by a dep on the `params` stage's output
CHECK_MODULE = "pipelines.check_params"


# ---------------------------------------------------------------- the import closure


def module_file(root: Path, name: str) -> Path | None:
    """pipelines.x / sass_retrieval.a.b -> its file relative to root, or None (not a project module)."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*rest)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / cand).is_file():
            return cand
    return None


def imported_names(root: Path, name: str, path: Path) -> set[str]:
    """Every module name an import statement anywhere in the file may load (relative ones resolved)."""
    tree = ast.parse((root / path).read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return out


def import_closure(root: Path, entry: str) -> dict[str, Path]:
    """Module name -> file of every project module that running ``python -m entry`` may import."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            name = ".".join(parts[:i])
            path = module_file(root, name)
            if path is not None and name not in seen:
                seen[name] = path
                todo.extend(imported_names(root, name, path))
    return seen


def runs_code(root: Path, path: Path) -> bool:
    """False for a file with nothing but (optionally) a docstring."""
    body = ast.parse((root / path).read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return bool(body)


def entry_module(cmd: str) -> str | None:
    words = cmd.split()
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        return words[2]
    return None


def covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@cache
def dvc_stages(root: Path) -> tuple[tuple[str, str, frozenset[str], frozenset[str]], ...]:
    """(name, cmd, path deps, outs) of every stage, as DVC itself resolves dvc.yaml."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(str(root))
    try:
        rel = lambda p: os.path.relpath(p, repo.root_dir).replace(os.sep, "/")  # noqa: E731
        out = []
        for s in repo.index.stages:
            cmd = s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd)
            deps = frozenset(rel(d.fs_path) for d in s.deps if not isinstance(d, ParamsDependency))
            out.append((s.name, cmd, deps, frozenset(rel(o.fs_path) for o in s.outs)))
        return tuple(out)
    finally:
        repo.close()


def missing_code_deps(root: Path) -> list[str]:
    stages = dvc_stages(root)
    check_outs = {o for _, cmd, _, outs in stages if entry_module(cmd) == CHECK_MODULE for o in outs}
    problems = []
    for name, cmd, deps, _ in stages:
        entry = entry_module(cmd)
        if entry is None:
            problems.append(f"stage {name}: cmd {cmd!r} is not `python -m <module>`; can not derive its code")
            continue
        if module_file(root, entry) is None:
            problems.append(f"stage {name}: module {entry} not found in the project")
            continue
        for module, path in sorted(import_closure(root, entry).items()):
            p = path.as_posix()
            if covered(p, deps) or not runs_code(root, path):
                continue
            if p in GATED and entry != CHECK_MODULE and deps & check_outs:
                continue
            problems.append(f"stage {name}: imports {module} but does not list {p} (or a folder above it) in deps")
    return problems


# ---------------------------------------------------------------- fast tests


def test_every_stage_lists_its_whole_import_closure_in_deps() -> None:
    problems = missing_code_deps(ROOT)
    assert not problems, "dvc.yaml deps miss project code:\n" + "\n".join(problems)


def test_every_stage_runs_after_the_params_check() -> None:
    stages = dvc_stages(ROOT)
    check = [(name, outs) for name, cmd, _, outs in stages if entry_module(cmd) == CHECK_MODULE]
    assert len(check) == 1, "dvc.yaml needs exactly one stage running pipelines.check_params"
    check_name, check_outs = check[0]
    assert check_name == "params" and list(check_outs) == ["reports/params.ok"]
    assert {"params.yaml", "src/sass_retrieval/params_schema.py"} <= dict(
        (n, d) for n, _, d, _ in stages)["params"]
    late = [name for name, _, deps, _ in stages if name != check_name and not deps & check_outs]
    assert not late, f"stages that do not depend on the params check: {late}"


def package_data(dep: str, closure: set[str]) -> bool:
    """A folder of non-Python files (e.g. Jinja templates) beside a module the stage runs: what it reads."""
    folder = ROOT / dep
    parent = Path(dep).parent.as_posix()
    return (folder.is_dir() and not any(folder.rglob("*.py"))
            and any(Path(c).parent.as_posix() == parent for c in closure))


def test_code_deps_exist_and_name_no_stale_module() -> None:
    """Declared code deps exist (DVC fails on a missing dep) and each is used by the stage's closure."""
    stale = []
    for name, cmd, deps, _ in dvc_stages(ROOT):
        closure = {p.as_posix() for p in import_closure(ROOT, entry_module(cmd)).values()}
        for d in deps:
            if not d.startswith(("pipelines/", "src/")):
                continue
            assert (ROOT / d).exists(), f"stage {name}: dep {d} does not exist"
            if not any(c == d or c.startswith(d + "/") for c in closure) and not package_data(d, closure):
                stale.append(f"stage {name}: {d}")
    assert not stale, "code deps the stage never imports (remove them, or they rerun it for nothing):\n" + \
        "\n".join(stale)


def test_the_closure_follows_lazy_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    pkg = tmp_path / "src/sass_retrieval"
    (pkg / "deep").mkdir(parents=True)
    (tmp_path / "pipelines/__init__.py").write_text("")
    (tmp_path / "pipelines/stage.py").write_text(
        "from .helpers import x\n\ndef main():\n    from sass_retrieval.deep import lazy\n")
    (tmp_path / "pipelines/helpers.py").write_text("import os\nfrom sass_retrieval import top\nx = 1\n")
    (pkg / "__init__.py").write_text("import os\n")
    (pkg / "top.py").write_text("from .deep.inner import y\n")
    (pkg / "deep/__init__.py").write_text('"""docs only"""\n')
    (pkg / "deep/inner.py").write_text("from ..top import *  # noqa\ny = 2\n")
    (pkg / "deep/lazy.py").write_text("def f():\n    from . import inner\n")
    (pkg / "unused.py").write_text("")
    got = {k: v.as_posix() for k, v in import_closure(tmp_path, "pipelines.stage").items()}
    assert set(got) == {"pipelines", "pipelines.stage", "pipelines.helpers", "sass_retrieval", "sass_retrieval.top",
                        "sass_retrieval.deep", "sass_retrieval.deep.inner", "sass_retrieval.deep.lazy"}
    assert got["sass_retrieval.deep"] == "src/sass_retrieval/deep/__init__.py"
    assert not runs_code(tmp_path, Path(got["sass_retrieval.deep"]))
    assert not runs_code(tmp_path, Path(got["pipelines"])) and runs_code(tmp_path, Path(got["sass_retrieval"]))


def test_a_missing_dep_is_reported_with_stage_and_module(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    before = set(missing_code_deps(project))
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    spec["stages"]["validate"]["deps"].remove("src/sass_retrieval/data/schema.py")
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    dvc_stages.cache_clear()
    assert [p for p in missing_code_deps(project) if p not in before] == [
        "stage validate: imports sass_retrieval.data.schema but does not list src/sass_retrieval/data/schema.py "
        "(or a folder above it) in deps"]


# ---------------------------------------------------------------- dvc status in a copy of the project


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(project / "src")}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)


def changed_stages(project: Path) -> set[str]:
    res = dvc(project, "status", "--json")
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout or "{}"))


@pytest.mark.slow
def test_editing_a_deep_module_marks_exactly_its_importers_changed(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    # Stand-in outputs, so every stage can be recorded without running the pipeline.
    for name, _, _, outs in dvc_stages(project):
        for out in outs:
            target = project / out
            if "." in target.name:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{name}\n")
            else:
                target.mkdir(parents=True, exist_ok=True)
                (target / "stand-in.txt").write_text(f"{name}\n")
    (project / "models/pretrain/model.pt").write_text("pretrain\n")
    (project / "models/sass/model.pt").write_text("sass\n")
    (project / "models/dssm_mixed/model.pt").write_text("dssm_mixed\n")   # the challenger (publish.challenger)
    res = dvc(project, "commit", "--force", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert changed_stages(project) == set()

    def importers(module: str) -> set[str]:
        return {name for name, cmd, _, _ in dvc_stages(project)
                if module in import_closure(project, entry_module(cmd))}

    # the canonical schema: every stage but the params check reads the store through it
    schema = project / "src/sass_retrieval/data/schema.py"
    schema.write_text(schema.read_text() + "\n# a comment\n")
    assert {"ingest", "validate", "split@s0", "pairs", "pretrain", "finetune", "evaluate", "publish"} <= \
        importers("sass_retrieval.data.schema")
    assert changed_stages(project) == importers("sass_retrieval.data.schema")
    assert dvc(project, "commit", "--force", "--quiet").returncode == 0

    # the transfer gates: the stages that build or load a model, not the data stages nor publish
    transfer = project / "src/sass_retrieval/models/transfer.py"
    transfer.write_text(transfer.read_text() + "\n# a comment\n")
    model_stages = importers("sass_retrieval.models.transfer")
    assert {"pretrain", "finetune", "challenger", "index@s0", "evaluate"} <= model_stages
    assert not model_stages & {"params", "ingest", "validate", "split@s0", "pairs", "publish"}
    assert changed_stages(project) == model_stages
    assert dvc(project, "commit", "--force", "--quiet").returncode == 0

    # knobs that can not change any output rerun nothing (only the params check)
    from sass_retrieval.config import update_params_file

    update_params_file(project / "params.yaml", {"train.threads": 1, "train.checkpoint_every": 50,
                                                   "train.checkpoint_seconds": 5})
    assert changed_stages(project) == {"params"}
    # a fine-tuning knob reruns the fine-tuned rows, not the data stages nor pretraining
    update_params_file(project / "params.yaml", {"finetune.lr": 0.001})
    # (and every benchmark row evaluate.benchmark_rows lists, reference@<row>: the demo lists dssm_single)
    bench = {f"reference@{r}" for r in yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["benchmark_rows"]}
    assert changed_stages(project) == {"params", "finetune", "challenger"} | bench
