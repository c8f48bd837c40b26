"""VGGT metrics against hand-computable cases, scipy rotations and known SYNTHIA camera motions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.data import camera
from pipeline.data.camera import heading_vector, look_pose, right_vector, world_to_cv
from pipeline.eval import vggt_metrics as vm
from pipeline.models.vggt.preprocess import preprocess_frames

# --------------------------------------------------------------------------- depth


def test_scaled_copy_has_zero_abs_rel_after_median_scaling():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 60.0, (20, 30)).astype(np.float32)
    gt[0, :5] = np.nan  # sky
    gt[1, :5] = 0.0  # invalid
    gt[2, :5] = 95.0  # beyond the cap
    pred = gt / 7.5
    pred[2, :5] = -1.0  # would be invalid anyway
    e = vm.depth_errors(pred, gt, max_depth=80.0)
    assert e["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert e["delta1"] == 1.0
    assert e["scale"] == pytest.approx(7.5, rel=1e-6)
    assert e["valid_pixels"] == 20 * 30 - 15


def test_known_perturbation_delta_and_abs_rel():
    """Constant GT 2 m; 60 % of the prediction is exact, 40 % is 1.5x too far: median scale 1, delta1 0.6,
    AbsRel 0.4 * 0.5 = 0.2. A global factor on the prediction changes nothing."""
    gt = np.full((10, 10), 2.0)
    pred = gt.copy()
    pred.flat[:40] = 3.0
    for factor in (1.0, 0.01, 40.0):
        e = vm.depth_errors(pred * factor, gt)
        assert e["scale"] == pytest.approx(1.0 / factor)
        assert e["delta1"] == pytest.approx(0.6)
        assert e["abs_rel"] == pytest.approx(0.2)


def test_delta_threshold_is_symmetric_in_the_ratio():
    """Pixels 1.3x too near or too far both fail delta < 1.25; 1.2x passes."""
    gt = np.full(9, 10.0)
    pred = np.array([10, 10, 10, 10, 10, 13, 10 / 1.3, 12, 10 / 1.2])
    e = vm.depth_errors(pred[None], gt[None])
    assert e["scale"] == 1.0
    assert e["delta1"] == pytest.approx(7 / 9)
    assert e["abs_rel"] == pytest.approx((0.3 + (1 - 1 / 1.3) + 0.2 + (1 - 1 / 1.2)) / 9)


def test_no_valid_pixel_gives_nan_and_shape_mismatch_is_an_error():
    e = vm.depth_errors(np.ones((2, 2)), np.full((2, 2), np.nan))
    assert math.isnan(e["abs_rel"]) and e["valid_pixels"] == 0
    with pytest.raises(ValueError, match="one pixel grid"):
        vm.depth_errors(np.ones((2, 2)), np.ones((2, 3)))


# --------------------------------------------------------------------------- cameras


def test_rotation_error_matches_scipy():
    Ra = Rotation.random(50, random_state=1)
    Rb = Rotation.random(50, random_state=2)
    expected = np.degrees((Ra.inv() * Rb).magnitude())
    np.testing.assert_allclose(vm.rotation_error_deg(Ra.as_matrix(), Rb.as_matrix()), expected, atol=1e-6)
    R = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    assert vm.rotation_error_deg(np.eye(3), R) == pytest.approx(30.0)


def test_translation_direction_error_of_known_vectors():
    a = np.array([[1, 0, 0], [0, 0, 1], [1, 2, 3], [0, 0, 0]], dtype=float)
    b = np.array([[1, 1, 0], [0, 0, -2], [2, 4, 6], [1, 0, 0]], dtype=float)
    err = vm.translation_direction_error_deg(a, b)
    np.testing.assert_allclose(err[:3], [45.0, 180.0, 0.0], atol=1e-6)
    assert math.isnan(err[3])  # no direction for a zero translation


def random_extrinsics(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = rng.normal(size=(n, 3))
    return np.concatenate([R, t[..., None]], axis=-1)


def test_pose_errors_are_invariant_to_a_similarity_of_the_world():
    """VGGT cameras are defined up to a similarity (world frame and scale): errors must ignore it."""
    E = random_extrinsics(6, 3)
    Q = Rotation.random(random_state=4).as_matrix()
    s, b = 3.7, np.array([1.0, -2.0, 0.5])
    # world X' = s Q X + b; camera coordinates scale by s: x' = R Q^T X' + (s t - R Q^T b)
    R2 = E[:, :, :3] @ Q.T
    E2 = np.concatenate([R2, (s * E[:, :, 3] - R2 @ b)[..., None]], axis=-1)
    errors = vm.pose_errors(E2, E)
    np.testing.assert_allclose(errors["rotation_deg"], 0.0, atol=1e-5)
    np.testing.assert_allclose(errors["translation_dir_deg"], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="3, 4"):
        vm.pose_errors(E2[:, :, :3], E[:, :, :3])


def test_pose_errors_see_a_wrong_relative_rotation():
    E = random_extrinsics(2, 5)
    wrong = E.copy()
    extra = Rotation.from_euler("z", 12, degrees=True).as_matrix()
    wrong[1] = extra @ E[1]  # second camera rotated by 12 degrees about its own optical axis
    errors = vm.pose_errors(wrong, E)
    assert errors["rotation_deg"][0] == pytest.approx(12.0, abs=1e-6)


def test_synthia_extrinsic_maps_world_points_like_world_to_cv():
    pose = look_pose(np.array([3.0, 1.5, -2.0]), yaw=0.7, pitch=-0.1)
    E = camera.extrinsic_from_synthia_pose(pose)
    X = np.random.default_rng(0).normal(size=(10, 3)) * 5
    np.testing.assert_allclose(X @ E[:, :3].T + E[:, 3], world_to_cv(X, pose), atol=1e-9)
    assert np.linalg.det(E[:, :3]) == pytest.approx(-1.0)  # left-handed SYNTHIA world


@pytest.mark.parametrize("yaw", [0.0, 1.1, -2.5])
def test_synthia_relative_motion_of_known_camera_moves(yaw):
    """Moving forward gives +z, moving right gives +x in the first camera's OpenCV axes; turning right by
    10 degrees is a 10 degree rotation about the camera's y (down) axis."""
    p0 = np.array([5.0, 1.6, 2.0])
    poses = [look_pose(p0, yaw, 0.0), look_pose(p0 + 2.0 * heading_vector(yaw), yaw, 0.0),
             look_pose(p0 + 2.0 * heading_vector(yaw) + 0.5 * right_vector(yaw), yaw + math.radians(10), 0.0)]
    E = np.stack([camera.extrinsic_from_synthia_pose(p) for p in poses])
    R, t = camera.extrinsic_motions(E)
    np.testing.assert_allclose(t[0], [0.0, 0.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(t[1], [0.5, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(R[0], np.eye(3), atol=1e-9)
    # a right turn: a point straight ahead of camera 2 lies to the right (+x) of camera 1
    np.testing.assert_allclose(R[1] @ [0, 0, 1], [math.sin(math.radians(10)), 0, math.cos(math.radians(10))],
                               atol=1e-9)
    assert np.linalg.det(R[1]) == pytest.approx(1.0)
    # the same motion expressed by a right-handed (proper) camera chain gives zero error
    proper = np.stack([np.eye(3, 4), np.eye(3, 4), np.eye(3, 4)])
    proper[1, :, 3] = [0, 0, -2.0]
    R_turn = Rotation.from_euler("y", 10, degrees=True).as_matrix()  # world-from-camera 2 (cv axes)
    c2 = np.array([0.5, 0.0, 2.0])
    proper[2] = np.concatenate([R_turn.T, (-R_turn.T @ c2)[:, None]], axis=1)
    errors = vm.pose_errors(proper, E)
    np.testing.assert_allclose(errors["rotation_deg"], 0.0, atol=1e-6)
    np.testing.assert_allclose(errors["translation_dir_deg"], 0.0, atol=1e-5)


# --------------------------------------------------------------------------- pixel grids


@pytest.mark.parametrize("hw,mode,target", [((96, 160), "crop", 70), ((160, 96), "crop", 70), ((96, 160), "pad", 70)])
def test_ground_truth_resampling_follows_the_real_preprocessing(hw, mode, target):
    """A bright square in the image and a mask of it as 'ground truth': after the real pre-processing the
    resampled mask must cover the square's pixels in the model input."""
    H, W = hw
    img = np.zeros((H, W, 3), dtype=np.uint8)
    y0, x0 = int(H * 0.6), int(W * 0.3)
    img[y0 - 12:y0 + 12, x0 - 12:x0 + 12] = 255
    mask = (img[..., 0] > 0).astype(np.float32)
    x, rec = preprocess_frames([img], mode=mode, target=target)
    model = x[0, 0].numpy()
    gt = vm.resample_to_model_grid(mask, rec.model_hw, rec.scale_xy[0], rec.offset_xy[0])
    inside = np.isfinite(gt)
    if mode == "pad":  # padding is white in the model input and has no ground truth
        rh, rw = rec.resized_hw[0]
        assert inside.sum() == rh * rw
        assert np.all(model[~inside] == 1.0)
    else:
        assert inside.all()
    bright = (model > 0.5) & inside
    overlap = (bright & (gt == 1)).sum() / (bright | (gt == 1)).sum()
    assert overlap > 0.8, overlap


def test_model_to_original_pixels_of_a_plain_downscale():
    """Halving 8x4 -> 4x2: model pixel (u, v) has its centre on the corner between original pixels
    2u..2u+1; the floor convention picks 2u + 1."""
    u, v, inside = vm.model_to_original_pixels((2, 4), (4, 8), np.array([0.5, 0.5]), np.array([0.0, 0.0]))
    assert inside.all()
    np.testing.assert_array_equal(u[0], [1, 3, 5, 7])
    np.testing.assert_array_equal(v[:, 0], [1, 3])


def test_summarise_ignores_nan():
    assert vm.summarise([1.0, np.nan, 3.0, 2.0]) == {"mean": 2.0, "median": 2.0, "count": 3}
    assert vm.summarise([np.nan]) == {"mean": None, "median": None, "count": 0}
