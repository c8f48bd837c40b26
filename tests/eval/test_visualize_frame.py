"""One frame's point cloud as PNG + PLY; the PLY reads back with open3d with the same points."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.eval.visualize_frame import write_frame_views


def test_png_and_ply_written(tmp_path):
    import cv2
    import open3d as o3d

    rng = np.random.default_rng(0)
    points = rng.normal(0, 3, (500, 3)) + [0, 0, 10]
    colors = rng.integers(0, 256, (500, 3), dtype=np.uint8)
    paths = write_frame_views(points, tmp_path / "viz", "frame_000030", colors)
    image = cv2.imread(str(paths["png"]))
    assert image is not None and image.shape[0] > 100 and image.std() > 0
    cloud = o3d.io.read_point_cloud(str(paths["ply"]))
    assert len(cloud.points) == 500
    np.testing.assert_allclose(np.asarray(cloud.points), points, atol=1e-9)
    np.testing.assert_allclose(np.asarray(cloud.colors), colors / 255.0, atol=1e-6)
    assert not [p for p in (tmp_path / "viz").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_non_finite_dropped_and_bad_shape_rejected(tmp_path):
    import open3d as o3d

    points = np.array([[0, 0, 1.0], [np.nan, 0, 1], [1, 1, 2]])
    paths = write_frame_views(points, tmp_path, "f")
    assert len(o3d.io.read_point_cloud(str(paths["ply"])).points) == 2
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_frame_views(np.zeros((4, 2)), tmp_path, "g")
