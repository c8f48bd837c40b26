"""Shared fixtures: a small generated SYNTHIA-SEQS look-alike (all 8 cameras); the repository's params;
a readable-figure check."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageSequence

from pipeline.config import load_params, parse_section
from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.io.synthia import ALL_CAMERAS
from pipeline.params.sections import SECTIONS

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"
SMALL = GeneratorConfig(seed=3, sequences=1, frames=3, height=96, width=160, cameras=ALL_CAMERAS, workers=1)


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    """One generated sequence, 3 frames, 160x96, every camera; read-only for tests."""
    root = tmp_path_factory.mktemp("synthia")
    generate_dataset(SMALL, root, progress=False)
    return root


@functools.cache
def _repo_params() -> dict[str, Any]:
    return load_params(REPO_PARAMS)


def repo_params(section: str, **overrides: Any):
    """The repository's params.yaml ``section`` with ``overrides``, validated as params.yaml is (the models
    have no defaults: tests start from the same values as the pipeline)."""
    return parse_section({section: {**_repo_params()[section], **overrides}}, section, SECTIONS[section])


MIN_SIDE, MAX_SIDE = 300, 2600  # figure pixels: large enough to read, small enough to open anywhere


def check_readable(path: Path) -> None:
    """``path`` exists and every frame (PNG, GIF) has sides within bounds and more than one grey level."""
    assert path.is_file() and path.stat().st_size > 2000, path
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            w, h = frame.size
            assert MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE, (path, frame.size)
            assert np.asarray(frame.convert("L"), dtype=float).var() > 0, path


@pytest.fixture
def assert_readable():
    """:func:`check_readable`, for figure tests."""
    return check_readable


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the timings tests recorded with ``record_property("<what> seconds", value)`` (also under xdist,
    which ships a report's properties to the controller), e.g. the smoke test's ``dvc repro`` time."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for name, value in getattr(report, "user_properties", []):
            if name.endswith(" seconds"):
                terminalreporter.write_line(f"{report.nodeid}: {name} {value}")
