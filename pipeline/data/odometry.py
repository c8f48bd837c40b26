"""Camera odometry from depth alone (no ground-truth poses): ICP of consecutive frames' depth maps.

Each usable frame's depth map (the ``frames`` cache's, at the model's input size) is back-projected to a
point cloud in its OpenCV camera frame (depth up to ``max_depth_m``), with normals from the cross product
of the neighbouring pixels' points. Frame i's cloud is aligned to frame i - 1's by trimmed point-to-plane
ICP (:func:`pipeline.geometry.icp.point_to_plane_icp`; moving objects fall among the trimmed pairs), started
from several starts (the previous pair's motion scaled to this pair's frame gap, i.e. constant velocity; that
start shifted along the optical axis; the identity), keeping the fit with the largest share of points within
0.15 m of the previous cloud (a wrong start does not lock in), giving ``prev_from_cur``;
chained, these are ``world_from_camera`` with the first usable frame as the world, the same convention as the
cached ground-truth poses (``pipeline/data/frames_cache.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from pipeline.data.camera import backproject
from pipeline.data.frames import FrameRecord
from pipeline.geometry.icp import inlier_fraction, point_to_plane_icp

MAX_DEPTH_M = 40.0
GROUND_NORMAL_Y = 0.9  # |n_y| above this: a horizontal surface (OpenCV y is down)
START_SHIFTS_M = (-0.7, 0.7)  # extra ICP starts: the constant-velocity start moved along the optical axis
SOURCE_STRIDE = 3  # every 3rd source point: ~3,500 per frame at 96 x 160


def depth_cloud(record: FrameRecord, max_depth_m: float = MAX_DEPTH_M,
                ground: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) and unit normals (N, 3) of a frame's depth map (pixels with valid neighbours only);
    ``ground = False`` drops points whose normal is within ~25° of the camera's vertical axis."""
    points = backproject(np.where(np.isfinite(record.depth), record.depth, np.nan).astype(np.float64),
                         record.intrinsics)
    du, dv = points[:-1, 1:] - points[:-1, :-1], points[1:, :-1] - points[:-1, :-1]
    normals = np.cross(du, dv)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    p = points[:-1, :-1]
    ok = (np.isfinite(norm[..., 0]) & (norm[..., 0] > 1e-9) & (p[..., 2] < max_depth_m)
          & (np.linalg.norm(du, axis=-1) < 0.1 * p[..., 2]) & (np.linalg.norm(dv, axis=-1) < 0.1 * p[..., 2]))
    unit = normals / np.where(norm > 0, norm, 1)
    if not ground:
        ok &= np.abs(unit[..., 1]) < GROUND_NORMAL_Y
    return p[ok], unit[ok]


def depth_odometry(records: list[FrameRecord], max_depth_m: float = MAX_DEPTH_M) -> tuple[np.ndarray, np.ndarray]:
    """``world_from_camera`` (T, 3, 3), (T, 3) of a sequence's usable frames by chained ICP (world = frame 0)."""
    r_wc, t_wc = [np.eye(3)], [np.zeros(3)]
    clouds = [depth_cloud(r, max_depth_m, ground=False) for r in records]
    velocity = (np.zeros(3), np.zeros(3))  # rotation vector and translation per frame of the last pair
    for i in range(1, len(records)):
        gap = records[i].frame - records[i - 1].frame
        init_r = Rotation.from_rotvec(velocity[0] * gap).as_matrix()
        (src, _), (dst, normals) = clouds[i], clouds[i - 1]
        shift = velocity[1] * gap
        starts = [(init_r, shift), (np.eye(3), np.zeros(3))] + [(init_r, shift + np.array([0.0, 0.0, dz]))
                                                               for dz in START_SHIFTS_M]
        fits = [point_to_plane_icp(src[::SOURCE_STRIDE], dst, normals, *start)[:2] for start in starts]
        tree = cKDTree(dst)
        r, t = max(fits, key=lambda fit: inlier_fraction(src, dst, *fit, tree=tree))
        velocity = (Rotation.from_matrix(r).as_rotvec() / gap, t / gap)
        r_wc.append(r_wc[-1] @ r)
        t_wc.append(r_wc[-2] @ t + t_wc[-1])
    return np.array(r_wc), np.array(t_wc)
