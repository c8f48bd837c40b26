"""dvc.yaml deps = what each stage imports: a stage whose imported code changes must rerun.

For every stage ``python -m stages.<name>`` the transitive closure of project files it imports is computed
from the AST (``tests/import_graph.py``: function-level imports included, plus the ``__init__.py`` of every
package on the way, which Python runs too). Each file must be covered by one of the stage's ``deps``
(the file itself or a folder above it), except the output-neutral modules of ``OUTPUT_NEUTRAL``.
Conversely every code dep must cover at least one imported file (no stale or over-broad code deps), and
every dep must exist unless another stage writes it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.import_graph import ROOT, module_file, module_name, project_imports

# Modules that cannot change a stage's outputs, so editing them must not rerun stages:
OUTPUT_NEUTRAL = {
    "pipeline/errors.py",      # error types and the one-line error report
    "pipeline/stage_process.py",  # GC paused during imports, fast exit (process overheads only)
    "pipeline/stage_server.py",  # stages forked from a process with the libraries imported (process overheads only)
    "pipeline/io/user_sockets.py",  # where the local services' sockets live, starting and greeting them
    "pipeline/io/atomic.py",   # write-to-temp-then-rename (same bytes, only the path dance)
    "pipeline/tracking.py",    # MLflow logging and the DVC metric/curve files' writer (formatting only)
    "pipeline/tracking_remote.py",  # the MLflow service that makes the MLflow calls
    "pipeline/headline.py",    # which metrics MLflow shows on the parent run
    "pipeline/io/locks.py",    # inter-process file locks around the MLflow store
    "pipeline/progress.py",    # progress bars and log lines
    "pipeline/__init__.py",    # sets OMP_WAIT_POLICY: thread scheduling, not results
}
CODE_ROOTS = ("pipeline/", "stages/")


def _stages() -> dict[str, dict]:
    """dvc.yaml's stages with ``${section.key}`` in their deps replaced by params.yaml's values (as DVC does)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        stage["deps"] = [_interpolate(dep, params) for dep in stage.get("deps", [])]
    return stages


def _interpolate(text: str, params: dict) -> str:
    def value(match: re.Match) -> str:
        node = params
        for key in match.group(1).split("."):
            node = node[key]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", value, text)


def _is_code_free(path: Path) -> bool:
    """A package ``__init__.py`` holding at most a docstring runs nothing."""
    import ast

    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def import_closure(start: Path) -> set[str]:
    """Repository-relative paths of every project file ``start`` imports, directly or not (``start`` included)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = module_name(path).split(".")
        for end in range(1, len(parts)):  # parent packages run their __init__.py first
            init = module_file(".".join(parts[:end]))
            if init is not None:
                todo.append(init)
        todo += [module_file(name) for name, _ in project_imports(path)]
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def _code_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if d.startswith(CODE_ROOTS)]


def _stage_names() -> list[str]:
    return [name for name, stage in _stages().items() if stage["cmd"].strip() == f"python -m stages.{name}"]


def undeclared(name: str) -> list[str]:
    """Imported project files of stage ``name`` that no dep covers (output-neutral ones aside)."""
    deps = _code_deps(_stages()[name])
    closure = import_closure(ROOT / "stages" / f"{name}.py")
    return sorted(p for p in closure if p not in OUTPUT_NEUTRAL and not _covered(p, deps)
                  and not (p.endswith("__init__.py") and _is_code_free(ROOT / p)))


def unused(name: str) -> list[str]:
    """Code deps of stage ``name`` that cover no file the stage imports."""
    closure = import_closure(ROOT / "stages" / f"{name}.py")
    return [dep for dep in _code_deps(_stages()[name]) if not any(_covered(p, [dep]) for p in closure)]


def test_every_stage_is_a_stages_module():
    assert sorted(_stage_names()) == sorted(_stages())


@pytest.mark.parametrize("name", _stage_names())
def test_imported_code_is_declared(name):
    assert undeclared(name) == [], f"dvc.yaml stage {name}: add these deps (or a folder above them)"


@pytest.mark.parametrize("name", _stage_names())
def test_no_code_dep_the_stage_does_not_import(name):
    assert unused(name) == [], f"dvc.yaml stage {name}: these deps cover nothing the stage imports"


def missing_deps(stages: dict[str, dict]) -> list[tuple[str, str]]:
    """(stage, dep) for each dep that is neither in the repository nor under some stage's output."""
    outputs = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])}
    return [(name, dep) for name, s in stages.items() for dep in s.get("deps", [])
            if not (ROOT / dep).exists() and not _covered(dep, sorted(outputs))]


def test_every_dep_exists_or_is_another_stages_output():
    assert missing_deps(_stages()) == []


def test_a_missing_dep_is_reported():
    stages = {"a": {"deps": ["stages/laq.py", "pipeline/nowhere.py", "data/raw"], "outs": []},
              "b": {"deps": [], "outs": ["data/raw"]}}
    assert missing_deps(stages) == [("a", "pipeline/nowhere.py")]


def test_closure_follows_function_level_imports_and_packages(tmp_path, monkeypatch):
    """The checker itself, on a fake tree: a function-level import and a package __init__ are both found."""
    import tests.import_graph as graph

    for folder in ("stages", "pipeline/a"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "pipeline/__init__.py").write_text("")
    (tmp_path / "pipeline/a/__init__.py").write_text("from pipeline.a import b\n")
    (tmp_path / "pipeline/a/b.py").write_text("X = 1\n")
    (tmp_path / "pipeline/a/c.py").write_text("Y = 2\n")
    (tmp_path / "stages/s.py").write_text("def main():\n    from pipeline.a.c import Y\n    return Y\n")
    monkeypatch.setattr(graph, "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert import_closure(tmp_path / "stages/s.py") == {"stages/s.py", "pipeline/__init__.py",
                                                        "pipeline/a/__init__.py", "pipeline/a/b.py", "pipeline/a/c.py"}
