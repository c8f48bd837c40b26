"""Rotation helpers (pytorch3d-free): Euler angles → matrices and the geodesic angle.

Convention (as ``pytorch3d.transforms.euler_angles_to_matrix``): a convention string of three axis
letters names **intrinsic** rotations, R = R_{c0}(a0) · R_{c1}(a1) · R_{c2}(a2), with the usual
right-handed elementary matrices. For (yaw, pitch, roll) use "ZYX": R = R_z(yaw) R_y(pitch) R_x(roll).
This equals ``scipy.spatial.transform.Rotation.from_euler("ZYX", angles)`` (uppercase = intrinsic).
Angles are in radians. Matrices act on column vectors: x_out = R @ x_in.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """Elementary right-handed rotation about ``axis`` by ``angle`` (...,) → (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "X":
        rows = (one, zero, zero, zero, c, -s, zero, s, c)
    elif axis == "Y":
        rows = (c, zero, s, zero, one, zero, -s, zero, c)
    else:  # "Z"
        rows = (c, -s, zero, s, c, zero, zero, zero, one)
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


def _check_convention(convention: str) -> None:
    if (
        not isinstance(convention, str)
        or len(convention) != 3
        or any(ch not in "XYZ" for ch in convention)
        or convention[0] == convention[1]
        or convention[1] == convention[2]
    ):
        raise ValueError(
            f"convention must be 3 letters from X/Y/Z with no two neighbours equal, got {convention!r}"
        )


def euler_to_matrix(angles: Tensor, convention: str = "ZYX") -> Tensor:
    """Intrinsic Euler angles to rotation matrices.

    Args:
        angles: (..., 3) radians; angles[..., i] is the rotation about axis ``convention[i]``.
        convention: e.g. "ZYX" for (yaw, pitch, roll); Tait–Bryan ("XYZ", ...) and proper Euler
            ("ZXZ", ...) conventions are both accepted.
    Returns:
        (..., 3, 3) rotation matrices R = R_{c0}(a0) R_{c1}(a1) R_{c2}(a2), differentiable in angles.
    """
    _check_convention(convention)
    if angles.shape[-1:] != (3,):
        raise ValueError(f"angles must have shape (..., 3), got {tuple(angles.shape)}")
    mats = [_axis_rotation(ax, a) for ax, a in zip(convention, angles.unbind(-1))]
    return mats[0] @ mats[1] @ mats[2]


def geodesic_angle(r1: Tensor, r2: Tensor) -> Tensor:
    """Geodesic distance on SO(3): the angle of the relative rotation r1ᵀ r2.

    Args:
        r1, r2: (..., 3, 3) rotation matrices (broadcastable).
    Returns:
        (...,) angle in radians, in [0, π]. Computed as atan2(|axis part|, cos part) from the
        skew-symmetric part and the trace of r1ᵀ r2, which stays accurate near 0 and near π
        (unlike acos of the trace) and has finite gradients at both ends (zero at exactly 0).
    """
    if r1.shape[-2:] != (3, 3) or r2.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must be (..., 3, 3), got {tuple(r1.shape)} and {tuple(r2.shape)}")
    rel = r1.transpose(-1, -2) @ r2
    cos = (rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2] - 1.0) / 2.0
    w = torch.stack(
        [rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]],
        dim=-1,
    )
    # |w| / 2 = sin(angle); clamp the squared norm so the gradient of sqrt is finite (and 0) at w = 0.
    tiny = torch.finfo(w.dtype).tiny
    sin = (w * w).sum(-1).clamp_min(tiny).sqrt() / 2.0
    return torch.atan2(sin, cos)
