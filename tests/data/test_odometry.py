"""Depth-map clouds for odometry: back-projection and normals of an analytic plane."""

from __future__ import annotations

import numpy as np

from pipeline.data.odometry import depth_cloud
from pipeline.io.synthia import Intrinsics


class Record:  # the fields depth_cloud and depth_odometry read
    def __init__(self, depth: np.ndarray, intrinsics: Intrinsics, frame: int = 0):
        self.depth, self.intrinsics, self.frame = depth, intrinsics, frame


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


def box_street_depth(intr: Intrinsics, shape: tuple[int, int], r_wc: np.ndarray, t_wc: np.ndarray) -> np.ndarray:
    """Ray-cast depth (z along the optical axis, m; inf = nothing hit) of a street seen from ``world_from_camera``:
    the ground (world y = 1.6, OpenCV y down), facades at x = ±7 and three parked boxes; every surface an
    axis-aligned box, hit by the slab method."""
    boxes = [((-50, 1.6, -50), (50, 3.0, 150)), ((-9, -8, -50), (-7, 1.6, 150)), ((7, -8, -50), (9, 1.6, 150)),
             ((-5.5, 0.0, 12), (-3.5, 1.6, 16.5)), ((3.0, -0.2, 20), (5.0, 1.6, 24)), ((-4.5, 0.4, 28), (-2.5, 1.6, 31))]
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    rays = np.stack([(u - intr.cx) / intr.focal, (v - intr.cy) / intr.focal, np.ones_like(u)], -1)  # z = 1
    d = rays @ r_wc.T
    best = np.full(shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo, hi in boxes:
            t1, t2 = (np.array(lo) - t_wc) / d, (np.array(hi) - t_wc) / d
            near, far = np.nanmax(np.minimum(t1, t2), -1), np.nanmin(np.maximum(t1, t2), -1)
            hit = (near <= far) & (near > 0)
            best = np.where(hit & (near < best), near, best)
    return best  # the ray's parameter is the depth because rays have z = 1 in the camera frame


def turning_drive() -> tuple[list[Record], np.ndarray, np.ndarray]:
    """Three depth frames (96 x 160) of a camera moving 0.9 m per frame down the box street while turning 2° then
    3°, with their ``world_from_camera`` rotations (3, 3, 3) and positions (3, 3)."""
    from scipy.spatial.transform import Rotation

    intr = Intrinsics(focal=66.6, cx=79.5, cy=47.5, baseline=0.8)
    yaws, positions = np.radians([0.0, 2.0, 5.0]), np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.9], [0.25, 0.0, 1.8]])
    r_wc = Rotation.from_euler("y", yaws[:, None]).as_matrix()
    records = [Record(box_street_depth(intr, (96, 160), r, t).astype(np.float32), intr, i)
               for i, (r, t) in enumerate(zip(r_wc, positions, strict=True))]
    return records, r_wc, positions


def test_depth_odometry_follows_the_turning_drive_without_any_pose():
    from scipy.spatial.transform import Rotation

    from pipeline.data.odometry import depth_odometry

    records, r_wc, positions = turning_drive()
    r, t = depth_odometry(records)
    angle = np.degrees(Rotation.from_matrix(np.einsum("tji,tjk->tik", r, r_wc)).magnitude())
    assert (angle < 0.3).all(), angle
    assert (np.linalg.norm(t - positions, axis=1) < 0.1).all(), t - positions


def test_refinement_corrects_a_head_that_is_degrees_and_decimetres_off():
    """Three frames of a car driving and turning down a street; the 'head' is 3° and 0.3 m off, then misses the
    turn by 7°. The ICP refinement (the head as the prior) recovers the true relative poses to a fraction of that."""
    from scipy.spatial.transform import Rotation

    from pipeline.data.odometry import refine_relative_poses

    records, r_wc, positions = turning_drive()
    r_true = np.einsum("tji,tjk->tik", r_wc[:-1], r_wc[1:])  # prev_from_cur
    t_true = np.einsum("tji,tj->ti", r_wc[:-1], positions[1:] - positions[:-1])
    off = Rotation.from_euler("y", [[3.0], [-7.0]], degrees=True).as_matrix()
    r_head, t_head = off @ r_true, t_true + np.array([[0.3, 0.0, -0.2], [-0.2, 0.1, 0.3]])
    r, t = refine_relative_poses(records, r_head, t_head, rotation_sigma_deg=1.0, translation_sigma_m=0.2)
    angle = np.degrees(Rotation.from_matrix(np.einsum("tji,tjk->tik", r, r_true)).magnitude())
    assert (angle < 0.3).all(), angle
    assert (np.linalg.norm(t - t_true, axis=1) < 0.1).all(), t - t_true
