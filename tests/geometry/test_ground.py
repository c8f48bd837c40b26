"""The scale normaliser (pipeline/geometry/ground.py) on ground-truth clouds of the generated sample.

Independent references: the generator's camera height (pose files: world y of the camera, ground at y = 0)
and a known scale factor applied to the metric clouds.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.camera import backproject
from pipeline.geometry.ground import MEDIAN_DEPTH_PER_HEIGHT, fit_ground_plane, height_above_ground, sequence_scale
from pipeline.io import synthia

SEQ = "SYNTHIA-SEQS-01-GENERATED"


def gt_clouds(root, camera: str) -> tuple[list[np.ndarray], float]:
    """Metric clouds (OpenCV camera axes) of every frame, and the camera height from the pose files."""
    layout = synthia.SequenceLayout(root / SEQ)
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    clouds, heights = [], []
    for frame in layout.frames(camera):
        depth = synthia.read_depth(layout.depth(camera, frame))
        clouds.append(backproject(depth, intrinsics)[np.isfinite(depth) & (depth < 80)])
        heights.append(synthia.read_pose(layout.pose(camera, frame))[1, 3])
    return clouds, float(np.median(heights))


@pytest.mark.parametrize("camera", ["Stereo_Left/Omni_F", "Stereo_Right/Omni_L"])
def test_fitted_camera_height_matches_the_pose_files(generated_root, camera):
    clouds, height = gt_clouds(generated_root, camera)
    for cloud in clouds:
        normal, fitted, inliers = fit_ground_plane(cloud)
        assert fitted == pytest.approx(height, rel=0.01)
        assert normal[1] > 0.99 and inliers > 0.2  # ground normal along the camera's down axis (level camera)


@pytest.mark.parametrize("s", [0.013, 3.7, 250.0])
def test_normaliser_recovers_clouds_scaled_by_a_known_factor(generated_root, s):
    clouds, height = gt_clouds(generated_root, "Stereo_Left/Omni_F")
    record = sequence_scale([c * s for c in clouds], reference_height_m=height)
    assert record["method"] == "ground_height" and record["frames_with_ground"] == len(clouds)
    assert record["factor"] * s == pytest.approx(1.0, rel=0.01)
    recovered = clouds[0] * s * record["factor"]
    assert np.abs(recovered - clouds[0]).max() <= 0.01 * np.abs(clouds[0]).max()
    # exactly scale-equivariant: the factor of the unscaled clouds is s times larger
    assert sequence_scale(clouds, height)["factor"] == pytest.approx(record["factor"] * s, rel=1e-9)


def test_without_ground_the_median_depth_is_the_fallback():
    rng = np.random.default_rng(0)
    wall = np.column_stack([rng.uniform(-5, 5, 500), rng.uniform(-3, 3, 500), np.full(500, 8.0)])  # facing the camera
    assert fit_ground_plane(wall) is None
    record = sequence_scale([wall, wall * 1.0], reference_height_m=2.0)
    assert record["method"] == "median_depth" and record["camera_height"] is None
    assert record["factor"] == pytest.approx(2.0 * MEDIAN_DEPTH_PER_HEIGHT / 8.0)
    with pytest.raises(ValueError, match="no point in front of the camera"):
        sequence_scale([wall * -1.0], reference_height_m=2.0)


def test_height_above_a_tilted_ground_plane_is_the_analytic_distance():
    """A camera 1.7 m above a road pitched down by 8 degrees (rotation about x, scipy): road points get height 0,
    points placed a known distance along the up normal get that distance; a wall alone has no plane."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(1)
    road_world = np.column_stack([rng.uniform(-10, 10, 600), np.full(600, 1.7), rng.uniform(2, 40, 600)])  # y down
    lifted = np.column_stack([rng.uniform(-10, 10, 200), np.zeros(200), rng.uniform(2, 40, 200)])
    lift = rng.uniform(0.5, 5.0, 200)
    lifted[:, 1] = 1.7 - lift                                     # lift metres above the road (y is down)
    camera_from_world = Rotation.from_euler("X", 8, degrees=True).as_matrix()
    points = np.concatenate([road_world, lifted]) @ camera_from_world.T
    height = height_above_ground(points)
    np.testing.assert_allclose(height[:600], 0.0, atol=1e-9)
    np.testing.assert_allclose(height[600:], lift, atol=1e-9)
    wall = np.column_stack([rng.uniform(-5, 5, 500), rng.uniform(-3, 3, 500), np.full(500, 8.0)])
    assert height_above_ground(wall) is None
