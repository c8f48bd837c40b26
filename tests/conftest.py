"""Shared fixtures: a small generated SYNTHIA-SEQS look-alike (all 8 cameras)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.io.synthia import ALL_CAMERAS

SMALL = GeneratorConfig(seed=3, sequences=1, frames=3, height=96, width=160, cameras=ALL_CAMERAS, workers=1)


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    """One generated sequence, 3 frames, 160x96, every camera; read-only for tests."""
    root = tmp_path_factory.mktemp("synthia")
    generate_dataset(SMALL, root, progress=False)
    return root
