"""Depth frame -> subsampled, labelled point cloud with normals (one frame at a time)."""

from __future__ import annotations

import numpy as np

from pipeline.data.camera import GL_FROM_CV, backproject, cv_to_world
from pipeline.data.sampling import subsample
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


def frame_points(layout: SequenceLayout, camera: str, frame: int, intrinsics: synthia.Intrinsics,
                 expect_hw: tuple[int, int] | None, params: PointcloudParams, rng: np.random.Generator) -> dict:
    """Columns of :data:`pipeline.io.pointcloud_table.SCHEMA` for one frame of one camera."""
    depth = synthia.read_depth(layout.depth(camera, frame), expect_hw)
    hw = depth.shape
    class_id, instance_id = synthia.read_labels(layout.labels(camera, frame), hw)
    rgb = synthia.read_rgb(layout.rgb(camera, frame), hw)
    pose = synthia.read_pose(layout.pose(camera, frame))
    valid = np.isfinite(depth) & (depth <= params.far_m)
    v, u = np.nonzero(valid)
    points_cv = backproject(depth, intrinsics)[v, u]
    keep = subsample(points_cv, params.max_points, params.sampling, rng)
    u, v, points_cv = u[keep], v[keep], points_cv[keep]
    normals_cv = estimate_normals(points_cv, params.normal_neighbours, viewpoint=np.zeros(3))
    if params.coordinates == "world":
        points = cv_to_world(points_cv, pose)
        normals = normals_cv @ (pose[:3, :3] @ GL_FROM_CV).T
    else:
        points, normals = points_cv, normals_cv
    return pointcloud_table.frame_columns(frame, u, v, points, depth[v, u], normals, rgb[v, u], class_id[v, u],
                                          instance_id[v, u])
