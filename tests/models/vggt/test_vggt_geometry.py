"""Known-answer tests for VGGT camera maths (pose encoding, unprojection)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.models.vggt.geometry import (depth_to_camera_points, depth_to_world_points,
                                           extri_intri_to_pose_encoding, invert_extrinsic, mat_to_quat,
                                           pose_encoding_to_extri_intri, quat_to_mat)


def random_rotations(n: int, seed: int) -> np.ndarray:
    rots = Rotation.random(n, random_state=seed).as_matrix()
    # include exact and near 180-degree turns, the hard cases for matrix -> quaternion
    rots[0] = np.diag([1.0, -1.0, -1.0])
    rots[1] = Rotation.from_rotvec([0, 0, math.pi - 1e-7]).as_matrix()
    rots[2] = np.eye(3)
    return rots


def test_quat_to_mat_matches_scipy_scalar_last():
    q = Rotation.random(50, random_state=0).as_quat()  # scipy: (x, y, z, w)
    ours = quat_to_mat(torch.from_numpy(q * 3.0)).numpy()  # non-unit input is normalised
    np.testing.assert_allclose(ours, Rotation.from_quat(q).as_matrix(), atol=1e-12)


def test_mat_to_quat_round_trip_and_sign():
    R = torch.from_numpy(random_rotations(200, 1))
    q = mat_to_quat(R)
    assert torch.all(q[:, 3] >= 0)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(quat_to_mat(q), R, atol=1e-9, rtol=0)


def test_pose_encoding_round_trip():
    S, H, W = 6, 294, 518
    R = torch.from_numpy(random_rotations(S, 2))
    t = torch.randn(S, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    extr = torch.cat((R, t[:, :, None]), dim=-1)[None]  # (1, S, 3, 4)
    K = torch.zeros(1, S, 3, 3, dtype=torch.float64)
    K[..., 0, 0] = torch.linspace(300, 700, S)
    K[..., 1, 1] = torch.linspace(250, 650, S)
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = W / 2, H / 2, 1
    enc = extri_intri_to_pose_encoding(extr, K, (H, W))
    assert enc.shape == (1, S, 9)
    # fov_h = 2 atan(H / 2 / fy) by definition
    torch.testing.assert_close(enc[0, :, 7], 2 * torch.atan(H / 2 / K[0, :, 1, 1]))
    extr2, K2 = pose_encoding_to_extri_intri(enc, (H, W))
    torch.testing.assert_close(extr2, extr, atol=1e-9, rtol=0)
    torch.testing.assert_close(K2, K, atol=1e-7, rtol=1e-9)


def test_invert_extrinsic():
    R = torch.from_numpy(random_rotations(4, 3))
    t = torch.tensor([[1.0, 2, 3], [0, 0, 0], [-1, 5, 2], [0.5, 0.1, -4]], dtype=torch.float64)
    E = torch.cat((R, t[:, :, None]), -1)
    full = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    full[:, :3] = E
    torch.testing.assert_close(invert_extrinsic(E), torch.linalg.inv(full)[:, :3])


def test_unprojection_of_a_tilted_plane():
    """Depth of the plane n . X_cam = c rendered analytically; unprojected points must lie on it and
    reproject to their pixels; world points must satisfy the plane transformed to the world frame."""
    H, W = 30, 40
    K = torch.tensor([[50.0, 0, W / 2], [0, 45.0, H / 2], [0, 0, 1]], dtype=torch.float64)
    n = torch.tensor([0.2, -0.1, 1.0], dtype=torch.float64)
    n = n / n.norm()
    c = 3.0
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)), -1)
    depth = c / (rays @ n)  # z-depth, because rays have z = 1
    cam = depth_to_camera_points(depth, K)
    torch.testing.assert_close(cam @ n, torch.full((H, W), c, dtype=torch.float64))
    proj = cam @ K.T
    torch.testing.assert_close(proj[..., 0] / proj[..., 2], u)
    torch.testing.assert_close(proj[..., 1] / proj[..., 2], v)
    # world frame: camera-from-world [R | t]; plane in world: (R^T n) . X = c - n . t
    R = torch.from_numpy(Rotation.from_euler("xyz", [0.3, -0.2, 0.5]).as_matrix())
    t = torch.tensor([0.4, -1.0, 2.0], dtype=torch.float64)
    E = torch.cat((R, t[:, None]), -1)
    world = depth_to_world_points(depth[None], E[None], K[None])[0]
    torch.testing.assert_close(world @ (R.T @ n), torch.full((H, W), c - float(n @ t), dtype=torch.float64))
    torch.testing.assert_close((world @ R.T + t), cam)


def test_fronto_parallel_plane_at_known_depth():
    K = torch.tensor([[100.0, 0, 8], [0, 100.0, 6], [0, 0, 1]])
    depth = torch.full((1, 12, 16), 2.5)
    pts = depth_to_world_points(depth, torch.eye(3, 4)[None], K[None])[0]
    assert torch.allclose(pts[..., 2], torch.tensor(2.5))
    # pixel (u=0, v=0) is 8 px left and 6 px above the principal point
    torch.testing.assert_close(pts[0, 0], torch.tensor([-8 * 2.5 / 100, -6 * 2.5 / 100, 2.5]))
