"""LAQ metrics against hand cases and independent references (scipy, sklearn)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import camera
from pipeline.data.camera import look_pose
from pipeline.eval import laq_metrics as lm


def test_relative_motion_forward_and_turn():
    a = look_pose(np.array([1.0, 1.5, 2.0]), yaw=0.3, pitch=0.0)
    # drive 4 m straight ahead: pure +z translation in the OpenCV camera frame, no rotation
    ahead = np.array([1.0 + 4 * np.sin(0.3), 1.5, 2.0 + 4 * np.cos(0.3)])
    np.testing.assert_allclose(camera.synthia_pair_motion(a, look_pose(ahead, 0.3, 0.0)), [0, 0, 0, 0, 0, 4], atol=1e-9)
    # turn right on the spot by 0.2 rad (yaw towards +x): rotation about the camera's y axis (down) by +0.2
    turned = camera.synthia_pair_motion(a, look_pose(np.array([1.0, 1.5, 2.0]), 0.5, 0.0))
    np.testing.assert_allclose(turned, [0, 0.2, 0, 0, 0, 0], atol=1e-9)
    # consistent with mapping points: p_a = R p_b + t for a point seen by camera b
    from scipy.spatial.transform import Rotation

    from pipeline.data.camera import cv_to_world, world_to_cv

    b = look_pose(np.array([3.0, 1.2, 5.0]), yaw=-0.4, pitch=0.1)
    motion = camera.synthia_pair_motion(a, b)
    p_b = np.array([0.5, -0.2, 7.0])
    p_a = world_to_cv(cv_to_world(p_b, b), a)
    np.testing.assert_allclose(Rotation.from_rotvec(motion[:3]).apply(p_b) + motion[3:], p_a, atol=1e-9)


def _closed_form_ridge(x, y, alpha, xt):
    """Reference: W = (XsᵀXs + αI)⁻¹ Xsᵀ(y − ȳ) on z-scored inputs, prediction Xt_s W + ȳ."""
    mu, sd = x.mean(0), x.std(0)
    xs = (x - mu) / sd
    w = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ (y - y.mean(0)))
    return (xt - mu) / sd @ w + y.mean(0)


def test_ridge_matches_closed_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)) * [1, 2, 3, 4, 5], rng.normal(size=(40, 2))
    xt = rng.normal(size=(7, 5))
    got = lm.ridge_predict(lm.ridge_fit(x, y, 3.0), xt)
    np.testing.assert_allclose(got, _closed_form_ridge(x, y, 3.0, xt), atol=1e-10)


def test_r2_matches_definition_and_marks_constant_targets():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    y[:, 2] = 1.0
    r2 = lm.r2_scores(y, p)
    expected = 1 - ((y - p) ** 2).sum(0)[:2] / ((y[:, :2] - y[:, :2].mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2[:2], expected)
    assert np.isnan(r2[2])


def test_probe_recovers_linear_signal_and_shuffled_labels_do_not():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 6))
    x_train, x_eval = rng.normal(size=(120, 8)), rng.normal(size=(60, 8))
    y_train = x_train @ w + 0.05 * rng.normal(size=(120, 6))
    y_eval = x_eval @ w
    groups = np.repeat(["s1", "s2", "s3", "s4"], 30)
    probe = lm.linear_probe(x_train, y_train, groups, x_eval, y_eval)
    assert probe["r2"] > 0.99
    assert probe["r2_shuffled_labels"] < 0.2
    assert max(probe["alpha"].values()) <= 1.0  # clean signal: CV picks a small penalty for every target


def test_choose_alpha_prefers_strong_penalty_for_noise_per_target():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 20))
    y = np.stack([rng.normal(size=80), x[:, 0] * 2.0 + 0.01 * rng.normal(size=80)], 1)  # noise | clean signal
    alphas = lm.choose_alpha(x, y, np.repeat(["a", "b", "c", "d"], 20))
    assert alphas.shape == (2,) and alphas[0] >= 1e2 and alphas[1] <= 1.0


def test_ridge_path_errors_match_a_sklearn_fit_per_alpha():
    """One SVD per fold gives, for every penalty, the test error of the scikit-learn pipeline (with a constant column)."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(60, 7)) * [1, 2, 3, 4, 5, 6, 7], rng.normal(size=(60, 2))
    x[:, 3] = 2.5  # constant input: StandardScaler keeps scale 1
    xt, yt = rng.normal(size=(11, 7)), rng.normal(size=(11, 2))
    alphas = (1e-2, 1.0, 1e2)
    got = lm.ridge_path_errors(x, y, xt, yt, alphas)
    for i, alpha in enumerate(alphas):
        expected = ((lm.ridge_predict(lm.ridge_fit(x, y, alpha), xt) - yt) ** 2).sum(0)
        np.testing.assert_allclose(got[i], expected, rtol=1e-9)


