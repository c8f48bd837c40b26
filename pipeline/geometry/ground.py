"""The scale normaliser of point clouds in arbitrary units (VGGT): camera height above the ground plane.

VGGT's depth has one arbitrary scale per sequence. To give ``concerto.grid_size`` and the bird's-eye extent
the same meaning as for metric clouds, a sequence's points are multiplied by

    factor = reference_height_m / median over frames of (camera height above the fitted ground plane),

so a camera mounted ``reference_height_m`` above the road gets metric points. Why the ground plane and not a
depth statistic: the camera height of a vehicle rig is a constant of the rig, while the median depth of a
frame depends on what is in view (a car right ahead halves it). Where no frame of a sequence shows a ground
plane (indoor close-ups, random-weight depth), the fallback is the median depth, mapped to metres by
:data:`MEDIAN_DEPTH_PER_HEIGHT` (median depth / camera height measured on the synthetic street scenes), and
the method says so.

Every step is scale-equivariant (the RANSAC samples depend on a seed, not on the values; thresholds are
relative), so scaling a cloud by s divides the factor by s exactly: the normaliser undoes an unknown scale.
Points are (N, 3) in OpenCV camera axes (x right, y down, z forward); the ground lies below the camera (y > 0).

The same plane fit gives each point's height above the ground (:func:`height_above_ground`), which the bird's-eye
tokens of the ``concerto`` stage use to leave the road out (``concerto.bev_ground``).
"""

from __future__ import annotations

import numpy as np

MEDIAN_DEPTH_PER_HEIGHT = 4.4  # median planar depth / camera height, measured on synthetic street frames (4.1-4.7)
MAX_TILT_DEG = 30.0            # ground normal within this angle of the camera's down axis
RELATIVE_TOLERANCE = 0.05      # inlier distance, as a fraction of the median height (y) of the points below the camera
MIN_INLIER_FRACTION = 0.1      # of all points of the frame
ITERATIONS = 128


def fit_ground_plane(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float, float] | None:
    """RANSAC plane through the points below the camera whose normal is near the camera's down axis.

    ``points`` (N, 3), OpenCV camera axes. Returns (unit normal (3,) with n_y > 0, camera height = distance of
    the camera centre from the plane, in the points' units, inlier fraction of all N points), refined by least
    squares on the inliers; None when fewer than :data:`MIN_INLIER_FRACTION` of the points lie on such a plane.
    """
    points = np.asarray(points, dtype=np.float64)
    below = points[points[:, 1] > 0]
    if len(below) < 3 or len(below) < MIN_INLIER_FRACTION * len(points):
        return None
    tolerance = RELATIVE_TOLERANCE * float(np.median(below[:, 1]))
    rng = np.random.default_rng(seed)
    sample = below[rng.integers(0, len(below), (ITERATIONS, 3))]                 # (I, 3, 3)
    normals = np.cross(sample[:, 1] - sample[:, 0], sample[:, 2] - sample[:, 0])  # (I, 3)
    length = np.linalg.norm(normals, axis=1)
    ok = length > 0
    normals[ok] /= length[ok, None]
    normals *= np.where(normals[:, 1] < 0, -1.0, 1.0)[:, None]
    ok &= normals[:, 1] >= np.cos(np.radians(MAX_TILT_DEG))
    if not ok.any():
        return None
    normals, offsets = normals[ok], -np.einsum("ij,ij->i", normals[ok], sample[ok, 0])
    inliers = np.abs(below @ normals.T + offsets) < tolerance                      # (B, I')
    best = int(inliers.sum(0).argmax())
    members = below[inliers[:, best]]
    if len(members) < max(3, MIN_INLIER_FRACTION * len(points)):
        return None
    centroid = members.mean(0)
    normal = np.linalg.svd(members - centroid, full_matrices=False)[2][-1]
    normal = normal if normal[1] > 0 else -normal
    if normal[1] < np.cos(np.radians(MAX_TILT_DEG)):
        return None
    return normal, float(abs(normal @ centroid)), len(members) / len(points)


def height_above_ground(points: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """(N,) signed distance of each point of ``points`` (N, 3, OpenCV camera axes) above the frame's ground plane
    (:func:`fit_ground_plane`), in the points' units (> 0 above the road, ~0 on it); None when no plane is found."""
    fit = fit_ground_plane(points, seed)
    if fit is None:
        return None
    normal, camera_height, _ = fit  # the normal points down (n_y > 0): ground points have n . p = camera_height
    return camera_height - np.asarray(points, dtype=np.float64) @ normal


def sequence_scale(clouds: list[np.ndarray], reference_height_m: float, seed: int = 0) -> dict:
    """The factor that brings a sequence's clouds (list of (N_f, 3), OpenCV camera axes, one unknown scale) to
    metres, assuming the camera is ``reference_height_m`` above the ground.

    Returns {"factor", "method": "ground_height" | "median_depth", "frames", "frames_with_ground",
    "camera_height": median fitted height in input units (None without ground), "median_depth": in input
    units}. Raises ValueError when no frame has a point in front of the camera.
    """
    heights = [fit[1] for cloud in clouds if (fit := fit_ground_plane(cloud, seed)) is not None]
    depths = [float(np.median(c[:, 2][c[:, 2] > 0])) for c in clouds if (np.asarray(c)[:, 2] > 0).any()]
    if not depths:
        raise ValueError("no point in front of the camera in any frame: the scale cannot be normalised")
    median_depth = float(np.median(depths))
    result = {"frames": len(clouds), "frames_with_ground": len(heights), "median_depth": median_depth,
              "camera_height": float(np.median(heights)) if heights else None}
    if heights:
        result.update(factor=reference_height_m / result["camera_height"], method="ground_height")
    else:
        result.update(factor=reference_height_m * MEDIAN_DEPTH_PER_HEIGHT / median_depth, method="median_depth")
    return result
