"""DVC stage ``pointclouds``: every depth frame -> a labelled point cloud with normals, one parquet partition
per (sequence, camera) (layout: ``pipeline/io/pointcloud_table.py``) plus ``manifest.json``.

:func:`run` parses the ``data`` and ``pointcloud`` sections, builds the clouds with :func:`build_pointclouds`
(per-frame work: ``pipeline/data/pointcloud.py``) and logs params and metrics to MLflow.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import heap
from pipeline.config import parse_section
from pipeline.data.pointcloud import frame_points
from pipeline.io import atomic, pointcloud_table, synthia
from pipeline.io.synthia import SequenceLayout, SynthiaFormatError
from pipeline.params.data import DataParams
from pipeline.params.pointcloud import PointcloudParams
from pipeline.progress import progress_bar
from pipeline.tracking import stage_run


@dataclass(frozen=True)
class FrameTask:
    root: Path
    sequence_index: int
    camera: str
    frame: int
    intrinsics: synthia.Intrinsics
    expect_hw: tuple[int, int]
    params: PointcloudParams


def init_frame_worker() -> None:
    """Pool initializer of the frame workers (``pointclouds``, ``drives``, the benchmark): one OpenMP thread
    (open3d's normals; workers <= cores) and a padded glibc heap, so each frame's same-sized buffers reuse pages
    (:func:`pipeline.heap.pad_heap`)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    heap.pad_heap()


def _run(task: FrameTask) -> dict:
    rng = np.random.default_rng([task.params.seed, task.sequence_index, task.frame])
    return frame_points(SequenceLayout(task.root), task.camera, task.frame, task.intrinsics, task.expect_hw,
                        task.params, rng)


def checked_intrinsics(layout: SequenceLayout, height: int, width: int) -> synthia.Intrinsics:
    """Intrinsics of a sequence, checked against its image size (principal point inside the image)."""
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    if not (0 < intrinsics.cx < width and 0 < intrinsics.cy < height):
        raise SynthiaFormatError(f"{layout.intrinsics}: principal point ({intrinsics.cx}, {intrinsics.cy}) "
                                 f"lies outside the {width}x{height} images")
    return intrinsics


def plan_tasks(raw_root: Path, cameras: tuple[str, ...], params: PointcloudParams) -> list[FrameTask]:
    """One task per (sequence, camera, frame), with the expected image size taken from frame 0."""
    sequences = synthia.list_sequences(raw_root)
    if not sequences:
        raise FileNotFoundError(f"{raw_root}: no SYNTHIA-SEQS-NN-WEATHER sequence folders")
    tasks = []
    for index, layout in enumerate(sequences):
        for camera in cameras:
            frames = layout.frames(camera)
            if not frames:
                raise SynthiaFormatError(f"{layout.root / 'Depth' / camera}: no frames")
            height, width = synthia.read_depth_cm(layout.depth(camera, frames[0])).shape
            intrinsics = checked_intrinsics(layout, height, width)
            tasks += [FrameTask(layout.root, index, camera, f, intrinsics, (height, width), params) for f in frames]
    return tasks


def build_pointclouds(raw_root: Path, out_root: Path, cameras: tuple[str, ...], params: PointcloudParams,
                      workers: int = 2, progress: bool = True) -> dict:
    """Write all partitions and ``manifest.json`` into ``out_root`` (replaced atomically); return stats."""
    tasks = plan_tasks(raw_root, cameras, params)
    start = time.perf_counter()
    partitions: list[dict] = []
    with atomic.atomic_dir(out_root) as tmp:
        bar = progress_bar(total=len(tasks), desc="depth -> points", unit="frame", disable=not progress)
        if workers <= 1:
            heap.pad_heap()  # not init_frame_worker: the thread setting would leak into this process's children
        pool = mp.get_context("fork").Pool(workers, initializer=init_frame_worker) if workers > 1 else None
        results = pool.imap(_run, tasks, chunksize=2) if pool else map(_run, tasks)
        try:  # a partition's frames are consecutive tasks: each is written while the workers go on with the next,
            # and one partition at a time is held in memory
            for key, group in itertools.groupby(zip(tasks, results, strict=True),
                                                key=lambda pair: (pair[0].root.name, pair[0].camera)):
                if any((p["sequence"], p["camera"]) == key for p in partitions):
                    raise RuntimeError(f"frames of {key} are not consecutive tasks")  # would overwrite a partition
                columns = []
                for _, frame_columns in group:
                    columns.append(frame_columns)
                    bar.update()
                partitions.append(pointcloud_table.write_frames(tmp, *key, columns))
        finally:
            if pool:
                pool.terminate()
            bar.close()
        manifest = {"coordinates": params.coordinates, "max_points": params.max_points,
                    "sampling": params.sampling, "far_m": params.far_m,
                    "partitions": sorted(partitions, key=lambda p: (p["sequence"], p["camera"]))}
        atomic.write_json(tmp / "manifest.json", manifest)
    seconds = time.perf_counter() - start
    total_points = sum(p["points"] for p in manifest["partitions"])
    return {"frames": len(tasks), "points": total_points, "seconds": round(seconds, 2),
            "frames_per_s": round(len(tasks) / seconds, 2),
            "bytes": sum(p.stat().st_size for p in atomic.current_path(out_root).rglob("*.parquet"))}


def run(params: dict[str, Any], raw: Path, out: Path, workers: int = 2) -> None:
    """The stage: clouds of every frame of ``raw`` into ``out``; ``params`` is the whole params.yaml."""
    data = parse_section(params, "data", DataParams)
    cloud = parse_section(params, "pointcloud", PointcloudParams)
    with atomic.transaction(), stage_run("pointclouds") as stage:  # data/pointclouds and reports change together
        stage.log_params({"pointcloud": params["pointcloud"], "data.cameras": list(data.cameras)})
        stage.log_metrics(build_pointclouds(raw, out, data.cameras, cloud, workers=workers))
