"""Camera odometry from depth alone (no ground-truth poses): ICP of consecutive frames' depth maps.

Each usable frame's depth map (the ``frames`` cache's, at the model's input size) is back-projected to a
point cloud in its OpenCV camera frame (depth up to ``max_depth_m``), with normals from the cross product
of the neighbouring pixels' points. Frame i's cloud is aligned to frame i - 1's by point-to-plane ICP
(:func:`pipeline.geometry.icp.point_to_plane_icp`): iterations over all pairs, then ones with a robust kernel
(moving objects get little weight; ``ROBUST_ICP``), started from several starts (the previous pair's motion scaled to
this pair's frame gap, i.e. constant velocity; that start shifted along the optical axis; the identity), keeping
the fit with the largest share of non-ground points within 0.15 m of the previous cloud (:func:`best_fit`; a
wrong start does not lock in), giving ``prev_from_cur``;
chained, these are ``world_from_camera`` with the first usable frame as the world, the same convention as the
cached ground-truth poses (``pipeline/data/frames_cache.py``).

:func:`refine_relative_poses` instead starts from given relative poses (a camera head's) and keeps them as a
Gaussian prior of the ICP (:class:`pipeline.geometry.icp.PosePrior`): the depth maps correct what they constrain,
the head fills in what they leave free.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from pipeline.data.camera import backproject
from pipeline.data.frames import DepthFrame, FrameRecord
from pipeline.geometry.icp import PosePrior, inlier_fraction, point_to_plane_icp, prior_distance

MAX_DEPTH_M = 40.0
GROUND_NORMAL_Y = 0.9  # |n_y| above this: a horizontal surface (OpenCV y is down)
START_SHIFTS_M = (-0.7, 0.7)  # extra ICP starts: the constant-velocity start moved along the optical axis
SOURCE_STRIDE = 3  # every 3rd source point: ~3,500 per frame at 96 x 160
YAW_STEP_DEG = 6.0  # refinement starts: the given pose, and turned left / right by multiples of this
OVERLAP_TIE = 0.01  # overlaps closer than this are a tie, broken by the prior
# ICP: 15 iterations over all pairs (see point_to_plane_icp), then pairs down-weighted by a Cauchy kernel of 5 cm
# instead of trimmed by rank (trimming a fixed share drops small structures that face the camera, the only thing
# that pins the motion along a street; chosen on the training and validation sequences: 40-frame drift 0.56 m vs
# 1.29 m with 20 % trimmed)
ROBUST_ICP = {"untrimmed_iterations": 15, "keep": 1.0, "cauchy_m": 0.05}


def depth_cloud(record: FrameRecord | DepthFrame, max_depth_m: float = MAX_DEPTH_M,
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


def best_fit(fits: list[tuple[np.ndarray, np.ndarray]], source: np.ndarray, source_normals: np.ndarray,
             target: np.ndarray, prior: PosePrior | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The fit ``(R, t)`` with the largest overlap (:func:`inlier_fraction`) of the source's non-ground points (the
    ground overlaps under any yaw, so it would only blur the score); fits within ``OVERLAP_TIE`` of it are a tie
    (a fit that slid along a straight street overlaps as well as the right one), broken by the prior's distance,
    or without a prior by the order of ``fits``."""
    tree = cKDTree(target)
    upright = source[np.abs(source_normals[:, 1]) < GROUND_NORMAL_Y]
    overlap = [inlier_fraction(upright, target, *fit, tree=tree) for fit in fits]
    tied = [fit for fit, score in zip(fits, overlap, strict=True) if score >= max(overlap) - OVERLAP_TIE]
    return tied[0] if prior is None else min(tied, key=lambda fit: prior_distance(prior, *fit))


Between = Callable[[FrameRecord, FrameRecord], list[DepthFrame]]  # depth maps of the frames between two records


def bridged(a: FrameRecord, b: FrameRecord, between: Between | None) -> list[FrameRecord | DepthFrame]:
    """``[a, frames between a and b (if any are given), b]``."""
    return [a] + (between(a, b) if between is not None and b.frame - a.frame > 1 else []) + [b]


def depth_odometry(records: list[FrameRecord], between: Between | None = None,
                   max_depth_m: float = MAX_DEPTH_M) -> tuple[np.ndarray, np.ndarray]:
    """``world_from_camera`` (T, 3, 3), (T, 3) of a sequence's usable frames by chained ICP (world = frame 0);
    through the frames ``between`` gives where usable frames are not adjacent (see :func:`refine_relative_poses`)."""
    frames, usable = [records[0]], [0]
    for a, b in zip(records[:-1], records[1:], strict=True):
        frames += bridged(a, b, between)[1:]
        usable.append(len(frames) - 1)
    r_wc, t_wc = chained_odometry(frames, max_depth_m)
    return r_wc[usable], t_wc[usable]


