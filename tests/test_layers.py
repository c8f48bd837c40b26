"""Imports point one way: each module imports only its own layer or lower ones (README, "Layers").

Layers, low -> high (a module may import its own layer and any lower one):

0. ``pipeline.errors``, ``pipeline.config``, ``pipeline.heap``, ``pipeline.runtime``, ``pipeline.distributed``,
   ``pipeline.progress``, ``pipeline.tracking``, ``pipeline.io``, ``pipeline.params`` (params.yaml models),
   ``pipeline.machine``
1. ``pipeline.geometry``
2. ``pipeline.data``
3. ``pipeline.models``
4. ``pipeline.train`` and ``pipeline.eval`` (siblings: neither imports the other)
5. ``pipeline.steps`` (one module per DVC stage), ``pipeline.cli``, ``pipeline.results`` (the results preset),
   ``pipeline.bench`` (benchmarks of stages) and ``pipeline.analysis`` (research analyses over a run)
6. ``stages`` (Typer shells)

Extra rule: MLflow tracking (``pipeline.tracking``) is used only by ``pipeline.steps`` (and by the stage shells,
which only start the helper process early). Imports inside
functions count the same as module-level ones.
"""

from __future__ import annotations

import pytest

from tests.import_graph import module_name, project_imports, source_files

LAYERS: list[tuple[str, ...]] = [
    ("pipeline", "pipeline.errors", "pipeline.config", "pipeline.heap", "pipeline.runtime", "pipeline.distributed",
     "pipeline.progress", "pipeline.tracking", "pipeline.tracking_remote", "pipeline.io", "pipeline.params",
     "pipeline.machine"),
    ("pipeline.geometry",),
    ("pipeline.data",),
    ("pipeline.models",),
    ("pipeline.train", "pipeline.eval"),
    ("pipeline.steps", "pipeline.cli", "pipeline.results", "pipeline.bench", "pipeline.analysis"),
    ("stages",),
]
SIBLINGS_APART = {"pipeline.train", "pipeline.eval"}
TRACKING_USERS = ("pipeline.steps", "pipeline.tracking_remote",  # the MLflow service of pipeline.tracking
                  "stages")  # early_tracking only


def _group(module: str) -> tuple[int, str]:
    """(layer index, group prefix) of ``module``: the longest matching prefix wins."""
    best = (-1, "")
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (level, prefix)
    if best[0] < 0:
        raise AssertionError(f"{module}: in no layer (add it to LAYERS and the README)")
    return best


def violations(files=None) -> list[str]:
    """One line per forbidden import: ``file:line: importer -> imported (why)``."""
    found = []
    for path in files if files is not None else source_files():
        importer = module_name(path)
        level, group = _group(importer)
        for imported, line in project_imports(path):
            target_level, target_group = _group(imported)
            where = f"{path.name}:{line}: {importer} -> {imported}"
            if target_level > level:
                found.append(f"{where} (upward: layer {level} imports layer {target_level})")
            elif target_level == level and group != target_group and {group, target_group} <= SIBLINGS_APART:
                found.append(f"{where} (siblings {group} and {target_group} stay apart)")
            elif imported == "pipeline.tracking" and not importer.startswith(TRACKING_USERS):
                found.append(f"{where} (MLflow tracking belongs to pipeline.steps)")
    return found


def test_every_module_has_a_layer():
    for path in source_files():
        _group(module_name(path))


def test_imports_point_down():
    assert violations() == []


def test_checker_catches_an_upward_function_level_import(tmp_path, monkeypatch):
    """The checker itself: a function-level import of train from models is reported."""
    import tests.import_graph as graph

    fake_root = tmp_path
    (fake_root / "pipeline" / "models").mkdir(parents=True)
    (fake_root / "pipeline" / "train").mkdir(parents=True)
    (fake_root / "pipeline" / "eval").mkdir(parents=True)
    for package in ("pipeline", "pipeline/models", "pipeline/train", "pipeline/eval"):
        (fake_root / package / "__init__.py").write_text("")
    (fake_root / "pipeline" / "train" / "loop.py").write_text("x = 1\n")
    (fake_root / "pipeline" / "eval" / "report.py").write_text("from pipeline.train import loop\n")
    model = fake_root / "pipeline" / "models" / "net.py"
    model.write_text("def f():\n    from pipeline.train.loop import x\n    return x\n")
    monkeypatch.setattr(graph, "ROOT", fake_root)
    found = violations([model, fake_root / "pipeline" / "eval" / "report.py"])
    assert len(found) == 2
    assert "upward" in found[0] and "pipeline.train.loop" in found[0]
    assert "siblings" in found[1]


@pytest.mark.parametrize("module, level", [("pipeline.io.synthia", 0), ("pipeline.models.vggt.load", 3),
                                            ("stages.laq", 6), ("pipeline", 0)])
def test_layer_lookup(module, level):
    assert _group(module)[0] == level
