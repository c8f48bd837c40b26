"""Motion priors against analytic trajectories, geodesic smoothness against scipy, time embedding."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.models.video.priors import (motion_loss, prototype_change, rotation_smoothness, scale_smoothness,
                                          third_difference_m, third_divided_difference)
from pipeline.models.video.time_embedding import TimeEmbedding, sinusoidal_time

UNEVEN = torch.tensor([0.0, 0.13, 0.5, 0.55, 1.3, 2.0, 2.07], dtype=torch.float64)


def test_third_difference_of_parabola_with_uneven_steps_is_zero():
    a, b, c = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 0.2, -1.0]), torch.tensor([-4.9, 0.7, 2.0])
    x = (a + b * UNEVEN[:, None] + c * UNEVEN[:, None] ** 2).double()
    assert torch.allclose(third_divided_difference(x, UNEVEN), torch.zeros(4, 3, dtype=torch.float64), atol=1e-9)
    assert motion_loss(x[None, :, None].float(), UNEVEN[None].float()) < 1e-3  # robust loss ~ 0 (float32)


def test_third_difference_of_a_jerk_is_its_third_derivative():
    jerk = 2.4  # x = jerk * t^3 / 6 has x''' = jerk, so f[t0..t3] = jerk / 6 for any spacing
    x = (jerk * UNEVEN**3 / 6)[:, None]
    assert torch.allclose(third_divided_difference(x, UNEVEN), torch.full((4, 1), jerk / 6, dtype=torch.float64))
    assert motion_loss(x[None, :, None].float(), UNEVEN[None].float()) > 0.01


def test_even_steps_give_the_classic_third_difference():
    t = torch.arange(6, dtype=torch.float64) * 0.2
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    classic = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    assert torch.allclose(third_difference_m(x, t), classic, atol=1e-9)


def test_rotation_smoothness_is_the_geodesic_angle_not_euler_difference():
    # yaw crossing +-pi: raw Euler differences are ~2 pi, the true rotation change is 0.1 rad per frame
    yaw = np.array([np.pi - 0.15, np.pi - 0.05, -np.pi + 0.05, -np.pi + 0.15])
    rot = Rotation.from_euler("YXZ", np.column_stack([yaw, np.full(4, 0.2), np.zeros(4)]))
    mats = torch.tensor(rot.as_matrix(), dtype=torch.float64)[None, :, None]  # (B=1, T=4, K=1, 3, 3)
    expected = np.array([(rot[i].inv() * rot[i + 1]).magnitude() for i in range(3)])
    assert np.allclose(expected, 0.1, atol=1e-6)
    value = rotation_smoothness(mats, eps_rad=0.0)
    assert abs(float(value) - expected.mean()) < 1e-6


def test_scale_and_prototype_terms_vanish_for_constant_slots_only():
    scale = torch.full((1, 4, 2), 1.5)
    weights = torch.softmax(torch.randn(1, 1, 2, 3), -1).expand(1, 4, 2, 3)
    assert scale_smoothness(scale) == 0 and prototype_change(weights) == 0
    grown = scale * torch.tensor([1.0, 1.0, 2.0, 2.0]).view(1, 4, 1)
    assert abs(float(scale_smoothness(grown, eps=0.0)) - np.log(2) / 3) < 1e-6


def test_time_embedding_handles_fractional_and_reversed_gaps():
    dt = torch.tensor([0.0, 0.37, 1.0, -0.37, 2.5, -2.5])
    feats = sinusoidal_time(dt, 4)
    n = 4
    assert torch.allclose(feats[3, :n], -feats[1, :n]) and torch.allclose(feats[3, n:2 * n], feats[1, n:2 * n])
    assert torch.allclose(feats[3, -1], -feats[1, -1])  # the raw gap keeps the sign
    assert not torch.allclose(feats[1], feats[3]) and not torch.allclose(feats[4], feats[5])
    assert torch.allclose(feats[0], torch.cat([torch.zeros(n), torch.ones(n), torch.zeros(1)]))
    emb = TimeEmbedding(4, 16)
    out = emb(dt)
    assert out.shape == (6, 16) and torch.isfinite(out).all()
    # continuous in time: a small change of the gap gives a small change of the embedding
    assert (emb(torch.tensor([0.37001])) - emb(torch.tensor([0.37]))).abs().max() < 1e-3
