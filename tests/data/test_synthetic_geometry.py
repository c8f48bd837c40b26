"""The generated look-alike is geometrically exact: back-projected pixels land on the generating
surfaces (ground plane, object boxes from the ground-truth parquet) within 1 cm, for every camera.

This is the test that catches unit, axis and pose-convention errors in the reader and generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.camera import backproject, cv_to_world, heading_vector, right_vector, synthia_intrinsics
from pipeline.data.synthetic.manoeuvres import LABELS
from pipeline.io import synthia
from pipeline.io.synthia import ALL_CAMERAS, SequenceLayout

TOLERANCE_M = 0.01
GROUND_CLASSES = (3, 4, 6, 12)


def world_points(layout: SequenceLayout, camera: str, frame: int):
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    depth = synthia.read_depth(layout.depth(camera, frame))
    class_id, instance_id = synthia.read_labels(layout.labels(camera, frame))
    pose = synthia.read_pose(layout.pose(camera, frame))
    valid = np.isfinite(depth)
    points = cv_to_world(backproject(depth, intrinsics)[valid], pose)
    return points, class_id[valid], instance_id[valid]


def box_surface_distance(points: np.ndarray, centre, yaw: float, size) -> np.ndarray:
    """Unsigned distance of world points to the surface of an oriented box (yaw about +y)."""
    offset = points - np.asarray(centre)
    local = np.stack([offset @ right_vector(yaw), offset[:, 1], offset @ heading_vector(yaw)], axis=1)
    half = np.asarray(size) / 2
    q = np.abs(local) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(np.max(q, axis=1), 0)
    return np.abs(outside + inside)


def test_intrinsics_match_synthia_at_full_size():
    k = synthia_intrinsics(760, 1280)
    assert (k.focal, k.cx, k.cy) == (pytest.approx(532.740352, abs=1e-6), 640.0, 380.0)


@pytest.mark.parametrize("camera", ALL_CAMERAS)
def test_ground_points_lie_on_the_plane(generated_root, camera):
    layout = synthia.list_sequences(generated_root)[0]
    for frame in layout.frames(camera):
        points, class_id, _ = world_points(layout, camera, frame)
        ground = np.isin(class_id, GROUND_CLASSES)
        assert ground.sum() > 100
        assert np.abs(points[ground, 1]).max() < TOLERANCE_M


def test_single_box_objects_lie_on_their_gt_boxes(generated_root):
    """Buildings and poles are single boxes: every pixel of one lies on its GT box surface."""
    layout = synthia.list_sequences(generated_root)[0]
    objects = pd.read_parquet(layout.root / "groundtruth" / "objects.parquet")
    checked = 0
    for camera in ("Stereo_Left/Omni_F", "Stereo_Right/Omni_B"):
        for frame in layout.frames(camera):
            points, class_id, _ = world_points(layout, camera, frame)
            boxes = objects[(objects.frame == frame) & objects.class_name.isin(["building", "pole"])]
            box_points = np.isin(class_id, (2, 7))
            dist = np.min([box_surface_distance(points[box_points], (r.x, r.y, r.z), r.yaw, (r.size_x, r.size_y, r.size_z))
                           for r in boxes.itertuples()], axis=0)
            assert dist.max() < TOLERANCE_M
            checked += box_points.sum()
    assert checked > 500


def test_instances_lie_in_their_gt_boxes_and_move_with_them(generated_root):
    """Cars and pedestrians: every pixel of instance i is inside (or on) i's GT box of that frame."""
    layout = synthia.list_sequences(generated_root)[0]
    objects = pd.read_parquet(layout.root / "groundtruth" / "objects.parquet")
    camera = "Stereo_Left/Omni_F"
    seen = 0
    for frame in layout.frames(camera):
        points, _, instance_id = world_points(layout, camera, frame)
        for row in objects[(objects.frame == frame) & (objects.instance_id > 0)].itertuples():
            mine = points[instance_id == row.instance_id]
            if len(mine) == 0:
                continue
            offset = mine - np.array([row.x, row.y, row.z])
            local = np.stack([offset @ right_vector(row.yaw), offset[:, 1], offset @ heading_vector(row.yaw)], axis=1)
            assert np.all(np.abs(local) <= np.array([row.size_x, row.size_y, row.size_z]) / 2 + TOLERANCE_M)
            seen += 1
    assert seen >= 3


