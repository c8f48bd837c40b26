"""Cheap drives for latent-action training: camera-frame point clouds, poses and manoeuvre labels
rendered straight to memory (no PNG encoding, no SYNTHIA layout), at a small image size.

Each sequence is a :func:`~pipeline.data.synthetic.scene.build_scene` street scene seen by
``Stereo_Left/Omni_F``, exactly as the full generator would render it at that size; sequences alternate
tour phase and first-turn direction like :func:`~pipeline.data.synthetic.generate.rig_plan`.
A :class:`LaqDrive` holds, for ``T`` frames at 5 FPS:

- ``points``: list of ``T`` arrays (N_t, 3) float32, OpenCV camera coordinates (x right, y down,
  z forward, metres), at most ``max_points`` valid pixels per frame (planar depth <= ``far_m``),
  drawn uniformly at random: anew in every frame (``pixel_sampling = "per_frame"``) or by one random priority of the
  pixels per drive (``"per_drive"``: the valid pixels of lowest priority, a fixed sparse raster like a sensor's, so a
  static view gives the same points in every frame); ``class_id`` / ``instance_id``: matching (N_t,) uint16
  SYNTHIA labels; ``pixels``: matching (N_t, 2) int16 pixel (u column, v row); ``depth``: (N_t,) float32 planar
  depth (m); ``rgb``: (N_t, 3) uint8 rendered colour;
- ``camera_to_world``: (T, 4, 4) float64 SYNTHIA poses (OpenGL camera axes, as the pose files);
- ``manoeuvre``: (T,) str labels of :data:`~pipeline.data.synthetic.manoeuvres.LABELS`
  (pairs: :func:`~pipeline.data.synthetic.manoeuvres.pair_manoeuvre`).

The ``drives`` stage (``pipeline/steps/drives.py``) writes them as point-cloud parquet for the
``concerto`` -> ``laq`` branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.camera import backproject, synthia_intrinsics
from pipeline.data.synthetic.generate import camera_pose, rig_plan
from pipeline.data.synthetic.render import FrameRenderer
from pipeline.data.synthetic.scene import build_scene
from pipeline.io.synthia import FRAME_RATE_HZ

CAMERA = "Stereo_Left/Omni_F"


@dataclass
class LaqDrive:
    """One cheap sequence (see the module docstring for shapes and conventions)."""

    seed: int
    points: list[np.ndarray]
    class_id: list[np.ndarray]
    instance_id: list[np.ndarray]
    camera_to_world: np.ndarray
    manoeuvre: np.ndarray
    pixels: list[np.ndarray]
    depth: list[np.ndarray]
    rgb: list[np.ndarray]


def render_laq_drive(seed: int, frames: int, height: int, width: int, max_points: int, far_m: float,
                     phase: int = 0, turn: int = 0, pixel_sampling: str = "per_frame") -> LaqDrive:
    """Render one sequence of ``frames`` frames at ``height`` x ``width`` (scene and subsampling seeded by ``seed``;
    ``pixel_sampling``: see the module docstring)."""
    if pixel_sampling not in PIXEL_SAMPLING:
        raise ValueError(f"pixel_sampling = {pixel_sampling!r} must be one of {PIXEL_SAMPLING}")
    priority = np.random.default_rng([seed, PRIORITY_STREAM]).random((height, width)) \
        if pixel_sampling == "per_drive" else None
    scene = build_scene(seed, frames, phase=phase, turn=turn)
    positions, yaws, labels = scene.rig_states()
    intrinsics = synthia_intrinsics(height, width)
    poses, points, class_ids, instance_ids, pixels, depths, colours = [], [], [], [], [], [], []
    for frame in range(frames):
        pose = camera_pose(scene, positions[frame], float(yaws[frame]), CAMERA)
        rng = np.random.default_rng([seed, frame])
        view = FrameRenderer(scene, frame / FRAME_RATE_HZ).render(pose, intrinsics, height, width, rng)
        valid = np.isfinite(view.depth) & (view.depth <= far_m)
        v, u = np.nonzero(valid)
        if len(v) > max_points:
            if priority is None:
                keep = rng.choice(len(v), max_points, replace=False)
            else:
                keep = np.argpartition(priority[v, u], max_points - 1)[:max_points]
            keep = np.sort(keep)
            v, u = v[keep], u[keep]
        points.append(backproject(np.where(valid, view.depth, 0.0), intrinsics)[v, u].astype(np.float32))
        class_ids.append(view.class_id[v, u])
        instance_ids.append(view.instance_id[v, u])
        pixels.append(np.stack([u, v], 1).astype(np.int16))
        depths.append(view.depth[v, u].astype(np.float32))
        colours.append(view.rgb[v, u])
        poses.append(pose)
    return LaqDrive(seed, points, class_ids, instance_ids, np.array(poses), np.asarray(labels, dtype=str),
                    pixels, depths, colours)


PIXEL_SAMPLING = ("per_frame", "per_drive")
PRIORITY_STREAM = 2**32 - 1  # second seed word of the per-drive pixel priority (frames use 0 ... T - 1)
LAQ_SEED_BASE = 1_000_000  # above the full generator's scene seeds (data.seed * 1000 + index, data.seed < 1000)


def render_laq_drives(seed: int, sequences: int, frames: int, height: int = 48, width: int = 80,
                      max_points: int = 1024, far_m: float = 80.0, pixel_sampling: str = "per_frame") -> list[LaqDrive]:
    """``sequences`` cheap drives; sequence ``i`` has scene seed ``LAQ_SEED_BASE + seed * 100_000 + i``
    (never one of the full generator's scenes) and alternates phase and first turn as the generator does."""
    return [render_laq_drive(LAQ_SEED_BASE + seed * 100_000 + i, frames, height, width, max_points, far_m,
                             pixel_sampling=pixel_sampling, **rig_plan(seed, i)) for i in range(sequences)]
