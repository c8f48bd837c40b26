"""Write synthetic sequences in the exact SYNTHIA-SEQS layout, plus exact ground truth.

Besides the SYNTHIA files (see :mod:`pipeline.io.synthia`), each generated sequence holds:

- ``GENERATED_OFFLINE.txt`` and ``README.txt`` at the root (real readers only glob subfolders);
- ``groundtruth/objects.parquet``: one row per (frame, object) with columns ``sequence, frame,
  time_s, object_id, instance_id, class_id, class_name, motion, x, y, z`` (world centre of the
  object's bounding box, metres), ``yaw`` (rad about world +y; 0 faces +z, pi/2 faces +x),
  ``size_x, size_y, size_z`` (full extents: width, height, length, metres);
- ``groundtruth/objects.parquet`` also has ``manoeuvre``: the object's planned manoeuvre at that frame
  (a label of :data:`pipeline.data.synthetic.manoeuvres.LABELS`; ``none`` for static objects);
- ``groundtruth/cameras.parquet``: one row per (frame, camera) with ``sequence, frame, time_s,
  camera, manoeuvre`` (the rig's, see below), ``rig_mode`` (coarse: forward / turn / stop),
  ``x, y, z, yaw, pitch`` and ``camera_to_world`` (16 floats, row-major, the same matrix as the pose
  file: OpenGL camera axes);
- ``groundtruth/manoeuvres.parquet``: one row per frame with ``sequence, frame, time_s, manoeuvre``
  (str, one of ``straight, left, right, stop, accelerate, decelerate, lane_change_left,
  lane_change_right``: the segment of the rig's planned schedule containing the frame time; left/right
  as seen by the driver), ``segment`` (int, index of that segment in the schedule), ``speed_mps``
  (planned longitudinal speed, m/s) and ``lane_offset_m`` (rig's offset right of the road centre, m).
  A frame pair's label is :func:`pipeline.data.synthetic.manoeuvres.pair_manoeuvre`;
- ``groundtruth/visibility.parquet``: ``sequence, frame, camera, object_id, pixels``.

The rig's drive alternates between the two halves of its tour from one sequence to the next (see
:func:`pipeline.data.synthetic.manoeuvres.plan_rig_drive`): at 8 s per sequence each sequence holds
about half of the labels and any two consecutive sequences hold all of them.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.camera import SYNTHIA_BASELINE_M, look_pose, right_vector, synthia_intrinsics
from pipeline.data.synthetic.manoeuvres import SUBSTEPS
from pipeline.data.synthetic.render import FrameRenderer, one_blas_thread
from pipeline.data.synthetic.scene import Scene, build_scene
from pipeline.io import atomic, synthia
from pipeline.io.synthia import ALL_CAMERAS, FRAME_RATE_HZ, SequenceLayout
from pipeline.progress import progress_bar

RIG_MODE = {"left": "turn", "right": "turn", "stop": "stop"}  # coarse rig_mode column; the rest is "forward"
VIEW_YAW = {"Omni_F": 0.0, "Omni_R": math.pi / 2, "Omni_B": math.pi, "Omni_L": 3 * math.pi / 2}


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: ``sequences`` x ``frames`` frames at ``height`` x ``width`` for ``cameras``."""

    seed: int
    sequences: int
    frames: int
    height: int
    width: int
    cameras: tuple[str, ...]
    workers: int = 2

    def validate(self) -> None:
        for camera in self.cameras:
            if camera not in ALL_CAMERAS:
                raise ValueError(f"unknown camera {camera!r}; expected some of {list(ALL_CAMERAS)}")
        if self.sequences < 1 or self.frames < 1:
            raise ValueError("sequences and frames must be >= 1")
        if self.height < 16 or self.width < 16 or self.height % 2 or self.width % 2:
            raise ValueError(f"image size {self.width}x{self.height} must be even and at least 16")


def sequence_name(index: int) -> str:
    """Generated sequences are named SYNTHIA-SEQS-<NN>-GENERATED (NN from 01)."""
    return f"SYNTHIA-SEQS-{index + 1:02d}-GENERATED"


def sequence_seed(config: GeneratorConfig, index: int) -> int:
    return config.seed * 1000 + index


def camera_pose(scene: Scene, rig_xz: np.ndarray, rig_yaw: float, camera: str) -> np.ndarray:
    """Camera-to-world pose of ``camera`` ("<rig>/<view>") for a rig state."""
    rig, view = camera.split("/")
    position = np.array([rig_xz[0], scene.rig_height, rig_xz[1]])
    if rig == "Stereo_Right":
        position = position + SYNTHIA_BASELINE_M * right_vector(rig_yaw)
    return look_pose(position, rig_yaw + VIEW_YAW[view], scene.rig_pitch)


def rig_plan(seed: int, index: int) -> dict[str, int]:
    """Tour phase and first-turn direction of sequence ``index``: both alternate from one sequence to the
    next (the first turn's sign also flips with the parity of the generator ``seed``), so any two
    consecutive sequences of half a tour (the default 8 s) together hold every manoeuvre label. The first
    sequence starts with the tour's second half (already moving)."""
    return {"phase": (index + 1) % 2, "turn": 1 if (index + seed) % 2 == 0 else -1}


_SCENES: dict[tuple[int, int, int], Scene] = {}


def _scene(config: GeneratorConfig, index: int) -> Scene:
    """The scene of sequence ``index``, built once per process; keyed by what builds it (generator seed, index
    and frame count), so a second dataset with another config in the same process never reuses a stale scene."""
    key = (config.seed, index, config.frames)
    if key not in _SCENES:
        _SCENES[key] = build_scene(sequence_seed(config, index), config.frames, **rig_plan(config.seed, index))
    return _SCENES[key]