def test_rig_geometry_stereo_baseline_and_views(generated_root):
    layout = synthia.list_sequences(generated_root)[0]
    left = synthia.read_pose(layout.pose("Stereo_Left/Omni_F", 0))
    right = synthia.read_pose(layout.pose("Stereo_Right/Omni_F", 0))
    assert np.linalg.norm(right[:3, 3] - left[:3, 3]) == pytest.approx(0.8, abs=1e-6)
    # Stereo_Right sits along Stereo_Left's camera +x axis (first column of the pose).
    assert np.dot(right[:3, 3] - left[:3, 3], left[:3, 0]) == pytest.approx(0.8, abs=1e-6)
    back = synthia.read_pose(layout.pose("Stereo_Left/Omni_B", 0))
    assert np.allclose(back[:3, 3], left[:3, 3])
    assert np.dot(back[[0, 2], 2], left[[0, 2], 2]) < 0  # looks the opposite way
    for camera in ALL_CAMERAS:
        assert np.linalg.det(synthia.read_pose(layout.pose(camera, 0))[:3, :3]) == pytest.approx(-1.0, abs=1e-6)


def test_layout_and_ground_truth_files(generated_root):
    layout = synthia.list_sequences(generated_root)[0]
    assert layout.is_generated and layout.name == "SYNTHIA-SEQS-01-GENERATED"
    assert layout.cameras() == list(ALL_CAMERAS)
    for kind in ("RGB", "Depth", "GT/LABELS", "GT/COLOR"):
        assert sorted(p.name for p in (layout.root / kind / "Stereo_Right/Omni_L").iterdir()) == [
            "000000.png", "000001.png", "000002.png"]
    cameras = pd.read_parquet(layout.root / "groundtruth" / "cameras.parquet")
    assert len(cameras) == 3 * 8 and set(cameras.rig_mode) <= {"forward", "turn", "stop"}
    manoeuvres = pd.read_parquet(layout.root / "groundtruth" / "manoeuvres.parquet")
    assert list(manoeuvres.columns) == ["sequence", "frame", "time_s", "manoeuvre", "segment", "speed_mps",
                                        "lane_offset_m"]
    assert manoeuvres.frame.tolist() == [0, 1, 2] and set(manoeuvres.manoeuvre) <= set(LABELS)
    per_frame = cameras.groupby("frame").manoeuvre.agg(set)
    assert all(per_frame[f] == {m} for f, m in zip(manoeuvres.frame, manoeuvres.manoeuvre, strict=True))
    objects = pd.read_parquet(layout.root / "groundtruth" / "objects.parquet")
    static = objects.motion == "static"
    assert (objects.manoeuvre[static] == "none").all() and objects.manoeuvre[~static].isin(LABELS).all()
    pose = np.array(cameras.iloc[0].camera_to_world).reshape(4, 4)
    assert np.allclose(pose, synthia.read_pose(layout.pose(cameras.iloc[0].camera, int(cameras.iloc[0].frame))),
                       atol=1e-6)
    visibility = pd.read_parquet(layout.root / "groundtruth" / "visibility.parquet")
    assert (visibility.pixels > 0).all()
    class_ids = np.unique(synthia.read_labels(layout.labels("Stereo_Left/Omni_F", 0))[0])
    assert set(class_ids.tolist()) <= set(synthia.CLASS_NAMES)


def test_generation_is_deterministic(generated_root, tmp_path):
    from tests.conftest import SMALL
    from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset

    config = GeneratorConfig(**{**SMALL.__dict__, "cameras": ("Stereo_Left/Omni_F",), "frames": 2})
    generate_dataset(config, tmp_path, progress=False)
    name = "SYNTHIA-SEQS-01-GENERATED"
    for kind in ("Depth", "GT/LABELS", "RGB"):
        for frame in (0, 1):
            a = (tmp_path / name / kind / "Stereo_Left/Omni_F" / f"{frame:06d}.png").read_bytes()
            b = (generated_root / name / kind / "Stereo_Left/Omni_F" / f"{frame:06d}.png").read_bytes()
            assert a == b
    for table in ("manoeuvres", "objects", "cameras"):
        a = pd.read_parquet(tmp_path / name / "groundtruth" / f"{table}.parquet")
        b = pd.read_parquet(generated_root / name / "groundtruth" / f"{table}.parquet")
        b = b[b.frame < 2]
        if "camera" in b:
            b = b[b.camera == "Stereo_Left/Omni_F"]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)
