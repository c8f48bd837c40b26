"""Pinhole cameras and SYNTHIA's pose convention.

Conventions used throughout protoscene:
- Image pixels: u = column, v = row, pixel centres at integer coordinates (as SYNTHIA's readers).
- OpenCV camera axes ("cv"): x right, y down, z forward; planar depth is the z coordinate.
- SYNTHIA pose files hold camera-to-world with OpenGL camera axes (x right, y up, looking down -z),
  so a cv point maps to the world as ``p_world = R @ diag(1, -1, -1) @ p_cv + t``.
- World: SYNTHIA/Unity style, metres, y up, left-handed (x right, z forward for yaw 0).

Pose conversions (the one implementation each): :func:`extrinsic_from_synthia_pose` (camera-from-world
3x4, OpenCV axes), :func:`relative_gt_poses` (world_from_camera of a clip in the first frame's OpenCV axes),
:func:`synthia_pair_motion` (6-vector motion of camera b seen from camera a: axis-angle, translation) and
:func:`extrinsic_motions` (frame i -> i + step rigid maps of camera-from-world extrinsics).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.io.synthia import Intrinsics

# SYNTHIA's K: f = 532.740352 at 760 rows, i.e. a 71 degree vertical field of view.
SYNTHIA_VERTICAL_FOV_DEG = 71.0
SYNTHIA_BASELINE_M = 0.8
GL_FROM_CV = np.diag([1.0, -1.0, -1.0])


def synthia_intrinsics(height: int, width: int) -> Intrinsics:
    """SYNTHIA's intrinsics rescaled to ``height`` x ``width`` (same vertical FOV, centred).

    At 760 x 1280 this is exactly fx = fy = 532.740352, cx = 640, cy = 380.
    """
    cy = height / 2.0
    focal = cy / math.tan(math.radians(SYNTHIA_VERTICAL_FOV_DEG / 2.0))
    return Intrinsics(focal=round(focal, 6), cx=width / 2.0, cy=cy, baseline=SYNTHIA_BASELINE_M)


def pixel_rays(height: int, width: int, intrinsics: Intrinsics) -> np.ndarray:
    """Ray directions (H, W, 3) float64 in cv axes with z = 1, so ``depth * ray`` is the 3-D point."""
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    uu, vv = np.meshgrid(u, v)
    return np.stack(
        [(uu - intrinsics.cx) / intrinsics.focal, (vv - intrinsics.cy) / intrinsics.focal, np.ones_like(uu)], axis=-1
    )


def backproject(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Planar depth (H, W) metres -> points (H, W, 3) in cv camera coordinates (NaN stays NaN)."""
    height, width = depth.shape
    return pixel_rays(height, width, intrinsics) * depth[..., None]


