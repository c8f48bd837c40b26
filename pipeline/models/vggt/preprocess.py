"""VGGT input pre-processing, matching the reference ``load_and_preprocess_images`` (crop / pad modes).

Per frame (RGB uint8; RGBA is composited on white first):
- ``crop``: width -> ``target`` (518), height -> round(H * target / W / 14) * 14, PIL bicubic resize; if the
  height then exceeds ``target`` the centre ``target`` rows are kept.
- ``pad``: the longer side -> ``target``, the other rounded to a multiple of 14 the same way, PIL bicubic
  resize, then white (1.0) padding, centred, to ``target`` x ``target``.
- Frames that end up with different sizes are padded (white, centred) to the largest H and W.
Output values are float32 in [0, 1] (no mean/std normalisation; the model does that).

The returned ``PreprocessRecord`` stores, per frame, the affine map between original pixels and model-input
pixels in the continuous "pixel corners at integers" convention: ``x_model = sx * x_orig + ox`` and
``y_model = sy * y_orig + oy`` (ox/oy hold padding minus cropping). It maps intrinsics back to the
original images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("crop", "pad")


@dataclass(frozen=True)
class PreprocessRecord:
    """How each frame was resized, cropped and padded. Arrays have one row per frame.

    orig_hw (S, 2) original (H, W); resized_hw (S, 2) size after the resize; scale_xy (S, 2) = resized /
    original along x and y; offset_xy (S, 2) = pad - crop in model pixels; model_hw = (H, W) of the model
    input (same for all frames); mode = "crop" or "pad".
    """

    orig_hw: np.ndarray
    resized_hw: np.ndarray
    scale_xy: np.ndarray
    offset_xy: np.ndarray
    model_hw: tuple[int, int]
    mode: str

    def original_to_model(self, xy: np.ndarray, frame: int) -> np.ndarray:
        """Continuous pixel coordinates (..., 2) of original frame ``frame`` -> model-input coordinates."""
        return np.asarray(xy, dtype=np.float64) * self.scale_xy[frame] + self.offset_xy[frame]

    def model_to_original(self, xy: np.ndarray, frame: int) -> np.ndarray:
        """Continuous model-input pixel coordinates (..., 2) -> coordinates in original frame ``frame``."""
        return (np.asarray(xy, dtype=np.float64) - self.offset_xy[frame]) / self.scale_xy[frame]

    def intrinsics_to_original(self, K_model: np.ndarray) -> np.ndarray:
        """Intrinsics (S, 3, 3) in model-input pixels -> (S, 3, 3) in each frame's original pixels.

        K_orig = A^-1 K_model with A = [[sx, 0, ox], [0, sy, oy], [0, 0, 1]] (the original->model map).
        """
        K = np.array(K_model, dtype=np.float64, copy=True)
        sx, sy = self.scale_xy[:, 0], self.scale_xy[:, 1]
        ox, oy = self.offset_xy[:, 0], self.offset_xy[:, 1]
        K[:, 0, :] = (K[:, 0, :] - ox[:, None] * K[:, 2, :]) / sx[:, None]
        K[:, 1, :] = (K[:, 1, :] - oy[:, None] * K[:, 2, :]) / sy[:, None]
        return K

    def as_arrays(self, prefix: str = "pre_") -> dict[str, np.ndarray]:
        """Flat numpy dict for npz/parquet writers."""
        return {
            f"{prefix}orig_hw": self.orig_hw, f"{prefix}resized_hw": self.resized_hw,
            f"{prefix}scale_xy": self.scale_xy, f"{prefix}offset_xy": self.offset_xy,
            f"{prefix}model_hw": np.asarray(self.model_hw, dtype=np.int64), f"{prefix}mode": np.asarray(self.mode),
        }


def _round14(x: float, multiple: int) -> int:
    return int(round(x / multiple)) * multiple  # Python round (half to even), as the reference


def _resized_size(h: int, w: int, mode: str, target: int, multiple: int) -> tuple[int, int]:
    if mode == "pad" and h > w:
        return target, _round14(w * (target / h), multiple)
    return _round14(h * (target / w), multiple), target


def _as_rgb(frame: np.ndarray):
    from PIL import Image

    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"each frame must be uint8 (H, W, 3|4) RGB(A), got {frame.dtype} {frame.shape}")
    img = Image.fromarray(np.ascontiguousarray(frame))
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return img.convert("RGB")


def _pad_centered(img: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
    dh, dw = H - img.shape[1], W - img.shape[2]
    top, left = dh // 2, dw // 2
    if dh > 0 or dw > 0:
        img = F.pad(img, (left, dw - left, top, dh - top), mode="constant", value=1.0)
    return img, left, top


def preprocess_frames(frames, mode: str = "crop", target: int = 518, multiple: int = 14
                      ) -> tuple[torch.Tensor, PreprocessRecord]:
    """RGB(A) uint8 frames, an array (S, H, W, 3|4) or a list of (H_i, W_i, 3|4) arrays ->
    (images float32 (S, 3, H, W) in [0, 1], record)."""
    from PIL import Image

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if target % multiple:
        raise ValueError(f"target {target} must be a multiple of {multiple}")
    frames = list(frames)
    if not frames:
        raise ValueError("at least one frame is required")
    imgs, rows = [], []
    for frame in frames:
        img = _as_rgb(np.asarray(frame))
        w, h = img.size
        nh, nw = _resized_size(h, w, mode, target, multiple)
        t = torch.from_numpy(np.asarray(img.resize((nw, nh), Image.Resampling.BICUBIC), dtype=np.uint8).copy())
        t = t.permute(2, 0, 1).float() / 255.0
        ox = oy = 0
        if mode == "crop" and nh > target:
            top = (nh - target) // 2
            t, oy = t[:, top:top + target], -top
        elif mode == "pad":
            t, left, top = _pad_centered(t, target, target)
            ox, oy = left, top
        imgs.append(t)
        rows.append((h, w, nh, nw, nw / w, nh / h, ox, oy))
    H = max(t.shape[1] for t in imgs)
    W = max(t.shape[2] for t in imgs)
    out = []
    for i, t in enumerate(imgs):
        t, left, top = _pad_centered(t, H, W)
        r = rows[i]
        rows[i] = r[:6] + (r[6] + left, r[7] + top)
        out.append(t)
    a = np.asarray(rows, dtype=np.float64)
    record = PreprocessRecord(
        orig_hw=a[:, 0:2].astype(np.int64), resized_hw=a[:, 2:4].astype(np.int64), scale_xy=a[:, 4:6],
        offset_xy=a[:, 6:8], model_hw=(H, W), mode=mode)
    return torch.stack(out), record
