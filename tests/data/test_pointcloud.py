"""Depth -> point cloud: geometry, labels, normals and subsampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from pipeline.data.camera import cv_to_world
from pipeline.data.pointcloud import frame_points
from pipeline.data.sampling import farthest_point_sample, random_subsample
from pipeline.io import synthia
from tests.conftest import repo_params

CAMERA = "Stereo_Left/Omni_F"


def test_frame_points_world_ground_and_normals(generated_root):
    layout = synthia.list_sequences(generated_root)[0]
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    params = repo_params("pointcloud", max_points=2000, coordinates="world", far_m=60.0)
    cols = frame_points(layout, CAMERA, 1, intrinsics, (96, 160), params, np.random.default_rng(0))
    assert len(cols["x"]) == 2000 and (cols["depth"] <= 60.0).all()
    ground = np.isin(cols["class_id"], (3, 4, 12))
    assert np.abs(cols["y"][ground]).max() < 0.01  # ground plane y = 0 in the world
    up = np.stack([cols["nx"], cols["ny"], cols["nz"]], axis=1)[ground]
    assert np.median(up[:, 1]) > 0.99  # ground normals point up (towards the camera above it)
    # the stored pixel (u, v) reproduces the stored point through depth and pose
    depth = synthia.read_depth(layout.depth(CAMERA, 1))
    i = 17
    u, v = int(cols["u"][i]), int(cols["v"][i])
    z = depth[v, u]
    p_cv = np.array([(u - intrinsics.cx) * z / intrinsics.focal, (v - intrinsics.cy) * z / intrinsics.focal, z])
    p_world = cv_to_world(p_cv, synthia.read_pose(layout.pose(CAMERA, 1)))
    assert np.allclose([cols["x"][i], cols["y"][i], cols["z"][i]], p_world, atol=1e-4)


def test_camera_coordinates_and_labels(generated_root):
    layout = synthia.list_sequences(generated_root)[0]
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    cols = frame_points(layout, CAMERA, 0, intrinsics, None, repo_params("pointcloud", max_points=500), np.random.default_rng(1))
    assert np.allclose(cols["z"], cols["depth"])  # planar depth is the cv z coordinate
    class_id, instance_id = synthia.read_labels(layout.labels(CAMERA, 0))
    assert np.array_equal(cols["class_id"], class_id[cols["v"], cols["u"]])
    assert np.array_equal(cols["instance_id"], instance_id[cols["v"], cols["u"]])
    assert not np.isin(cols["class_id"], [1]).any()  # sky never becomes a point


def reference_fps(points: np.ndarray, k: int, first: int) -> list[int]:
    """Textbook farthest-point sampling with a full distance matrix."""
    d = cdist(points, points)
    chosen = [first]
    for _ in range(k - 1):
        chosen.append(int(np.argmax(d[:, chosen].min(axis=1))))
    return chosen


def test_fps_matches_reference_when_not_presampled():
    points = np.random.default_rng(0).normal(size=(300, 3))
    rng = np.random.default_rng(5)
    got = farthest_point_sample(points, 20, rng, presample=100)  # 100 * 20 > 300: no pre-sampling
    first = int(np.random.default_rng(5).integers(300))  # same draw as inside (pool = all points)
    assert sorted(got.tolist()) == sorted(reference_fps(points, 20, first))


def test_fps_spreads_better_than_random():
    points = np.random.default_rng(1).normal(size=(2000, 3)) * [10, 1, 10]
    fps = farthest_point_sample(points, 64, np.random.default_rng(0))
    rnd = random_subsample(len(points), 64, np.random.default_rng(0))

    def separation(idx):  # smallest distance between two chosen points
        d = cdist(points[idx], points[idx])
        return d[~np.eye(len(idx), dtype=bool)].min()

    assert separation(fps) > 3 * separation(rnd)


@pytest.mark.parametrize("n, k", [(10, 20), (100, 100), (1000, 10)])
def test_random_subsample_counts(n, k):
    idx = random_subsample(n, k, np.random.default_rng(0))
    assert len(idx) == min(n, k) and len(np.unique(idx)) == len(idx) and (np.diff(idx) > 0).all()


def _depth_with_holes() -> np.ndarray:
    """Raw cm (40, 50): 0 (invalid), 65535 (sky) and 9000 cm (beyond 80 m) in patterned regions; the rest valid."""
    v, u = np.mgrid[0:40, 0:50]
    raw = (500 + 10 * v + u).astype(np.uint16)
    raw[(u + 2 * v) % 7 == 0] = 0
    raw[v < 12] = 65535
    raw[(u > 35) & (v > 30)] = 9000
    return raw


@pytest.mark.parametrize("k", [20, 700, 5000])  # fast path, fallback (too few candidates), fewer valid than k
def test_random_valid_pixels_are_distinct_valid_and_sorted(k):
    from pipeline.data.pointcloud import random_valid_pixels, valid_depth_mask

    raw = _depth_with_holes()
    valid = np.flatnonzero(valid_depth_mask(raw, 80.0))
    got = random_valid_pixels(raw, 80.0, k, np.random.default_rng(3))
    assert len(got) == min(k, len(valid)) and np.all(np.diff(got) > 0) and np.isin(got, valid).all()


def test_random_valid_pixels_are_uniform_over_the_valid_pixels():
    """Every valid pixel is drawn equally often (chi-square over 4000 draws of the candidate path)."""
    from scipy.stats import chisquare

    from pipeline.data.pointcloud import random_valid_pixels, valid_depth_mask

    raw = _depth_with_holes()
    valid = np.flatnonzero(valid_depth_mask(raw, 80.0))
    counts = np.zeros(raw.size)
    for seed in range(4000):
        np.add.at(counts, random_valid_pixels(raw, 80.0, 10, np.random.default_rng(seed)), 1)
    assert counts[np.setdiff1d(np.arange(raw.size), valid)].sum() == 0
    assert chisquare(counts[valid]).pvalue > 1e-3
