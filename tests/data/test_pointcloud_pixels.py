"""The per-pixel shortcuts of pipeline/data/pointcloud.py against the whole-image readers they replace."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.camera import backproject, backproject_pixels
from pipeline.data.pointcloud import valid_depth_mask
from pipeline.io import synthia


@pytest.mark.parametrize("far_m", [0.0, 0.015, 2.5, 80.0, 80.004, 655.33, 655.34, 1e6])
def test_valid_depth_mask_equals_float_comparison(tmp_path, far_m):
    raw = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / "depth.png"
    synthia._imwrite(path, np.dstack([raw, raw, raw]))  # noqa: SLF001 - the writer of real files
    depth = synthia.read_depth(path)
    with np.errstate(invalid="ignore"):
        expected = np.isfinite(depth) & (depth <= far_m)
    np.testing.assert_array_equal(valid_depth_mask(synthia.read_depth_cm(path), far_m), expected)


def test_backproject_pixels_equals_whole_image():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 90.0, size=(37, 53)).astype(np.float32)
    intrinsics = synthia.Intrinsics(focal=41.3, cx=26.2, cy=18.7, baseline=0.8)
    v, u = rng.integers(0, 37, 200), rng.integers(0, 53, 200)
    got = backproject_pixels(depth[v, u], v, u, intrinsics)
    np.testing.assert_array_equal(got, backproject(depth, intrinsics)[v, u])
