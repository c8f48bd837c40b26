"""The motion check of the LAQ tokens: the true warp parameters against scipy, and the check on tokens that follow
the scene (the true motion explains them) or stay fixed to the camera (it does not)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.eval.laq_motion_check import motion_in_tokens, true_warp_parameters
from pipeline.models.laq import LAQ, LAQConfig
from pipeline.models.laq.model import moved_centres
from pipeline.train.laq import FeaturePairs

CONFIG = dict(in_channels=4, dim=32, heads=4, spatial_depth=1, temporal_depth=1, decoder_depth=1, codebook_size=16,
              code_seq_len=4, quant_dim=8, warp=True, warp_sigma_m=1.0, geometry_channels=0)


def test_true_warp_parameters_move_static_points_as_scipy_does():
    """A static point seen from camera t at p lies at R^T (p - t) in camera t + 1 (R, t: camera t + 1's rotation and
    centre in camera t's OpenCV frame); the warp's moved centres must agree on (x, z) for yaw-only motions."""
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-0.6, 0.6, 5)
    translation = rng.uniform(-6, 6, (5, 3))
    motion = np.concatenate([np.stack([np.zeros(5), yaw, np.zeros(5)], 1), translation], 1)
    points = rng.uniform(-20, 20, (5, 7, 3))
    expected = np.stack([Rotation.from_rotvec(motion[i, :3]).as_matrix().T @ (points[i] - translation[i]).T
                         for i in range(5)]).transpose(0, 2, 1)[..., [0, 2]]
    moved = moved_centres(torch.as_tensor(points, dtype=torch.float32),
                          torch.as_tensor(true_warp_parameters(motion), dtype=torch.float32))
    np.testing.assert_allclose(moved.numpy(), expected, atol=1e-4)


def _pairs(follow_scene: bool, forward_m: float = 4.0) -> tuple[FeaturePairs, np.ndarray]:
    """Two frames on a 2 m grid of token centres (x in [-10, 10], z in [2, 40]); frame t's token holds a smooth
    function of its world position; frame t + 1 (the camera ``forward_m`` further along z) holds the same function of
    its centres' world positions (``follow_scene``) or frame t's tokens unchanged (fixed to the camera)."""
    xs, zs = np.meshgrid(np.arange(-10.0, 11.0, 2.0), np.arange(2.0, 41.0, 2.0), indexing="ij")
    centres = np.stack([xs.ravel(), np.full(xs.size, 1.5), zs.ravel()], 1)

    def field(world_z: np.ndarray) -> np.ndarray:
        x = centres[:, 0]
        return np.stack([np.sin(world_z / 3.0), np.cos(world_z / 5.0 + x / 7.0),
                         np.sin(x / 4.0) * np.cos(world_z / 6.0), np.cos(world_z / 4.0)], 1)

    first = field(centres[:, 2])
    second = field(centres[:, 2] + forward_m) if follow_scene else first
    n = len(centres)
    pairs = FeaturePairs(tokens=torch.as_tensor(np.stack([first, second]), dtype=torch.float32),
                         xyz=torch.as_tensor(np.stack([centres, centres]), dtype=torch.float32),
                         mask=torch.ones(2, n, dtype=torch.bool), global_=torch.zeros(2, 4),
                         pairs=torch.tensor([[0, 1]]), sequence=["s"], camera=["c"], frames=np.array([[0, 1]]))
    return pairs, np.array([[0.0, 0.0, 0.0, 0.0, 0.0, forward_m]])


def test_the_true_motion_explains_tokens_that_follow_the_scene_and_not_tokens_fixed_to_the_camera():
    model = LAQ(LAQConfig(**CONFIG)).eval()
    follow, motion = _pairs(follow_scene=True)
    check = motion_in_tokens(model, follow, motion, torch.device("cpu"))
    assert check["error_true_motion"] < 0.5 * check["error_still"]
    assert check["explained"] > 0.5
    assert check["error_true_shift_only"] == check["error_true_motion"]  # no yaw in this motion
    fixed, motion = _pairs(follow_scene=False)
    check = motion_in_tokens(model, fixed, motion, torch.device("cpu"))
    assert check["explained"] < 0


def test_the_decoder_motion_of_an_untrained_warp_is_constant():
    """The zero-initialised motion map reads no motion from any code: no correlation to report."""
    model = LAQ(LAQConfig(**CONFIG)).eval()
    follow, motion = _pairs(follow_scene=True)
    codes = np.random.default_rng(0).normal(size=(1, 4 * 8))
    check = motion_in_tokens(model, follow, motion, torch.device("cpu"), code_vectors=codes)
    assert check["decoder_motion_correlation"] == {"yaw": None, "sideways": None, "forward": None}