def backproject_pixels(depth: np.ndarray, v: np.ndarray, u: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Points (N, 3) float64 in cv camera coordinates of pixels (row ``v``, column ``u``) with planar depth
    ``depth`` (N,) metres; equal, value for value, to ``backproject(image, intrinsics)[v, u]``."""
    ray_x = (u.astype(np.float64) - intrinsics.cx) / intrinsics.focal
    ray_y = (v.astype(np.float64) - intrinsics.cy) / intrinsics.focal
    return np.stack([ray_x * depth, ray_y * depth, np.ones_like(ray_x) * depth], axis=-1)


def cv_to_world(points_cv: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """Map (..., 3) cv camera points to the world with a SYNTHIA camera-to-world pose (OpenGL axes)."""
    rotation = camera_to_world[:3, :3] @ GL_FROM_CV
    return points_cv @ rotation.T + camera_to_world[:3, 3]


def world_to_cv(points_world: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cv_to_world`."""
    rotation = camera_to_world[:3, :3] @ GL_FROM_CV
    return (points_world - camera_to_world[:3, 3]) @ rotation  # R^-1 = R^T for rotation or reflection


def project(points_cv: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(..., 3) cv points -> (..., 2) pixel coordinates (u, v). Points must have z > 0."""
    z = points_cv[..., 2]
    return np.stack(
        [intrinsics.focal * points_cv[..., 0] / z + intrinsics.cx, intrinsics.focal * points_cv[..., 1] / z + intrinsics.cy],
        axis=-1,
    )


def heading_vector(yaw: np.ndarray | float) -> np.ndarray:
    """Horizontal forward direction for a yaw angle (radians): yaw 0 -> +z, yaw pi/2 -> +x."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], axis=-1)


def right_vector(yaw: np.ndarray | float) -> np.ndarray:
    """Horizontal right direction in SYNTHIA's left-handed y-up world: cross(up, forward)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], axis=-1)


def look_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """SYNTHIA camera-to-world pose (OpenGL axes) of a camera at ``position`` looking along ``yaw``.

    ``pitch`` in radians, positive looks up. The rotation has det = -1 as in real SYNTHIA files.
    """
    forward = heading_vector(yaw) * math.cos(pitch) + np.array([0.0, math.sin(pitch), 0.0])
    right = right_vector(yaw)
    up = np.cross(forward, right)  # for the left-handed basis: right x up = forward => up = forward x right
    rotation_cv = np.stack([right, -up, forward], axis=1)  # columns: cv x, y, z in world coordinates
    pose = np.eye(4)
    pose[:3, :3] = rotation_cv @ GL_FROM_CV
    pose[:3, 3] = position
    return pose


# ------------------------------------------------------------------------- poses and relative motion
def extrinsic_from_synthia_pose(pose: np.ndarray) -> np.ndarray:
    """SYNTHIA camera-to-world 4x4 (OpenGL camera axes) -> camera-from-world (3, 4), OpenCV camera axes.

    ``R_cv = pose[:3, :3] @ GL_FROM_CV`` is world-from-camera for OpenCV axes; the extrinsic is its inverse
    ``[R_cv^T | -R_cv^T c]`` (R_cv is orthogonal, det -1 in SYNTHIA's left-handed world).
    """
    R = np.asarray(pose, dtype=np.float64)[:3, :3] @ GL_FROM_CV
    c = np.asarray(pose, dtype=np.float64)[:3, 3]
    return np.concatenate([R.T, (-R.T @ c)[:, None]], axis=1)


def relative_gt_poses(camera_to_world: np.ndarray, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHIA poses (T, 4, 4) (camera-to-world, OpenGL axes) -> world_from_camera (R (T, 3, 3), t (T, 3))
    in the OpenCV frame of ``reference`` (default: the first pose)."""
    reference = camera_to_world[0] if reference is None else reference
    r0 = reference[:3, :3] @ GL_FROM_CV
    rt = camera_to_world[:, :3, :3] @ GL_FROM_CV
    rotation = np.einsum("ji,tjk->tik", r0, rt)
    translation = (camera_to_world[:, :3, 3] - reference[:3, 3]) @ r0
    return rotation, translation


def synthia_pair_motion(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray:
    """Motion (6,) of camera b in camera a's OpenCV frame: axis-angle (rad, 3) then translation (m, 3).

    Poses are SYNTHIA camera-to-world (OpenGL axes). ``R = R_a^T R_b`` with ``R = pose[:3,:3] @ GL_FROM_CV``
    is a proper rotation even though SYNTHIA's world is left-handed (both factors have det -1);
    ``t = R_a^T (c_b - c_a)``. rot_y > 0 turns the camera towards +x (right) in the OpenCV frame.
    """
    ra = pose_a[:3, :3] @ GL_FROM_CV
    rb = pose_b[:3, :3] @ GL_FROM_CV
    rel = ra.T @ rb
    rotvec = Rotation.from_matrix(rel).as_rotvec()
    return np.concatenate([rotvec, ra.T @ (pose_b[:3, 3] - pose_a[:3, 3])])


def extrinsic_motions(extrinsics: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Camera-from-world (S, 3, 4) -> motions from frame i to i + step: R (S-step, 3, 3), t (S-step, 3).

    ``R = R_i R_j^T`` and ``t = t_i - R t_j`` with j = i + step, i.e. the map from camera-j to camera-i
    coordinates; t is camera j's centre in camera i's axes.
    """
    E = np.asarray(extrinsics, dtype=np.float64)
    Ra, ta, Rb, tb = E[:-step, :, :3], E[:-step, :, 3], E[step:, :, :3], E[step:, :, 3]
    R = Ra @ np.swapaxes(Rb, -1, -2)
    t = ta - np.einsum("nij,nj->ni", R, tb)
    return R, t