def render_frame(config: GeneratorConfig, out_root: Path, index: int, frame: int) -> dict[str, list[dict]]:
    """Render and write every configured camera of one frame; return its ground-truth rows."""
    scene = _scene(config, index)
    name = sequence_name(index)
    layout = SequenceLayout(out_root / name)
    intrinsics = synthia_intrinsics(config.height, config.width)
    t = frame / FRAME_RATE_HZ
    positions, yaws, modes = scene.rig_states()
    renderer = FrameRenderer(scene, t)
    rows: dict[str, list[dict]] = {"cameras": [], "objects": [], "visibility": [], "manoeuvres": []}
    rig_index = int(round(t * FRAME_RATE_HZ * SUBSTEPS))
    rows["manoeuvres"].append({
        "sequence": name, "frame": frame, "time_s": t, "manoeuvre": str(modes[frame]),
        "segment": int(scene.rig.segment[rig_index]), "speed_mps": float(scene.rig.speed[rig_index]),
        "lane_offset_m": float(scene.rig_lane + scene.rig.lane[rig_index]),
    })
    for cam_index, camera in enumerate(config.cameras):
        pose = camera_pose(scene, positions[frame], float(yaws[frame]), camera)
        rng = np.random.default_rng([config.seed, index, frame, cam_index])
        view = renderer.render(pose, intrinsics, config.height, config.width, rng)
        synthia.write_depth(layout.depth(camera, frame), view.depth)
        synthia.write_labels(layout.labels(camera, frame), view.class_id, view.instance_id)
        synthia.write_rgb(layout.rgb(camera, frame), view.rgb)
        synthia.write_color_labels(layout.color_labels(camera, frame), view.class_id)
        synthia.write_pose(layout.pose(camera, frame), pose)
        _, yaw_view = camera.split("/")
        rows["cameras"].append({
            "sequence": name, "frame": frame, "time_s": t, "camera": camera, "manoeuvre": str(modes[frame]),
            "rig_mode": RIG_MODE.get(str(modes[frame]), "forward"),
            "x": pose[0, 3], "y": pose[1, 3], "z": pose[2, 3], "yaw": float(yaws[frame]) + VIEW_YAW[yaw_view],
            "pitch": scene.rig_pitch, "camera_to_world": pose.flatten().tolist(),
        })
        ids, counts = np.unique(view.object_id[view.object_id > 0], return_counts=True)
        rows["visibility"] += [{"sequence": name, "frame": frame, "camera": camera, "object_id": int(i), "pixels": int(c)}
                               for i, c in zip(ids, counts, strict=True)]
    for obj in scene.objects:
        centre, yaw = obj.pose(t)
        size = obj.size
        rows["objects"].append({
            "sequence": name, "frame": frame, "time_s": t, "object_id": obj.object_id, "instance_id": obj.instance_id,
            "class_id": obj.class_id, "class_name": obj.class_name, "motion": obj.motion.kind,
            "manoeuvre": obj.motion.label(t),
            "x": centre[0], "y": centre[1], "z": centre[2], "yaw": yaw,
            "size_x": size[0], "size_y": size[1], "size_z": size[2],
        })
    return rows


def _write_sequence_files(config: GeneratorConfig, out_root: Path, index: int) -> None:
    layout = SequenceLayout(out_root / sequence_name(index))
    layout.root.mkdir(parents=True, exist_ok=True)
    synthia.write_intrinsics(layout.intrinsics, synthia_intrinsics(config.height, config.width))
    atomic.write_text(layout.root / synthia.OFFLINE_MARKER,
                      "Generated offline by protoscene (pipeline/data/synthetic); not SYNTHIA data.\n"
                      f"seed={sequence_seed(config, index)} frames={config.frames} size={config.width}x{config.height}\n")
    atomic.write_text(layout.root / "README.txt",
                      "Synthetic look-alike of a SYNTHIA-SEQS sequence (same layout and encodings).\n"
                      "Ground truth for evaluation: groundtruth/*.parquet (schema in pipeline/data/synthetic/generate.py).\n")


def _task(args) -> tuple[int, dict[str, list[dict]]]:
    config, out_root, index, frame = args
    return index, render_frame(config, out_root, index, frame)


def generate_dataset(config: GeneratorConfig, out_root: Path, progress: bool = True) -> list[Path]:
    """Generate all sequences under ``out_root`` (which must exist); returns the sequence folders."""
    config.validate()
    for index in range(config.sequences):
        _write_sequence_files(config, out_root, index)
    tasks = [(config, out_root, i, f) for i in range(config.sequences) for f in range(config.frames)]
    collected: dict[int, dict[str, list[dict]]] = {i: {"cameras": [], "objects": [], "visibility": [], "manoeuvres": []}
                                                     for i in range(config.sequences)}
    bar = progress_bar(total=len(tasks), desc="render frames", unit="frame", disable=not progress)
    with one_blas_thread():
        if config.workers > 1:
            with mp.get_context("fork").Pool(config.workers) as pool:
                for index, rows in pool.imap_unordered(_task, tasks, chunksize=1):
                    for key, value in rows.items():
                        collected[index][key] += value
                    bar.update()
        else:
            for task in tasks:
                index, rows = _task(task)
                for key, value in rows.items():
                    collected[index][key] += value
                bar.update()
    bar.close()
    folders = []
    for index, tables in collected.items():
        gt = out_root / sequence_name(index) / "groundtruth"
        gt.mkdir(exist_ok=True)
        for key, rows in tables.items():
            frame = pd.DataFrame(rows).sort_values([c for c in ("frame", "camera", "object_id") if c in rows[0]])
            atomic.write_with(gt / f"{key}.parquet", lambda tmp, f=frame: f.to_parquet(tmp, index=False))
        folders.append(out_root / sequence_name(index))
    return folders
