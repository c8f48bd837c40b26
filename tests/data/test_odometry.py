"""Depth-map clouds for odometry: back-projection and normals of an analytic plane."""

from __future__ import annotations

import numpy as np

from pipeline.data.odometry import depth_cloud
from pipeline.io.synthia import Intrinsics


class Record:  # the fields depth_cloud reads
    def __init__(self, depth: np.ndarray, intrinsics: Intrinsics):
        self.depth, self.intrinsics = depth, intrinsics


def test_wall_and_ground_normals_and_ground_removal():
    intr = Intrinsics(focal=60.0, cx=39.5, cy=29.5, baseline=0.8)
    v = np.arange(60, dtype=float)[:, None].repeat(80, 1)
    ray_y = (v - intr.cy) / intr.focal
    depth = np.full((60, 80), 12.0)  # a wall 12 m ahead
    below = ray_y > 1.6 / 12.0  # rays that hit the ground (y = 1.6 m, OpenCV y down) before the wall
    depth[below] = 1.6 / ray_y[below]
    depth[:5] = np.inf  # sky
    points, normals = depth_cloud(Record(depth.astype(np.float32), intr))
    wall = np.isclose(points[:, 2], 12.0, atol=1e-3)
    above_crease = wall & (points[:, 1] < 1.6 - 0.5)  # the wall's last row has a mixed normal (its neighbour is ground)
    assert above_crease.sum() > 100 and np.allclose(np.abs(normals[above_crease]), [0, 0, 1], atol=1e-6)
    ground = np.isclose(points[:, 1], 1.6, atol=1e-3) & ~wall
    assert ground.sum() > 100 and np.allclose(np.abs(normals[ground]), [0, 1, 0], atol=1e-6)
    assert np.isfinite(points).all()
    kept, _ = depth_cloud(Record(depth.astype(np.float32), intr), ground=False)
    on_ground = np.isclose(kept[:, 1], 1.6, atol=1e-3) & (kept[:, 2] < 12.0 - 1e-3)
    assert not on_ground.any() and len(kept) >= above_crease.sum()
