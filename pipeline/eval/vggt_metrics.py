"""Depth and camera metrics for VGGT outputs against SYNTHIA ground truth.

Conventions:
- Extrinsics are camera-from-world ``[R | t]`` (3, 4) with OpenCV camera axes (x right, y down, z forward).
  SYNTHIA poses are converted with ``extrinsic_from_synthia_pose`` (``pipeline/data/camera.py``); their world is left-handed, so those
  R have det -1. Only *relative* motions between two frames of the same source are compared, and
  ``R_a R_b^T`` of two det -1 matrices is a proper rotation, so both sources compare cleanly.
- The relative motion from frame a to frame b is the rigid map from camera-b to camera-a coordinates:
  ``T_ab = E_a E_b^-1``; its translation is the position of camera b seen from camera a (VGGT units or
  metres; only its direction is compared, VGGT has no metric scale).
- Depth maps are planar z-depth. VGGT depth has an arbitrary scale, so each frame is median-scaled to the
  ground truth before AbsRel and delta < 1.25 (the usual protocol for scale-free monocular depth).
- Pre-processing records map original pixels to model-input pixels as ``x_model = s * x_orig + o`` in the
  "pixel corners at integers" convention (``pipeline/models/vggt/preprocess.py``).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.camera import extrinsic_from_synthia_pose, extrinsic_motions
from pipeline.io import synthia
from pipeline.io.synthia import SequenceLayout

# --------------------------------------------------------------------------- pixel grids


def model_to_original_pixels(model_hw: tuple[int, int], orig_hw: tuple[int, int], scale_xy: np.ndarray,
                             offset_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Original pixel under the centre of every model-input pixel (nearest neighbour).

    Returns ``u_orig``, ``v_orig`` (h, w) int64 (clipped into the image) and ``inside`` (h, w) bool, False
    where the model pixel centre falls outside the original image (padding in ``pad`` mode).
    """
    h, w = (int(x) for x in model_hw)
    H, W = (int(x) for x in orig_hw)
    x = (np.arange(w, dtype=np.float64) + 0.5 - float(offset_xy[0])) / float(scale_xy[0])
    y = (np.arange(h, dtype=np.float64) + 0.5 - float(offset_xy[1])) / float(scale_xy[1])
    u = np.floor(x).astype(np.int64)
    v = np.floor(y).astype(np.int64)
    uu, vv = np.meshgrid(u, v)
    inside = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
    return np.clip(uu, 0, W - 1), np.clip(vv, 0, H - 1), inside


