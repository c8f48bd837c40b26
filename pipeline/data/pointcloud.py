"""Depth frame -> subsampled, labelled point cloud with normals (one frame at a time).

Normals (``pointcloud.normals``): ``grid`` from the depth image's neighbouring pixels
(:func:`pipeline.data.depth_normals.pixel_normals`, default) or ``knn``, a plane fit to the k nearest kept points.

The frame's PNGs are decoded whole (PNG rows are deflated together), but everything after the decode
touches only what the outputs need: the valid-pixel mask is one comparison on the raw centimetres, and
depth, 3-D points, colour and labels are gathered at the kept pixels only (with ``sampling: random`` the
kept pixels are drawn from the count of valid pixels alone; ``fps`` back-projects the valid pixels).
"""

from __future__ import annotations

import functools

import numpy as np

from pipeline.data.camera import GL_FROM_CV, backproject_pixels, cv_to_world
from pipeline.data.depth_normals import pixel_normals
from pipeline.data.sampling import random_subsample, subsample
from pipeline.io import pointcloud_table, synthia
from pipeline.io.synthia import SequenceLayout
from pipeline.params.pointcloud import PointcloudParams


def estimate_normals(points: np.ndarray, neighbours: int, viewpoint: np.ndarray) -> np.ndarray:
    """Unit normals (N, 3) from a k-NN plane fit (open3d), flipped to face ``viewpoint`` (3,)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=min(neighbours, max(len(points) - 1, 1))))
    normals = np.asarray(cloud.normals)
    if len(normals) != len(points):  # open3d returns none for clouds under 3 points
        return np.zeros_like(points, dtype=np.float32)
    flip = np.sum(normals * (viewpoint - points), axis=1) < 0
    normals[flip] *= -1
    return normals.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _last_valid_cm(far_m: float) -> int:
    """Largest raw centimetre value (< 65535) whose ``read_depth`` metres (float32) are <= ``far_m``."""
    metres = np.arange(synthia.DEPTH_NO_HIT + 1, dtype=np.uint16).astype(np.float32) / synthia.CM_PER_M
    return min(int(np.count_nonzero(metres <= far_m)) - 1, synthia.DEPTH_NO_HIT - 1)  # monotone in cm


def valid_depth_mask(raw_cm: np.ndarray, far_m: float) -> np.ndarray:
    """(H, W) bool: pixels of raw depth (uint16 centimetres) that are a hit (not 0, not 65535) with
    ``read_depth`` metres <= ``far_m``; one unsigned comparison, same result as comparing the float32 metres."""
    return (raw_cm - np.uint16(1)) < np.uint16(max(_last_valid_cm(far_m), 0))  # raw in [1, last]; 0 wraps


def random_valid_pixels(raw_cm: np.ndarray, far_m: float, k: int, rng: np.random.Generator,
                        oversample: float = 1.5) -> np.ndarray:
    """Sorted row-major flat indices of ``min(k, valid)`` pixels drawn uniformly without replacement among the
    valid pixels of raw depth ``raw_cm`` (H, W) uint16 cm (:func:`valid_depth_mask`).

    Without a pass over the whole image when it can: candidates are drawn uniformly without replacement from
    all pixels, in random order (``oversample`` x the expected need, from the valid share of a 1-in-64 pixel
    grid), and the first ``k`` valid ones are kept. In a uniformly random order of all pixels, the first k valid
    ones are a uniform k-subset of the valid pixels, so the draw is the same in law as sampling the valid
    pixels directly, which is the fallback when the candidates hold fewer than ``k`` valid pixels.
    """
    last = np.uint16(max(_last_valid_cm(far_m), 0))
    share = np.count_nonzero((raw_cm[::8, ::8] - np.uint16(1)) < last) / raw_cm[::8, ::8].size
    wanted = int(np.ceil(oversample * k / share)) if share > 0 else raw_cm.size
    if wanted < raw_cm.size // 4:
        candidates = rng.choice(raw_cm.size, size=wanted, replace=False)  # random order
        valid = candidates[(raw_cm.reshape(-1)[candidates] - np.uint16(1)) < last]
        if len(valid) >= k:
            return np.sort(valid[:k])
    pixels = np.flatnonzero(valid_depth_mask(raw_cm, far_m))
    return pixels[random_subsample(len(pixels), k, rng)]


def frame_normals(raw_cm: np.ndarray, v: np.ndarray, u: np.ndarray, points_cv: np.ndarray,
                  intrinsics: synthia.Intrinsics, params: PointcloudParams) -> np.ndarray:
    """Unit normals (N, 3) float32, OpenCV camera axes, facing the camera, of the kept pixels (``v``, ``u``) with
    points ``points_cv`` (N, 3), from the raw depth image (H, W) uint16 cm by ``params.normals``."""
    if params.normals == "grid":
        return pixel_normals(raw_cm, v, u, intrinsics, params.normal_step_px, metres_per_unit=1.0 / synthia.CM_PER_M,
                             no_surface=synthia.DEPTH_NO_HIT)
    return estimate_normals(points_cv, params.normal_neighbours, viewpoint=np.zeros(3))


def frame_points(layout: SequenceLayout, camera: str, frame: int, intrinsics: synthia.Intrinsics,
                 expect_hw: tuple[int, int] | None, params: PointcloudParams, rng: np.random.Generator) -> dict:
    """Columns of :data:`pipeline.io.pointcloud_table.SCHEMA` for one frame of one camera."""
    raw_cm = synthia.read_depth_cm(layout.depth(camera, frame), expect_hw)
    hw = raw_cm.shape
    pose = synthia.read_pose(layout.pose(camera, frame))  # checked even when the clouds stay in camera axes
    if params.sampling == "random":  # back-project the kept pixels only
        pixels = random_valid_pixels(raw_cm, params.far_m, params.max_points, rng)
    else:
        pixels = np.flatnonzero(valid_depth_mask(raw_cm, params.far_m))  # row-major flat indices
    v, u = np.divmod(pixels, hw[1])
    depth = raw_cm.reshape(-1)[pixels].astype(np.float32) / synthia.CM_PER_M  # as synthia.read_depth, kept only
    points_cv = backproject_pixels(depth, v, u, intrinsics)
    if params.sampling != "random":
        keep = subsample(points_cv, params.max_points, params.sampling, rng)
        pixels, u, v, depth, points_cv = pixels[keep], u[keep], v[keep], depth[keep], points_cv[keep]
    normals_cv = frame_normals(raw_cm, v, u, points_cv, intrinsics, params)
    if params.coordinates == "world":
        points = cv_to_world(points_cv, pose)
        normals = normals_cv @ (pose[:3, :3] @ GL_FROM_CV).T
    else:
        points, normals = points_cv, normals_cv
    # Labels (class id, instance id, 0) and colour are decoded after the depth work (so that it runs while the
    # depth image is still in cache) and gathered at the kept pixels at once, so each decoded image is freed
    # before the next is decoded. np.take gathers whole pixels ~3x faster than fancy indexing of (H * W, 3) rows.
    labels = np.take(synthia.read_labels_image(layout.labels(camera, frame), hw).reshape(-1, 3), pixels, axis=0)
    rgb = np.take(synthia.read_rgb(layout.rgb(camera, frame), hw).reshape(-1, 3), pixels, axis=0)
    return pointcloud_table.frame_columns(frame, u, v, points, depth, normals, rgb, labels[:, 0], labels[:, 1])