def test_ridge_with_per_target_alpha_equals_separate_fits():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 3))
    xt = rng.normal(size=(9, 6))
    joint = lm.ridge_predict(lm.ridge_fit(x, y, np.array([0.1, 10.0, 0.1])), xt)
    for j, alpha in enumerate((0.1, 10.0, 0.1)):
        np.testing.assert_allclose(joint[:, j], _closed_form_ridge(x, y[:, j:j + 1], alpha, xt)[:, 0], atol=1e-10)


def test_mirror_motion_equals_relative_motion_of_mirrored_poses():
    """Mirror a drive in the world (x → −x); the relative motion in camera a's frame must be mirror_motion's."""
    from scipy.spatial.transform import Rotation

    from pipeline.data.camera import GL_FROM_CV

    rng = np.random.default_rng(5)
    mirror_world = np.diag([-1.0, 1.0, 1.0])
    for _ in range(5):
        poses = []
        for _ in range(2):
            r_cv = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()  # world-from-camera (OpenCV camera axes)
            pose = np.eye(4)
            pose[:3, :3] = r_cv @ GL_FROM_CV.T  # SYNTHIA pose rotation so that pose[:3,:3] @ GL_FROM_CV = r_cv
            pose[:3, 3] = rng.normal(0, 3, 3)
            poses.append(pose)
        motion = camera.synthia_pair_motion(*poses)
        mirrored = []
        for pose in poses:  # mirrored world, mirrored camera (x_cam -> -x_cam): R' = M R M, c' = M c
            r_cv = mirror_world @ (pose[:3, :3] @ GL_FROM_CV) @ mirror_world
            out = np.eye(4)
            out[:3, :3] = r_cv @ GL_FROM_CV.T
            out[:3, 3] = mirror_world @ pose[:3, 3]
            mirrored.append(out)
        np.testing.assert_allclose(camera.synthia_pair_motion(*mirrored), lm.mirror_motion(motion[None])[0], atol=1e-9)


def test_quantile_bins_and_motion_classes():
    train = np.arange(9.0)  # tertile edges at 8/3 and 16/3
    np.testing.assert_array_equal(lm.quantile_bins(train, np.array([0.0, 2.0, 3.0, 5.0, 6.0, 100.0]), 3),
                                  [0, 0, 1, 1, 2, 2])
    motion_train = np.zeros((9, 6))
    motion_train[:, 1] = np.arange(9)
    motion_train[:, 5] = np.arange(9) * 10
    motion_eval = np.zeros((2, 6))
    motion_eval[0, [1, 5]] = [8, 0]  # high yaw, low forward
    motion_eval[1, [1, 5]] = [4, 45]  # mid, mid
    np.testing.assert_array_equal(lm.motion_classes(motion_train, motion_eval, 3), [2 * 3 + 0, 1 * 3 + 1])


def test_nmi_against_sklearn_and_hand_cases():
    from sklearn.metrics import normalized_mutual_info_score

    codes = lm.tuple_ids(np.array([[1, 2], [1, 2], [3, 4], [3, 4], [5, 5], [5, 5]]))
    classes = np.array([0, 0, 1, 1, 2, 2])
    assert lm.mutual_information(codes, classes)["nmi"] == pytest.approx(1.0)
    assert lm.mutual_information(np.zeros(6, int), classes)["nmi"] == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 50), rng.integers(0, 3, 50)
    assert lm.mutual_information(a, b)["nmi"] == pytest.approx(normalized_mutual_info_score(b, a))


def test_tuple_ids_and_derangement():
    ids = lm.tuple_ids(np.array([[0, 1], [1, 0], [0, 1]]))
    assert ids[0] == ids[2] != ids[1]
    perm = lm.derangement(10, np.random.default_rng(0))
    assert sorted(perm) == list(range(10)) and not np.any(perm == np.arange(10))


def test_usage_stats_hand_computed():
    idx = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 2], [0, 0, 0, 0]])
    stats = lm.usage_stats(idx, 8)
    assert stats["perplexity_per_position"][0] == pytest.approx(1.0)
    p = np.array([0.75, 0.25])
    assert stats["perplexity_per_position"][1] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    p = np.array([0.5, 0.25, 0.25])  # tuples: (0,1,2,3) x2, (0,1,2,2), (0,0,0,0)
    assert stats["perplexity_joint"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert stats["active_codes"] == 4 and stats["distinct_tuples"] == 3
    assert stats["positions_identical_fraction"] == pytest.approx(0.25)


def test_usage_figure_written(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "fig" / "usage.png"
    lm.usage_figure({"train": rng.integers(0, 16, (30, 4)), "held_out": rng.integers(0, 16, (10, 4))}, 16, path)
    assert path.is_file() and path.stat().st_size > 1000
