"""Camera poses of a clip as proper rotations in OpenCV axes.

A pose here is ``world_from_camera`` = (R (…, 3, 3), t (…, 3)): a camera point p maps to the world
as ``R @ p + t`` (metres). The **world frame of a clip or sequence is the OpenCV camera frame of its
first frame** (x right, y down, z forward at frame 0). SYNTHIA's own world is left-handed
(``R_cv = pose[:3, :3] @ GL_FROM_CV`` has det -1), but poses relative to the first frame,
``R_cv0ᵀ R_cvt``, are proper rotations (a product of two reflections), so everything here stays in SO(3).
SYNTHIA pose files become such poses with ``relative_gt_poses`` (``pipeline/data/camera.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """(..., 6) two 3-vectors -> (..., 3, 3) rotation by Gram-Schmidt (Zhou et al. 2019); columns b1, b2, b3."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def matrix_to_rot6d(r: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns (inverse of :func:`rot6d_to_matrix`)."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], dim=-1)


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """(..., 3) rotation vectors (axis * angle, radians) -> (..., 3, 3) by Rodrigues' formula."""
    angle = torch.sqrt((v * v).sum(-1, keepdim=True) + 1e-12)
    k = v / angle
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    skew = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(skew)
    return eye + s * skew + (1 - c) * (skew @ skew)


def compose(r_ab: Tensor, t_ab: Tensor, r_bc: Tensor, t_bc: Tensor) -> tuple[Tensor, Tensor]:
    """a_from_b ∘ b_from_c = a_from_c."""
    return r_ab @ r_bc, (r_ab @ t_bc.unsqueeze(-1)).squeeze(-1) + t_ab


def invert(r: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """a_from_b -> b_from_a."""
    rt = r.transpose(-1, -2)
    return rt, -(rt @ t.unsqueeze(-1)).squeeze(-1)


def chain(r_rel: Tensor, t_rel: Tensor) -> tuple[Tensor, Tensor]:
    """Relative poses prev_from_cur (B, T-1, ...) -> world_from_camera (B, T, ...) with frame 0 = world."""
    b = r_rel.shape[0]
    r = [torch.eye(3, dtype=r_rel.dtype, device=r_rel.device).expand(b, 3, 3)]
    t = [torch.zeros(b, 3, dtype=r_rel.dtype, device=r_rel.device)]
    for i in range(r_rel.shape[1]):
        ri, ti = compose(r[-1], t[-1], r_rel[:, i], t_rel[:, i])
        r.append(ri)
        t.append(ti)
    return torch.stack(r, 1), torch.stack(t, 1)


def apply(r: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """Transform points (..., N, 3) by poses (..., 3, 3), (..., 3)."""
    return points @ r.transpose(-1, -2) + t.unsqueeze(-2)
