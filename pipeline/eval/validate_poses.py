"""First-real-use check of SYNTHIA conventions: do consecutive frames overlap in the world?

SYNTHIA's pose convention is inferred, not documented by the dataset (``pipeline/data/camera.py`` states it). For
pairs of consecutive frames where the camera moved, this back-projects static-class pixels of both
frames into the world under several candidate conventions and measures the fraction of frame-t+1
points that land within ``radius`` metres of a frame-t point. The convention the project assumes
(camera-to-world, OpenGL camera axes) must win clearly; if another one wins, the reader is wrong
for that data. It also reports what the sky / far pixels contain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from pipeline.data.camera import GL_FROM_CV, backproject
from pipeline.io import synthia
from pipeline.io.synthia import THING_CLASSES, SequenceLayout


def _apply(rotation: np.ndarray, translation: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ rotation.T + translation


def _gl_camera_to_world(pose: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _apply(pose[:3, :3] @ GL_FROM_CV, pose[:3, 3], p)


def _cv_camera_to_world(pose: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _apply(pose[:3, :3], pose[:3, 3], p)


def _gl_world_to_camera(pose: np.ndarray, p: np.ndarray) -> np.ndarray:
    rotation = pose[:3, :3] @ GL_FROM_CV  # treat the file as world->camera: invert it
    inverse = np.linalg.inv(rotation)
    return _apply(inverse, -inverse @ pose[:3, 3], p)


CONVENTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "camera-to-world, OpenGL axes (assumed)": _gl_camera_to_world,
    "camera-to-world, OpenCV axes": _cv_camera_to_world,
    "world-to-camera, OpenGL axes": _gl_world_to_camera,
}
ASSUMED = next(iter(CONVENTIONS))


def _static_points(layout: SequenceLayout, camera: str, frame: int, intrinsics, far_m: float, rng, n: int):
    depth = synthia.read_depth(layout.depth(camera, frame))
    class_id, _ = synthia.read_labels(layout.labels(camera, frame), depth.shape)
    keep = np.isfinite(depth) & (depth < far_m) & ~np.isin(class_id, THING_CLASSES)
    points = backproject(depth, intrinsics)[keep]
    if len(points) > n:
        points = points[rng.choice(len(points), n, replace=False)]
    return points


def validate_sequence(layout: SequenceLayout, camera: str, pairs: int = 5, radius: float = 0.2,
                      far_m: float = 60.0, min_motion_m: float = 0.3, points: int = 20000) -> dict:
    """Overlap per convention over up to ``pairs`` consecutive-frame pairs with camera motion."""
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    frames = layout.frames(camera)
    rng = np.random.default_rng(0)
    poses = {f: synthia.read_pose(layout.pose(camera, f)) for f in frames}
    moving = [f for f in frames[:-1] if f + 1 in poses and np.linalg.norm(poses[f + 1][:3, 3] - poses[f][:3, 3]) > min_motion_m]
    chosen = [moving[i] for i in np.linspace(0, len(moving) - 1, min(pairs, len(moving))).astype(int)] if moving else []
    scores: dict[str, list[float]] = {name: [] for name in CONVENTIONS}
    for frame in chosen:
        a = _static_points(layout, camera, frame, intrinsics, far_m, rng, points)
        b = _static_points(layout, camera, frame + 1, intrinsics, far_m, rng, points)
        for name, to_world in CONVENTIONS.items():
            tree = cKDTree(to_world(poses[frame], a))
            dist, _ = tree.query(to_world(poses[frame + 1], b), distance_upper_bound=radius)
            scores[name].append(float(np.mean(np.isfinite(dist))))
    overlap = {name: round(float(np.mean(v)), 4) if v else None for name, v in scores.items()}
    raw = synthia.read_depth_cm(layout.depth(camera, frames[0]))
    finite = raw[(raw != synthia.DEPTH_INVALID) & (raw != synthia.DEPTH_NO_HIT)]
    best = max((k for k in overlap if overlap[k] is not None), key=lambda k: overlap[k], default=None)
    return {
        "sequence": layout.name, "camera": camera, "pairs_checked": len(chosen), "overlap": overlap,
        "best_convention": best, "assumed_convention_ok": best == ASSUMED and (overlap[ASSUMED] or 0) > 0.5,
        "depth_no_hit_fraction": round(float(np.mean(raw == synthia.DEPTH_NO_HIT)), 4),
        "depth_zero_fraction": round(float(np.mean(raw == synthia.DEPTH_INVALID)), 4),
        "depth_max_finite_m": round(float(finite.max()) / 100, 2) if finite.size else None,
    }
