"""DVC stage ``drives``: many short, small drives with manoeuvres for the concerto -> laq branch.

:func:`build_drives` renders ``drives.sequences`` drives of ``drives.frames`` frames at ``drives.height`` x
``drives.width`` (``pipeline/data/synthetic/laq_drives.py``: street scenes of the synthetic generator, seen by
``Stereo_Left/Omni_F``, at most ``drives.max_points`` points per frame within ``drives.far_m``), estimates
normals (k-NN plane fit, towards the camera) and writes ``data/drives`` atomically (layout:
``pipeline/data/drives.py``): point-cloud parquet in camera coordinates, the ground truth (poses, manoeuvre per
frame) and the split (of the first ``sequences`` drives, the last ``test_sequences`` are the held-out test set,
the ``val_sequences`` before them validation; ``extra_val_sequences`` more drives rendered after them join
validation, so that validation grows while the training and test drives stay the same). Every held-out split
must hold every manoeuvre, else the stage stops naming the param.
These drives feed only LAQ (``concerto.points_from: drives``); phases one and two keep ``data/raw``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import parse_section
from pipeline.data import drives as layout
from pipeline.data.pointcloud import estimate_normals
from pipeline.data.splits import split_sequences
from pipeline.data.synthetic.generate import rig_plan
from pipeline.data.synthetic.laq_drives import CAMERA, LAQ_SEED_BASE, render_laq_drive
from pipeline.data.synthetic.render import one_blas_thread
from pipeline.io import atomic, pointcloud_table
from pipeline.io.synthia import FRAME_RATE_HZ
from pipeline.params.drives import DrivesParams
from pipeline.progress import progress_bar
from pipeline.steps.pointclouds import init_frame_worker
from pipeline.tracking import stage_run


SAMPLING_NOTE = {"per_frame": "random", "per_drive": "random, one pixel priority per drive"}


def drive_columns(index: int, p: DrivesParams) -> tuple[list[dict[str, np.ndarray]], pd.DataFrame]:
    """Render drive ``index`` (scene seed ``LAQ_SEED_BASE + seed * 100_000 + index``): the point-cloud columns of
    each frame (``pipeline/io/pointcloud_table.py``) and its ground-truth rows (``pipeline/data/drives.py``)."""
    drive = render_laq_drive(LAQ_SEED_BASE + p.seed * 100_000 + index, p.frames, p.height, p.width, p.max_points,
                             p.far_m, pixel_sampling=p.pixel_sampling, **rig_plan(p.seed, index))
    frames = []
    for f, points in enumerate(drive.points):
        normals = estimate_normals(points, p.normal_neighbours, np.zeros(3))
        u, v = drive.pixels[f][:, 0], drive.pixels[f][:, 1]
        frames.append(pointcloud_table.frame_columns(f, u, v, points, drive.depth[f], normals, drive.rgb[f],
                                                     drive.class_id[f], drive.instance_id[f]))
    return frames, layout.groundtruth_rows(layout.drive_name(index), drive.camera_to_world, drive.manoeuvre,
                                           FRAME_RATE_HZ)


def _render(task: tuple[int, DrivesParams]):
    return drive_columns(*task)


def drive_splits(names: list[str], p: DrivesParams) -> dict[str, list[str]]:
    """Train / val / test drive names: :func:`split_sequences` of the first ``p.sequences`` names (sorted), then
    the ``p.extra_val_sequences`` names after them appended to validation."""
    splits = split_sequences(names[:p.sequences], p.val_sequences, p.test_sequences)
    splits["val"] = splits["val"] + sorted(names[p.sequences:p.sequences + p.extra_val_sequences])
    return splits


def build_drives(out_root: Path, p: DrivesParams, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Render every drive into ``out_root`` (replaced atomically); return the stage's metrics.

    Raises ValueError (naming ``drives.val_sequences`` / ``drives.test_sequences``) when a held-out split misses a
    manoeuvre: validation and test drives must hold every label so the code metrics cover every action.
    """
    names = [layout.drive_name(i) for i in range(p.rendered)]
    splits = drive_splits(names, p)
    start = time.perf_counter()
    tasks = [(i, p) for i in range(p.rendered)]
    truth, partitions = [], []
    with atomic.atomic_dir(out_root, keep=(".gitignore",)) as tmp, one_blas_thread():  # DVC's list of outs
        bar = progress_bar(total=len(tasks), desc="drives", unit="drive", disable=not progress)
        pool = mp.get_context("fork").Pool(workers, initializer=init_frame_worker) if workers > 1 else None
        try:
            for name, (frames, rows) in zip(names, pool.imap(_render, tasks) if pool else map(_render, tasks),
                                            strict=True):
                partitions.append(pointcloud_table.write_frames(tmp / layout.POINTS, name, CAMERA, frames))
                truth.append(rows)
                bar.update()
        finally:
            if pool:
                pool.terminate()
            bar.close()
        table = pd.concat(truth, ignore_index=True)
        labels = {n: rows["manoeuvre"].to_numpy(dtype=str) for n, rows in zip(names, truth, strict=True)}
        for split, key in (("val", "val_sequences"), ("test", "test_sequences")):
            missing = layout.missing_labels(labels, splits[split])
            if missing:
                raise ValueError(f"params.yaml: 'drives.{key}' = {len(splits[split])}: the {split} drives hold no "
                                 f"{', '.join(missing)} frame (use at least 2 consecutive drives of >= 40 frames)")
        table.to_parquet(tmp / layout.GROUNDTRUTH, index=False)
        atomic.write_json(tmp / layout.POINTS / "manifest.json", {
            "coordinates": "camera", "input": "drives", "units": "metres", "cameras": [CAMERA], "splits": splits,
            "max_points": p.max_points, "sampling": SAMPLING_NOTE[p.pixel_sampling], "far_m": p.far_m,
            "image_size": [p.height, p.width],
            "partitions": partitions})
    seconds = time.perf_counter() - start
    counts = table["manoeuvre"].value_counts()
    return {"drives": p.rendered, "frames": int(len(table)), "points": int(sum(q["points"] for q in partitions)),
            "splits": {k: len(v) for k, v in splits.items()}, "seconds": round(seconds, 2),
            "frames_per_s": round(len(table) / seconds, 2),
            "manoeuvre_frames": {label: int(counts.get(label, 0)) for label in sorted(counts.index)}}


def run(params: dict[str, Any], out: Path, workers: int = 2, progress: bool = True) -> None:
    """The stage: ``drives`` params -> ``out`` (``data/drives``) and ``reports/drives/metrics.json``."""
    p = parse_section(params, "drives", DrivesParams)
    with atomic.transaction(), stage_run("drives") as stage:
        stage.log_params({"drives": params["drives"]})
        stage.log_metrics(build_drives(out, p, workers=workers, progress=progress))
