"""Ground-truth objects of generated sequences, in a frame's OpenCV camera coordinates."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from pipeline.data.camera import world_to_cv
from pipeline.io import synthia
from pipeline.io.synthia import THING_CLASSES, SequenceLayout


@lru_cache(maxsize=32)
def _tables(sequence_root: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    gt = Path(sequence_root) / "groundtruth"
    if not (gt / "objects.parquet").is_file():
        return None
    return pd.read_parquet(gt / "objects.parquet"), pd.read_parquet(gt / "visibility.parquet")


def visible_things(layout: SequenceLayout, camera: str, frame: int, min_pixels: int = 50):
    """(centres (G, 3) camera frame metres, object ids (G,), instance ids (G,)) of visible thing
    objects with at least ``min_pixels`` pixels in ``camera``; None without ground truth."""
    tables = _tables(str(layout.root))
    if tables is None:
        return None
    objects, visibility = tables
    seen = visibility[(visibility.frame == frame) & (visibility.camera == camera) & (visibility.pixels >= min_pixels)]
    rows = objects[(objects.frame == frame) & objects.object_id.isin(seen.object_id) & objects.class_id.isin(THING_CLASSES)]
    pose = synthia.read_pose(layout.pose(camera, frame))
    centres = world_to_cv(rows[["x", "y", "z"]].to_numpy(np.float64), pose)
    return centres, rows.object_id.to_numpy(), rows.instance_id.to_numpy()


def matched_position_error(predicted: np.ndarray, truth: np.ndarray) -> float | None:
    """Mean distance (m) between GT object centres and slot centres after Hungarian matching."""
    if len(truth) == 0 or len(predicted) == 0:
        return None
    cost = np.linalg.norm(truth[:, None, :] - predicted[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())