def chained_odometry(records: list[FrameRecord | DepthFrame], max_depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """``world_from_camera`` of every one of ``records`` by chained ICP of consecutive ones (world = the first)."""
    r_wc, t_wc = [np.eye(3)], [np.zeros(3)]
    clouds = [depth_cloud(r, max_depth_m) for r in records]
    velocity = (np.zeros(3), np.zeros(3))  # rotation vector and translation per frame of the last pair
    for i in range(1, len(records)):
        gap = records[i].frame - records[i - 1].frame
        init_r = Rotation.from_rotvec(velocity[0] * gap).as_matrix()
        (src, src_normals), (dst, normals) = clouds[i], clouds[i - 1]
        shift = velocity[1] * gap
        starts = [(init_r, shift), (np.eye(3), np.zeros(3))] + [(init_r, shift + np.array([0.0, 0.0, dz]))
                                                               for dz in START_SHIFTS_M]
        fits = [point_to_plane_icp(src[::SOURCE_STRIDE], dst, normals, *start,
                                   **ROBUST_ICP)[:2] for start in starts]
        r, t = best_fit(fits, src, src_normals, dst)
        velocity = (Rotation.from_matrix(r).as_rotvec() / gap, t / gap)
        r_wc.append(r_wc[-1] @ r)
        t_wc.append(r_wc[-2] @ t + t_wc[-1])
    return np.array(r_wc), np.array(t_wc)


def refine_relative_poses(records: list[FrameRecord], r_rel: np.ndarray, t_rel: np.ndarray,
                          rotation_sigma_deg: float, translation_sigma_m: float,
                          between: Between | None = None,
                          max_depth_m: float = MAX_DEPTH_M) -> tuple[np.ndarray, np.ndarray]:
    """``prev_from_cur`` (T - 1, 3, 3), (T - 1, 3) of consecutive usable frames: each given relative pose (the
    prior's mean, with isotropic standard deviations ``rotation_sigma_deg`` and ``translation_sigma_m``) refined by
    point-to-plane ICP of the frame's depth cloud to the previous frame's.

    Where usable frames are not adjacent (the ``frames`` stage skips frames with too few target points), ``between``
    gives the depth maps of the frames in between: the pair is refined step by step through them (each step's prior
    an equal share of the given motion: rotation vector and translation over the number of steps) and the steps
    are composed. Without it, the pair is aligned directly, however far apart.

    A head can miss a turn by more than its typical error (it predicts 0° where the car turns 7° per frame), and
    ICP from there may stay in the wrong valley. So ICP also starts from the prior turned about the camera's
    vertical axis by ±``YAW_STEP_DEG`` × 1 ... the step's frame gap, and :func:`best_fit` picks among the fits and
    the unrefined prior."""
    out_r, out_t = [], []
    clouds = {id(r): depth_cloud(r, max_depth_m) for r in records}
    for i in range(1, len(records)):
        a, b = records[i - 1], records[i]
        frames = bridged(a, b, between)
        steps = len(frames) - 1
        step_r = Rotation.from_rotvec(Rotation.from_matrix(r_rel[i - 1]).as_rotvec() / steps).as_matrix()
        step_t = np.asarray(t_rel[i - 1], dtype=np.float64) / steps
        r, t = np.eye(3), np.zeros(3)
        for prev, cur in zip(frames[:-1], frames[1:], strict=True):
            prev_cloud = clouds[id(prev)] if id(prev) in clouds else depth_cloud(prev, max_depth_m)
            cur_cloud = clouds[id(cur)] if id(cur) in clouds else depth_cloud(cur, max_depth_m)
            step = refine_pair(prev_cloud, cur_cloud, step_r, step_t, max(1, cur.frame - prev.frame),
                               PosePrior(step_r, step_t, np.radians(rotation_sigma_deg), translation_sigma_m))
            r, t = r @ step[0], r @ step[1] + t
        out_r.append(r)
        out_t.append(t)
    return np.array(out_r), np.array(out_t)


def refine_pair(prev_cloud: tuple[np.ndarray, np.ndarray], cur_cloud: tuple[np.ndarray, np.ndarray],
                rotation: np.ndarray, translation: np.ndarray, gap: int, prior: PosePrior) -> tuple[np.ndarray, np.ndarray]:
    """``prev_from_cur`` of two depth clouds (points, normals) from the start ``(rotation, translation)`` with a
    ``prior``, ``gap`` frames apart (see :func:`refine_relative_poses`)."""
    (src, src_normals), (dst, normals) = cur_cloud, prev_cloud
    turns = [Rotation.from_rotvec([0.0, np.radians(d), 0.0]).as_matrix()
             for d in YAW_STEP_DEG * np.concatenate([[0.0], np.arange(1, gap + 1), -np.arange(1, gap + 1)])]
    start = (np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64))
    fits = [start] + [point_to_plane_icp(src[::SOURCE_STRIDE], dst, normals, turn @ start[0], start[1], prior=prior,
                                         **ROBUST_ICP)[:2] for turn in turns]
    return best_fit(fits, src, src_normals, dst, prior)
