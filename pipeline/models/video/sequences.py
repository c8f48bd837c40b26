"""Sequences of usable frames with anchors carried over time (phase two's and its evaluation's input).

:func:`load_sequences` loads each sequence's frames (:func:`pipeline.data.frames.load_frames`), re-runs
k-means with anchors carried from frame to frame (:func:`pipeline.models.video.tracking.track_anchors`,
slot k = the same cluster in every frame) and attaches the ground-truth ``world_from_camera`` poses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.camera import relative_gt_poses
from pipeline.data.frames import FrameRecord, FrameSelection, load_frames
from pipeline.io import synthia
from pipeline.io.synthia import SequenceLayout
from pipeline.models.video.tracking import track_anchors


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


def load_sequences(raw: Path, clouds: Path, names: list[str], camera: str, selection: FrameSelection,
                   progress: bool = False) -> list[SequenceFrames]:
    """Frames of ``names`` with carried anchors; sequences with fewer than 2 usable frames are dropped."""
    out = []
    for name in names:
        records, _ = load_frames(raw, clouds, [name], camera, selection, progress=progress)
        if len(records) < 2:
            continue
        records.sort(key=lambda r: r.frame)
        times = np.array([r.frame / synthia.FRAME_RATE_HZ for r in records])
        anchors = track_anchors([r.points for r in records], times, selection.slots, selection.seed)
        records = [dataclasses.replace(r, anchors=a) for r, a in zip(records, anchors, strict=True)]
        layout = SequenceLayout(raw / name)
        pose_files = [layout.pose(camera, r.frame) for r in records]
        r_wc = t_wc = None
        if all(p.is_file() for p in pose_files):
            r_wc, t_wc = relative_gt_poses(np.stack([synthia.read_pose(p) for p in pose_files]))
        out.append(SequenceFrames(name, records, times, r_wc, t_wc))
    return out
