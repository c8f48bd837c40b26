"""Euler → matrix against scipy (intrinsic, uppercase), and the geodesic angle."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.geometry.rotations import euler_to_matrix, geodesic_angle


@pytest.mark.parametrize("conv", ["ZYX", "XYZ", "YZX", "ZXZ", "XYX"])
def test_euler_matches_scipy_intrinsic(conv):
    rng = np.random.default_rng(0)
    ang = rng.uniform(-np.pi, np.pi, size=(64, 3))
    ours = euler_to_matrix(torch.from_numpy(ang), conv).numpy()
    ref = Rotation.from_euler(conv, ang).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_zyx_is_yaw_pitch_roll_product_and_shapes():
    yaw, pitch, roll = 0.3, -0.7, 1.1
    r = euler_to_matrix(torch.tensor([yaw, pitch, roll], dtype=torch.float64), "ZYX")
    rz = euler_to_matrix(torch.tensor([yaw, 0.0, 0.0], dtype=torch.float64), "ZYX")
    ry = euler_to_matrix(torch.tensor([0.0, pitch, 0.0], dtype=torch.float64), "ZYX")
    rx = euler_to_matrix(torch.tensor([0.0, 0.0, roll], dtype=torch.float64), "ZYX")
    torch.testing.assert_close(r, rz @ ry @ rx)
    # Yaw alone rotates +x towards +y (right-handed about z).
    torch.testing.assert_close(
        euler_to_matrix(torch.tensor([torch.pi / 2, 0, 0], dtype=torch.float64)) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
    )
    batch = euler_to_matrix(torch.zeros(2, 5, 3))
    assert batch.shape == (2, 5, 3, 3)
    with pytest.raises(ValueError):
        euler_to_matrix(torch.zeros(3), "ZZX")
    with pytest.raises(ValueError):
        euler_to_matrix(torch.zeros(4))


def test_geodesic_angle_matches_scipy_including_near_0_and_pi():
    rng = np.random.default_rng(1)
    r1 = Rotation.random(200, random_state=2)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, 150), np.full(25, 1e-7), np.pi - np.logspace(-9, -3, 25)])
    r2 = r1 * Rotation.from_rotvec(axes * angles[:, None])
    got = geodesic_angle(torch.from_numpy(r1.as_matrix()), torch.from_numpy(r2.as_matrix())).numpy()
    np.testing.assert_allclose(got, angles, atol=1e-9, rtol=0)


def test_geodesic_angle_gradients_finite_at_identity_and_pi():
    r = torch.from_numpy(Rotation.random(1, random_state=3).as_matrix())
    for ang in (0.0, np.pi, 0.5):
        a = torch.tensor([ang, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
        theta = geodesic_angle(r, r @ euler_to_matrix(a, "XYZ"))
        theta.sum().backward()
        assert torch.isfinite(a.grad).all()
        if ang == 0.5:  # smooth region: d angle / d (rotation about one axis) = 1
            torch.testing.assert_close(a.grad[0], torch.tensor(1.0, dtype=torch.float64))
