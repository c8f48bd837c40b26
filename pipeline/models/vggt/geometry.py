"""Camera maths for VGGT outputs (torch; any leading batch dims).

Conventions:
- extrinsic = camera-from-world [R | t], shape (..., 3, 4), OpenCV camera axes (x right, y down, z forward):
  x_cam = R @ X_world + t.
- intrinsic (..., 3, 3) in pixels, zero skew, principal point at the image centre (W/2, H/2).
- pose encoding (..., 9) = [t (3), quaternion (x, y, z, w) scalar-last (4), fov_h, fov_w] (radians).
- Depth maps are z-depth (distance along the optical axis). Unprojection uses the integer pixel grid
  u = 0..W-1, v = 0..H-1 with the intrinsic as given, exactly as the reference VGGT code does.
- VGGT geometry is up to one unknown global scale per sequence (no metric units).
"""

from __future__ import annotations

import torch


def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """Quaternion (..., 4) as (x, y, z, w), any norm -> rotation matrix (..., 3, 3)."""
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def mat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) as (x, y, z, w) with w >= 0.

    Numerically stable branch choice: the quaternion is computed from whichever of 4w^2, 4x^2, 4y^2, 4z^2
    (trace combinations) is largest.
    """
    m = R.reshape(R.shape[:-2] + (9,)).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    four_sq = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    # candidates (w, x, y, z) scaled by 4 * component, one row per branch
    cand = torch.stack((
        torch.stack((four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01), -1),
        torch.stack((m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20), -1),
        torch.stack((m02 - m20, m10 + m01, four_sq[..., 2], m12 + m21), -1),
        torch.stack((m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]), -1),
    ), dim=-2)  # (..., 4 branches, 4)
    best = four_sq.argmax(-1)
    denom = 2.0 * four_sq.clamp_min(1e-12).sqrt()
    wxyz = torch.gather(cand, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    wxyz = wxyz / torch.gather(denom, -1, best[..., None])
    q = torch.cat((wxyz[..., 1:], wxyz[..., :1]), dim=-1)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:4] < 0, -q, q)


def pose_encoding_to_extri_intri(enc: torch.Tensor, image_hw: tuple[int, int]
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose encoding (..., 9) -> extrinsic (..., 3, 4) and intrinsic (..., 3, 3) for an image of (H, W) px.

    fy = (H/2) / tan(fov_h/2), fx = (W/2) / tan(fov_w/2), principal point (W/2, H/2).
    """
    H, W = image_hw
    R = quat_to_mat(enc[..., 3:7])
    extr = torch.cat((R, enc[..., :3, None]), dim=-1)
    K = torch.zeros(enc.shape[:-1] + (3, 3), dtype=enc.dtype, device=enc.device)
    K[..., 0, 0] = (W / 2.0) / torch.tan(enc[..., 8] / 2.0)
    K[..., 1, 1] = (H / 2.0) / torch.tan(enc[..., 7] / 2.0)
    K[..., 0, 2] = W / 2.0
    K[..., 1, 2] = H / 2.0
    K[..., 2, 2] = 1.0
    return extr, K


def extri_intri_to_pose_encoding(extr: torch.Tensor, K: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``pose_encoding_to_extri_intri`` (the principal point is not encoded)."""
    H, W = image_hw
    fov_h = 2.0 * torch.atan((H / 2.0) / K[..., 1, 1])
    fov_w = 2.0 * torch.atan((W / 2.0) / K[..., 0, 0])
    return torch.cat((extr[..., :3, 3], mat_to_quat(extr[..., :3, :3]), fov_h[..., None], fov_w[..., None]), -1)


def invert_extrinsic(extr: torch.Tensor) -> torch.Tensor:
    """[R | t] (..., 3, 4) -> [R^T | -R^T t] (world-from-camera for a camera-from-world input)."""
    Rt = extr[..., :3, :3].transpose(-1, -2)
    return torch.cat((Rt, -(Rt @ extr[..., :3, 3:])), dim=-1)


def depth_to_camera_points(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """z-depth (..., H, W) and intrinsics (..., 3, 3) -> camera-frame points (..., H, W, 3)."""
    H, W = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(H, device=depth.device, dtype=depth.dtype),
                          torch.arange(W, device=depth.device, dtype=depth.dtype), indexing="ij")
    K = K.to(depth.dtype)
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    return torch.stack(((u - cx) * depth / fx, (v - cy) * depth / fy, depth), dim=-1)


def camera_to_world(points: torch.Tensor, extr: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (..., H, W, 3) -> world frame with camera-from-world ``extr`` (..., 3, 4)."""
    inv = invert_extrinsic(extr.to(points.dtype))
    R, t = inv[..., None, None, :3, :3], inv[..., None, None, :3, 3]
    return (R @ points[..., None]).squeeze(-1) + t


def depth_to_world_points(depth: torch.Tensor, extr: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """z-depth (..., H, W) -> world points (..., H, W, 3) via intrinsics and camera-from-world extrinsics."""
    return camera_to_world(depth_to_camera_points(depth, K), extr)
