"""Point-to-plane ICP recovers a known rigid motion of a structured scene, despite a moving object."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.geometry.icp import PosePrior, inlier_fraction, point_to_plane_icp, prior_normal_equations


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


def test_prior_fills_the_direction_a_corridor_leaves_free_and_geometry_corrects_the_rest():
    """Walls and ground only: sliding along the street (z) is unobservable, so plain ICP keeps its start's z;
    with a prior (a camera head's guess: wrong yaw, slightly wrong z), z follows the prior and yaw the walls."""
    rng = np.random.default_rng(1)
    target, normals = corridor(rng)
    street = target[:, 2] < 29.0  # drop the far wall and the boxes' fronts: nothing faces the optical axis
    street &= np.abs(normals[:, 2]) < 0.5
    target, normals = target[street], normals[street]
    r_true = Rotation.from_rotvec([0.0, 0.05, 0.0]).as_matrix()
    t_true = np.array([0.1, 0.0, 1.2])
    source = ((target - t_true) @ r_true)[rng.permutation(int(street.sum()))[:3000]]
    keep = source[:, 2] < 27.0  # the moved camera sees less far away
    source = source[keep]
    r_guess = Rotation.from_rotvec([0.0, 0.05 + np.radians(3.0), 0.0]).as_matrix()  # 3° off
    t_guess = np.array([0.1, 0.0, 1.3])  # 10 cm off along the street
    plain_r, plain_t, _ = point_to_plane_icp(source, target, normals, iterations=50)
    assert abs(plain_t[2] - t_true[2]) > 0.5  # from the identity, z is not recovered
    prior = PosePrior(r_guess, t_guess, rotation_sigma_rad=np.radians(2.0), translation_sigma_m=0.3)
    r, t, _ = point_to_plane_icp(source, target, normals, iterations=50, prior=prior)
    assert np.degrees(Rotation.from_matrix(r.T @ r_true).magnitude()) < 0.2  # yaw from the walls
    assert abs(t[0] - t_true[0]) < 0.02  # sideways from the walls
    assert abs(t[2] - t_guess[2]) < 0.03  # along the street: the prior's value


def test_prior_normal_equations_match_finite_differences():
    """The prior's gradient is that of 0.5 * |residual|² under the ICP's update R' = exp(ω) R, t' = exp(ω) t + δ."""
    prior = PosePrior(Rotation.from_rotvec([0.1, -0.2, 0.05]).as_matrix(), np.array([0.3, -0.1, 1.0]), 0.05, 0.4)
    r, t = Rotation.from_rotvec([0.12, -0.18, 0.02]).as_matrix(), np.array([0.5, 0.0, 0.8])

    def cost(x):
        r2 = Rotation.from_rotvec(x[:3]).as_matrix() @ r
        t2 = Rotation.from_rotvec(x[:3]).as_matrix() @ t + x[3:]
        e = np.concatenate([Rotation.from_matrix(r2 @ prior.rotation.T).as_rotvec() / prior.rotation_sigma_rad,
                            (t2 - prior.translation) / prior.translation_sigma_m])
        return 0.5 * e @ e

    _, grad = prior_normal_equations(prior, r, t)
    numeric = np.array([(cost(h) - cost(-h)) / 2e-6 for h in np.eye(6) * 1e-6])
    assert np.allclose(grad, numeric, rtol=2e-2, atol=1e-3 * np.abs(numeric).max())
