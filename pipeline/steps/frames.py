"""DVC stage ``frames``: every frame's model input, computed once for phases one, two and ``evaluate``.

:func:`run` reads the frame selection (the ``train`` keys of :class:`pipeline.data.frames.FrameSelection`;
dvc.yaml lists exactly those, so other ``train`` keys do not rerun the stage) and :func:`build_frames` writes ``data/frames`` (layout: ``pipeline/data/frames_cache.py``): per sequence the
resized depth, intrinsics, target points with instance and class ids and per-frame k-means anchors
(``pipeline/data/frames.py``), the anchors carried over time (``pipeline/data/carried.py``) and
the ground-truth poses; the manifest names the params it was made with. The slot models' camera is
``data.cameras[0]``, the only one cached.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import parse_section
from pipeline.data.camera import relative_gt_poses
from pipeline.data.carried import carry_anchors
from pipeline.data.frames import FrameSelection, frame_selection, load_frames
from pipeline.data.frames_cache import CachedSequence, sequence_path, write_manifest, write_sequence
from pipeline.io import atomic, synthia
from pipeline.io.synthia import SequenceLayout
from pipeline.params.data import DataParams
from pipeline.params.train import Phase1Params
from pipeline.progress import progress_bar
from pipeline.tracking import stage_run


def gt_poses(raw: Path, sequence: str, camera: str, frames: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """world_from_camera (R (T, 3, 3), t (T, 3)) of ``frames`` relative to the first, or None without pose files."""
    layout = SequenceLayout(raw / sequence)
    files = [layout.pose(camera, f) for f in frames]
    if not all(p.is_file() for p in files):
        return None
    return relative_gt_poses(np.stack([synthia.read_pose(p) for p in files]))


def cache_sequence(raw: Path, clouds: Path, sequence: str, camera: str, selection: FrameSelection) -> CachedSequence:
    """Everything the slot models compute per frame of one sequence before any model runs."""
    records, skipped = load_frames(raw, clouds, [sequence], camera, selection, progress=False)
    records.sort(key=lambda r: r.frame)
    carried = carry_anchors(records, selection) if len(records) >= 2 else None
    poses = gt_poses(raw, sequence, camera, [r.frame for r in records]) if records else None
    r_wc, t_wc = poses if poses is not None else (None, None)
    return CachedSequence(sequence, records, carried, r_wc, t_wc, skipped)


def build_frames(raw: Path, clouds: Path, out: Path, camera: str, selection: FrameSelection,
                 progress: bool = True) -> dict:
    """Write the cache of every sequence under ``raw`` into ``out`` (replaced atomically); return stats."""
    names = [layout.name for layout in synthia.list_sequences(raw)]
    if not names:
        raise FileNotFoundError(f"{raw}: no SYNTHIA-SEQS-NN-WEATHER sequence folders")
    start = time.perf_counter()
    cached = []
    with atomic.atomic_dir(out) as tmp:
        for name in progress_bar(names, desc=f"frames ({selection.points})", unit="seq", disable=not progress):
            seq = cache_sequence(raw, clouds, name, camera, selection)
            if seq.records:
                write_sequence(sequence_path(tmp, name, camera), seq)
            cached.append(seq)
        write_manifest(tmp, camera, selection, cached)
    seconds = time.perf_counter() - start
    frames = sum(len(s.records) for s in cached)
    return {"sequences": len(names), "frames": frames, "skipped_frames": sum(s.skipped for s in cached),
            "points": sum(len(r.points) for s in cached for r in s.records),
            "sequences_with_carried_anchors": sum(s.carried is not None for s in cached),
            "seconds": round(seconds, 2), "frames_per_s": round(frames / max(seconds, 1e-9), 2),
            "bytes": sum(p.stat().st_size for p in out.rglob("*.npz"))}


def run(params: dict[str, Any], raw: Path, clouds: Path, out: Path) -> None:
    """The stage: cache every frame of ``raw`` + ``clouds`` into ``out``; ``params`` is the whole params.yaml."""
    data = parse_section(params, "data", DataParams)
    selection = frame_selection(parse_section(params, "train", Phase1Params))
    with stage_run("frames") as stage:
        stage.log_params({"train": dataclasses.asdict(selection), "camera": data.cameras[0]})
        stage.log_metrics(build_frames(raw, clouds, out, data.cameras[0], selection))
