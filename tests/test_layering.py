"""The direction of imports: evaluation and serving never reach into training; the library never into stages.

Evaluation and serving read checkpoints and the feature bank (``models``), never the training code: a
service then loads without the trainers, and a change to training can not silently change how a model
is scored. The stage entry points (``pipelines``) are thin wrappers over the library, never the reverse.
The scan reads every import statement (lazy ones inside functions and TYPE_CHECKING blocks included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "sass_retrieval"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module an import statement in ``path`` names (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import submodule`
    return out


def violations(folders: list[Path], forbidden: str) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)} imports {mod}"
                  for folder in folders for path in folder.rglob("*.py")
                  for mod in imported_modules(path) if mod == forbidden or mod.startswith(forbidden + "."))


def test_the_scan_resolves_relative_and_lazy_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    (src / "sass_retrieval/serve").mkdir(parents=True)
    bad = src / "sass_retrieval/serve/bad.py"
    bad.write_text("def f():\n    from ..train import bank\n    from ..models.bank import load_bank\n")
    monkeypatch.setattr(f"{__name__}.SRC", src)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations([src / "sass_retrieval/serve"], "sass_retrieval.train") == [
        "src/sass_retrieval/serve/bad.py imports sass_retrieval.train",
        "src/sass_retrieval/serve/bad.py imports sass_retrieval.train.bank"]
    assert violations([src / "sass_retrieval/serve"], "sass_retrieval.models") != []


def test_evaluation_serving_and_indexing_do_not_import_training() -> None:
    found = violations([PACKAGE / "evaluate", PACKAGE / "serve", PACKAGE / "index"], "sass_retrieval.train")
    assert not found, "evaluate/, serve/ and index/ must not import train/ (move what they need to models/):\n" + \
        "\n".join(found)


def test_indexing_does_not_import_evaluation() -> None:
    """The index stage builds the artefact evaluation scores, from models/ (embed.py), never the reverse."""
    found = violations([PACKAGE / "index"], "sass_retrieval.evaluate")
    assert not found, "index/ must not import evaluate/:\n" + "\n".join(found)


def test_the_library_does_not_import_the_stage_entry_points() -> None:
    found = violations([PACKAGE], "pipelines")
    assert not found, "src/ must not import pipelines/ (move the logic into the library):\n" + "\n".join(found)
