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


def beats_graph_is_acyclic(drive, valid: list[np.ndarray], width: int) -> bool:
    """Whether one order of the pixels explains every frame's pick: an edge p -> q for each pixel p picked in a frame
    where pixel q was valid and not picked; a single priority exists iff that graph has no cycle (every strongly
    connected component is one pixel)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    src, dst = [], []
    for picked_uv, valid_flat in zip(drive.pixels, valid, strict=True):
        picked = picked_uv[:, 1].astype(np.int64) * width + picked_uv[:, 0]
        left = np.setdiff1d(valid_flat, picked)
        src.append(np.repeat(picked, len(left)))
        dst.append(np.tile(left, len(picked)))
    src, dst = np.concatenate(src), np.concatenate(dst)
    n = int(max(src.max(), dst.max())) + 1
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    components, _ = connected_components(graph, directed=True, connection="strong")
    return components == n


def test_per_drive_pixel_sampling_is_one_priority_over_the_valid_pixels():
    kw = dict(seed=3, sequences=1, frames=5, height=24, width=40, far_m=60.0)
    everything = render_laq_drives(**kw, max_points=24 * 40)[0]  # every valid pixel
    valid = [np.sort(uv[:, 1].astype(np.int64) * 40 + uv[:, 0]) for uv in everything.pixels]
    fixed = render_laq_drives(**kw, max_points=150, pixel_sampling="per_drive")[0]
    fresh = render_laq_drives(**kw, max_points=150)[0]
    for drive in (fixed, fresh):
        for uv, valid_flat, points in zip(drive.pixels, valid, drive.points, strict=True):
            flat = uv[:, 1].astype(np.int64) * 40 + uv[:, 0]
            assert len(flat) == min(150, len(valid_flat)) == len(points) and np.isin(flat, valid_flat).all()
    assert beats_graph_is_acyclic(fixed, valid, 40)
    assert not beats_graph_is_acyclic(fresh, valid, 40)  # a new subset every frame contradicts any one order
