"""Project import graph from the AST (module-level and function-level imports alike), for the structure tests.

``project_imports(path)`` lists the ``pipeline``/``stages`` modules one source file imports, resolved to the
module that exists in the repository (``from pipeline.io import synthia`` -> ``pipeline.io.synthia``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def module_name(path: Path) -> str:
    """``pipeline/io/synthia.py`` -> ``pipeline.io.synthia``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    """The file of module ``name`` in the repository (``.py`` or package ``__init__.py``), or None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_files() -> list[Path]:
    """Every ``.py`` file under ``pipeline/`` and ``stages/``."""
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _imported_names(path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) for every import statement anywhere in ``path`` (``from a import b`` gives a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def project_imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) for each project module imported by ``path``: the longest dotted prefix that is a file."""
    out = []
    for name, line in _imported_names(path):
        if name.split(".")[0] not in PACKAGES:
            continue
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if module_file(".".join(parts[:end])) is not None:
                out.append((".".join(parts[:end]), line))
                break
    return out
