"""Point-to-plane ICP recovers a known rigid motion of a structured scene, despite a moving object."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.geometry.icp import inlier_fraction, point_to_plane_icp


def corridor(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ground, two side walls, a far wall and a few boxes (points, unit normals), OpenCV axes."""
    parts, normals = [], []

    def plane(origin, u, v, n, count):
        a, b = rng.random((count, 1)), rng.random((count, 1))
        parts.append(origin + a * u + b * v)
        normals.append(np.tile(n, (count, 1)))

    plane(np.array([-6.0, 1.5, 0.0]), np.array([12.0, 0, 0]), np.array([0, 0, 30.0]), [0, -1.0, 0], 3000)  # ground
    plane(np.array([-6.0, -4.0, 0.0]), np.array([0, 5.5, 0]), np.array([0, 0, 30.0]), [1.0, 0, 0], 1500)  # left
    plane(np.array([6.0, -4.0, 0.0]), np.array([0, 5.5, 0]), np.array([0, 0, 30.0]), [-1.0, 0, 0], 1500)  # right
    plane(np.array([-6.0, -4.0, 30.0]), np.array([12.0, 0, 0]), np.array([0, 5.5, 0]), [0, 0, -1.0], 1500)  # far
    for x, z in ((-4.0, 8.0), (3.0, 14.0), (-2.0, 21.0)):  # boxes' front faces
        plane(np.array([x, -0.5, z]), np.array([1.5, 0, 0]), np.array([0, 2.0, 0]), [0, 0, -1.0], 300)
    return np.concatenate(parts), np.concatenate(normals).astype(float)


def test_icp_recovers_a_rigid_motion_with_a_moving_object():
    rng = np.random.default_rng(0)
    target, normals = corridor(rng)
    r_true = Rotation.from_rotvec([0.0, 0.06, 0.01]).as_matrix()  # ~3.5° yaw
    t_true = np.array([0.2, 0.05, 1.3])  # target_from_source
    source = (target - t_true) @ r_true  # the same scene seen from the moved camera
    source = source[rng.permutation(len(source))[:4000]]
    mover = rng.random((600, 3)) * [2, 2, 2] + [0, -1, 10]  # a car in the source frame only
    r, t, rms = point_to_plane_icp(np.concatenate([source, mover]), target, normals, iterations=50)
    assert np.degrees(Rotation.from_matrix(r.T @ r_true).magnitude()) < 0.1
    assert np.linalg.norm(t - t_true) < 0.02 and rms < 0.01
    assert inlier_fraction(source, target, r, t) > inlier_fraction(source, target, np.eye(3), np.zeros(3))
