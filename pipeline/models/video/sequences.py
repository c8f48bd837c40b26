"""Sequences of usable frames with anchors carried over time (phase two's and its evaluation's input).

The ``frames`` stage stores each sequence's frames with anchors carried from frame to frame
(``pipeline/data/carried.py``, slot k = the same cluster in every frame) and the ground-truth
``world_from_camera`` poses (``pipeline/data/frames_cache.py``); :func:`load_sequences` reads them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.frames import FrameRecord, FrameSelection, frame_times
from pipeline.data.frames_cache import CachedSequence, load_cached
from pipeline.data.odometry import depth_odometry


@dataclass
class SequenceFrames:
    """The usable frames of one sequence with carried anchors, times and ground-truth poses.

    ``records`` hold carried anchors (slot k = the same cluster in every frame); ``time`` (T,)
    seconds; ``r_wc``/``t_wc`` (T, 3, 3)/(T, 3) ``world_from_camera`` relative to the sequence's first
    usable frame (OpenCV axes), or None when the sequence has no pose files.
    """

    name: str
    records: list[FrameRecord]
    time: np.ndarray
    r_wc: np.ndarray | None
    t_wc: np.ndarray | None


def with_carried(seq: CachedSequence) -> SequenceFrames:
    """Phase two's view of a cached sequence (which has carried anchors): records with them, times, poses."""
    records = [dataclasses.replace(r, anchors=a) for r, a in zip(seq.records, seq.carried, strict=True)]
    return SequenceFrames(seq.name, records, frame_times(records), seq.r_wc, seq.t_wc)


def load_sequences(frames_root: Path, names: list[str], camera: str, selection: FrameSelection) -> list[SequenceFrames]:
    """Cached frames of ``names`` with carried anchors; sequences with fewer than 2 usable frames are dropped."""
    return [with_carried(s) for s in load_cached(frames_root, names, camera, selection) if s.carried is not None]


def with_odometry(seq: SequenceFrames) -> SequenceFrames:
    """The sequence with depth-odometry poses (``pipeline/data/odometry.py``) in place of the ground truth:
    phase two's world frame for ``video.camera = self_supervised`` (no ground-truth pose is read in training)."""
    r_wc, t_wc = depth_odometry(seq.records)
    return dataclasses.replace(seq, r_wc=r_wc, t_wc=t_wc)
