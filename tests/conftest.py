"""Shared fixtures: a small generated SYNTHIA-SEQS look-alike (all 8 cameras); a readable-figure check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.io.synthia import ALL_CAMERAS

SMALL = GeneratorConfig(seed=3, sequences=1, frames=3, height=96, width=160, cameras=ALL_CAMERAS, workers=1)


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    """One generated sequence, 3 frames, 160x96, every camera; read-only for tests."""
    root = tmp_path_factory.mktemp("synthia")
    generate_dataset(SMALL, root, progress=False)
    return root


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
