"""Frames -> the tensor batch the slot model reads, and the model's forward pass on it.

:func:`make_batch` stacks :class:`pipeline.data.frames.FrameRecord` frames: depth (N, H, W) metres,
``focal_cx_cy`` (N, 3) pixels, target ``points`` (N, P, 3) metres in the OpenCV camera frame with a
``mask`` (N, P) and k-means ``label`` (N, P), and the anchor fields (``ANCHOR_KEYS``, K per frame;
clusters of one object merged into one slot when the model asks for it, :func:`slot_anchors`). Which
slots form one object: :func:`slot_groups`.
Used by training (phases one and two) and by the evaluation alike.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from pipeline.data.frames import Anchors, FrameRecord
from pipeline.distributed import unwrap
from pipeline.models.slots.grouping import merge_clusters

PAD_M = 1.0e4
ANCHOR_KEYS = ("centre", "radius", "spread", "axes", "weight", "parent")
Merge = tuple[float, float, bool]  # (gap m, max semi-axis m, shared): a slot model's merge setting, model_merge
_MERGED: dict[tuple, tuple[Anchors, np.ndarray]] = {}


def _merged(record: FrameRecord, merge: Merge) -> tuple[Anchors, np.ndarray]:
    """:func:`pipeline.models.slots.grouping.merge_clusters` of the record's anchors, once per record."""
    # the anchors are part of the key: the same frame has per-frame (phase one) and carried (phase two) anchors
    anchors = hashlib.blake2b(record.anchors.label.tobytes() + record.anchors.centre.tobytes(), digest_size=16).digest()
    key = (record.sequence, record.camera, record.frame, len(record.points), float(record.points[:, 2].sum()), anchors,
           merge[:2])
    if key not in _MERGED:
        _MERGED[key] = merge_clusters(record.points, record.anchors, *merge[:2])
    return _MERGED[key]


def slot_anchors(record: FrameRecord, merge: Merge) -> tuple[Anchors, np.ndarray]:
    """The anchors the slots are decoded from and the slot ``parent`` (K,) whose vector each slot takes.

    ``merge`` = (gap m, max semi-axis m, shared), gap 0 = off. Shared: the merged anchors, an alias slot's
    parent is its group's first slot (:mod:`pipeline.models.slots.grouping`). Otherwise (parts, or no
    merge): the k-means anchors, every slot its own parent."""
    if merge[0] <= 0 or not merge[2]:
        return record.anchors, np.arange(len(record.anchors.centre))
    return _merged(record, merge)


def slot_groups(record: FrameRecord, merge: Merge) -> np.ndarray:
    """(K,) the object of each slot, as the index of its group's first slot (``k`` where nothing merges):
    points owned by any slot of a group belong to one object (segmentation, FG-ARI)."""
    if merge[0] <= 0:
        return np.arange(len(record.anchors.centre))
    return _merged(record, merge)[1]


def model_merge(model: torch.nn.Module) -> Merge:
    """The cluster-merge setting of a (possibly DDP-wrapped) slot model, for :func:`make_batch`."""
    config = unwrap(model).config
    return (config.merge_gap_m, config.merge_max_semi_axis_m, config.merge_geometry == "shared")


def make_batch(records: list[FrameRecord], points_per_frame: int, rng: np.random.Generator | None,
               device: torch.device, merge: Merge) -> dict[str, torch.Tensor]:
    """Stack frames into tensors; draws ``points_per_frame`` points per frame (all, padded, if rng is None).

    Anchors, point labels and the slot ``parent`` (N, K) come from :func:`slot_anchors` with ``merge``, the
    slot model's :func:`model_merge` (no default: a model fed other anchors than it was trained on gives other
    slots; ``(0, 0, False)`` keeps the k-means anchors, every slot its own parent)."""
    n = points_per_frame if rng is not None else max(len(r.points) for r in records)
    points = np.full((len(records), n, 3), PAD_M, np.float32)  # padding far away: never a nearest point
    mask = np.zeros((len(records), n), bool)
    label = np.full((len(records), n), -1, np.int64)
    anchors = [slot_anchors(r, merge) for r in records]
    for i, (r, (a, _)) in enumerate(zip(records, anchors, strict=True)):
        if rng is None or len(r.points) <= n:
            idx = np.arange(min(len(r.points), n))
        else:
            idx = rng.choice(len(r.points), n, replace=False)
        points[i, : len(idx)] = r.points[idx]
        mask[i, : len(idx)] = True
        label[i, : len(idx)] = a.label[idx]
    batch = {
        "depth": torch.from_numpy(np.stack([r.depth for r in records])),
        "focal_cx_cy": torch.tensor([[r.intrinsics.focal, r.intrinsics.cx, r.intrinsics.cy] for r in records],
                                    dtype=torch.float32),
        "points": torch.from_numpy(points), "mask": torch.from_numpy(mask), "label": torch.from_numpy(label),
        "parent": torch.from_numpy(np.stack([parent for _, parent in anchors])),
    }
    for key in ANCHOR_KEYS[:-1]:
        batch[key] = torch.from_numpy(np.stack([getattr(a, key) for a, _ in anchors]).astype(np.float32))
    return {k: v.to(device) for k, v in batch.items()}


def anchors_of(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ANCHOR_KEYS}


def predict(model, batch: dict[str, torch.Tensor]):
    """Forward pass of a (possibly DDP-wrapped) slot model on a batch from :func:`make_batch`."""
    return model(batch["depth"], batch["focal_cx_cy"], anchors_of(batch), batch["points"], batch["label"])
