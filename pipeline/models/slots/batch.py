"""Frames -> the tensor batch the slot model reads, and the model's forward pass on it.

:func:`make_batch` stacks :class:`pipeline.data.frames.FrameRecord` frames: depth (N, H, W) metres,
``focal_cx_cy`` (N, 3) pixels, target ``points`` (N, P, 3) metres in the OpenCV camera frame with a
``mask`` (N, P) and k-means ``label`` (N, P), and the anchor fields (``ANCHOR_KEYS``, K per frame).
Used by training (phases one and two) and by the evaluation alike.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.frames import FrameRecord

PAD_M = 1.0e4
ANCHOR_KEYS = ("centre", "radius", "spread", "axes", "weight")


def make_batch(records: list[FrameRecord], points_per_frame: int, rng: np.random.Generator | None,
               device: torch.device) -> dict[str, torch.Tensor]:
    """Stack frames into tensors; draws ``points_per_frame`` points per frame (all, padded, if rng is None)."""
    n = points_per_frame if rng is not None else max(len(r.points) for r in records)
    points = np.full((len(records), n, 3), PAD_M, np.float32)  # padding far away: never a nearest point
    mask = np.zeros((len(records), n), bool)
    label = np.full((len(records), n), -1, np.int64)
    for i, r in enumerate(records):
        if rng is None or len(r.points) <= n:
            idx = np.arange(min(len(r.points), n))
        else:
            idx = rng.choice(len(r.points), n, replace=False)
        points[i, : len(idx)] = r.points[idx]
        mask[i, : len(idx)] = True
        label[i, : len(idx)] = r.anchors.label[idx]
    batch = {
        "depth": torch.from_numpy(np.stack([r.depth for r in records])),
        "focal_cx_cy": torch.tensor([[r.intrinsics.focal, r.intrinsics.cx, r.intrinsics.cy] for r in records],
                                    dtype=torch.float32),
        "points": torch.from_numpy(points), "mask": torch.from_numpy(mask), "label": torch.from_numpy(label),
    }
    for key in ANCHOR_KEYS:
        batch[key] = torch.from_numpy(np.stack([getattr(r.anchors, key) for r in records]).astype(np.float32))
    return {k: v.to(device) for k, v in batch.items()}


def anchors_of(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ANCHOR_KEYS}


def predict(model, batch: dict[str, torch.Tensor]):
    """Forward pass of a (possibly DDP-wrapped) slot model on a batch from :func:`make_batch`."""
    return model(batch["depth"], batch["focal_cx_cy"], anchors_of(batch), batch["points"], batch["label"])