def resample_to_model_grid(image: np.ndarray, model_hw: tuple[int, int], scale_xy: np.ndarray,
                           offset_xy: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """An original-resolution map (H, W, ...) sampled (nearest) at the model-input pixel centres -> (h, w, ...).

    Nearest neighbour on purpose: averaging depth across an object boundary would invent depths. Model pixels
    outside the original image get ``fill``.
    """
    u, v, inside = model_to_original_pixels(model_hw, image.shape[:2], scale_xy, offset_xy)
    out = image[v, u].astype(np.result_type(image.dtype, np.float32))
    out[~inside] = fill
    return out


# --------------------------------------------------------------------------- depth


def median_scale(pred: np.ndarray, gt: np.ndarray) -> float:
    """Scale s with median(s * pred) = median(gt) over the given (already valid) pixels."""
    return float(np.median(gt) / np.median(pred))


def depth_errors(pred: np.ndarray, gt: np.ndarray, max_depth: float = 80.0) -> dict[str, float]:
    """One frame: AbsRel and delta < 1.25 after median scaling of ``pred`` to ``gt``.

    ``pred`` and ``gt`` (h, w) on the same pixel grid; GT pixels count when finite, > 0 and <= ``max_depth``
    (metres), prediction pixels when finite and > 0. Returns ``abs_rel`` = mean(|s p - g| / g),
    ``delta1`` = fraction with max(s p / g, g / (s p)) < 1.25, ``scale`` = s and ``valid_pixels``; NaN
    metrics when no pixel is valid.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must share one pixel grid")
    valid = np.isfinite(gt) & (gt > 0) & (gt <= max_depth) & np.isfinite(pred) & (pred > 0)
    if not valid.any():
        return {"abs_rel": float("nan"), "delta1": float("nan"), "scale": float("nan"), "valid_pixels": 0}
    p = pred[valid].astype(np.float64)
    g = gt[valid].astype(np.float64)
    s = median_scale(p, g)
    p = s * p
    ratio = np.maximum(p / g, g / p)
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)), "delta1": float(np.mean(ratio < 1.25)), "scale": s,
            "valid_pixels": int(valid.sum())}


# --------------------------------------------------------------------------- cameras


def rotation_error_deg(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) of R_pred^T R_gt for rotations (..., 3, 3)."""
    M = np.swapaxes(R_pred, -1, -2) @ R_gt
    cos = (np.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def translation_direction_error_deg(t_pred: np.ndarray, t_gt: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Angle (degrees) between translation vectors (..., 3); NaN where either has (near) zero length."""
    t_pred = np.asarray(t_pred, dtype=np.float64)
    t_gt = np.asarray(t_gt, dtype=np.float64)
    n_pred = np.linalg.norm(t_pred, axis=-1)
    n_gt = np.linalg.norm(t_gt, axis=-1)
    ok = (n_pred > eps) & (n_gt > eps)
    cos = np.sum(t_pred * t_gt, axis=-1) / np.where(ok, n_pred * n_gt, 1.0)
    return np.where(ok, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), np.nan)


def pose_errors(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray) -> dict[str, np.ndarray]:
    """Consecutive-frame errors: ``rotation_deg`` and ``translation_dir_deg`` (S-1,) of pred vs ground truth."""
    if pred_extrinsics.shape != gt_extrinsics.shape or pred_extrinsics.shape[1:] != (3, 4):
        raise ValueError(f"extrinsics must both be (S, 3, 4), got {pred_extrinsics.shape} and {gt_extrinsics.shape}")
    R_p, t_p = extrinsic_motions(pred_extrinsics)
    R_g, t_g = extrinsic_motions(gt_extrinsics)
    return {"rotation_deg": rotation_error_deg(R_p, R_g), "translation_dir_deg": translation_direction_error_deg(t_p, t_g)}


# --------------------------------------------------------------------------- summaries


def summarise(values: np.ndarray | list[float], digits: int = 4) -> dict[str, float | int | None]:
    """``mean``, ``median`` and ``count`` over the finite entries (None when there are none)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": None, "median": None, "count": 0}
    return {"mean": round(float(a.mean()), digits), "median": round(float(np.median(a)), digits), "count": int(a.size)}


# --------------------------------------------------------------------------- one camera against its ground truth


def evaluate_camera(layout: SequenceLayout, camera: str, frames: list[int], out: dict, max_depth: float
                    ) -> tuple[dict[str, list[float]], list[np.ndarray | None]]:
    """Errors of one (sequence, camera) against its ground truth; parts without ground truth are skipped.

    ``out``: the ``run_vggt`` outputs of ``frames`` (``depth`` (S, h, w), ``extrinsic`` (S, 3, 4), ``pre_*``).

    Returns (errors, gt_model): ``errors`` has per-frame ``abs_rel``, ``delta1``, ``scale`` (median scale)
    and per-consecutive-pair ``rotation_deg``, ``translation_dir_deg`` lists (empty when no ground truth);
    ``gt_model`` the ground-truth depth of each frame on the model grid (None without Depth/).
    """
    errors: dict[str, list[float]] = {k: [] for k in ("abs_rel", "delta1", "scale", "rotation_deg",
                                                       "translation_dir_deg")}
    gt_model: list[np.ndarray | None] = [None] * len(frames)
    if (layout.root / "Depth" / camera).is_dir():
        for i, frame in enumerate(frames):
            gt = synthia.read_depth(layout.depth(camera, frame), tuple(out["pre_orig_hw"][i]))
            gt_model[i] = resample_to_model_grid(gt, out["depth"].shape[1:], out["pre_scale_xy"][i],
                                                 out["pre_offset_xy"][i])
            e = depth_errors(out["depth"][i], gt_model[i], max_depth)
            for k in ("abs_rel", "delta1", "scale"):
                errors[k].append(e[k])
    if (layout.root / "CameraParams" / camera).is_dir() and len(frames) > 1:
        gt_extr = np.stack([extrinsic_from_synthia_pose(synthia.read_pose(layout.pose(camera, f))) for f in frames])
        pose = pose_errors(out["extrinsic"].astype(np.float64), gt_extr)
        errors["rotation_deg"] = pose["rotation_deg"].tolist()
        errors["translation_dir_deg"] = pose["translation_dir_deg"].tolist()
    return errors, gt_model


def summarise_errors(errors: dict[str, list[float]]) -> dict:
    """Mean / median / count of each error list (metric names as in metrics.json)."""
    return {"depth_abs_rel": summarise(errors["abs_rel"]), "depth_delta1": summarise(errors["delta1"]),
            "rotation_error_deg": summarise(errors["rotation_deg"]),
            "translation_dir_error_deg": summarise(errors["translation_dir_deg"])}
