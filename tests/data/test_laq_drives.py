"""Cheap LAQ drives: camera-frame points consistent with the poses, labels as planned, deterministic."""

from __future__ import annotations

import numpy as np

from pipeline.data.camera import cv_to_world
from pipeline.data.synthetic.generate import rig_plan
from pipeline.data.synthetic.laq_drives import LAQ_SEED_BASE, render_laq_drives
from pipeline.data.synthetic.manoeuvres import LABELS
from pipeline.data.synthetic.scene import build_scene

GROUND = (3, 4, 6, 12)


def test_points_poses_and_labels():
    drives = render_laq_drives(seed=2, sequences=2, frames=6, height=32, width=48, max_points=300, far_m=60.0)
    assert len(drives) == 2
    for index, drive in enumerate(drives):
        assert drive.camera_to_world.shape == (6, 4, 4) and len(drive.points) == 6
        assert set(drive.manoeuvre) <= set(LABELS)
        scene = build_scene(LAQ_SEED_BASE + 200_000 + index, 6, **rig_plan(2, index))
        assert list(drive.manoeuvre) == list(scene.rig_states()[2])
        for points, class_id, pose in zip(drive.points, drive.class_id, drive.camera_to_world, strict=True):
            assert 100 < len(points) <= 300 and points.dtype == np.float32
            assert (points[:, 2] > 0).all() and (points[:, 2] <= 60.0 + 1e-3).all()  # planar depth range
            world = cv_to_world(points.astype(np.float64), pose)
            ground = np.isin(class_id, GROUND)
            assert ground.sum() > 20 and np.abs(world[ground, 1]).max() < 0.01  # ground lies on y = 0


def test_deterministic():
    a = render_laq_drives(seed=1, sequences=1, frames=2, height=32, width=48, max_points=200)[0]
    b = render_laq_drives(seed=1, sequences=1, frames=2, height=32, width=48, max_points=200)[0]
    for x, y in zip(a.points + a.class_id, b.points + b.class_id, strict=True):
        assert x.tobytes() == y.tobytes()
    assert a.camera_to_world.tobytes() == b.camera_to_world.tobytes()
