"""The drives stage's data: layout, labels as planned, balanced splits, determinism, and the features built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data import drives as layout
from pipeline.data import features_cache
from pipeline.data.synthetic.generate import rig_plan
from pipeline.data.synthetic.laq_drives import CAMERA, LAQ_SEED_BASE
from pipeline.data.synthetic.manoeuvres import LABELS
from pipeline.data.synthetic.scene import build_scene
from pipeline.io import pointcloud_table
from pipeline.params.drives import DrivesParams
from pipeline.steps import concerto
from pipeline.steps.drives import build_drives, drive_splits
from pipeline.train.laq import load_laq_data
from tests.conftest import repo_params

SMALL = {"seed": 3, "sequences": 5, "frames": 40, "height": 16, "width": 24, "max_points": 64, "far_m": 60.0,
         "normal_neighbours": 8, "val_sequences": 2, "test_sequences": 2, "extra_val_sequences": 0,
         "pixel_sampling": "per_frame"}


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("drives") / "drives"
    metrics = build_drives(out, DrivesParams(**SMALL), workers=2, progress=False)
    return out, metrics


def test_layout_shapes_and_labels(drives):
    root, metrics = drives
    manifest = json.loads((root / layout.POINTS / "manifest.json").read_text())
    names = [layout.drive_name(i) for i in range(5)]
    assert manifest["coordinates"] == "camera" and manifest["input"] == "drives" and manifest["cameras"] == [CAMERA]
    assert manifest["splits"] == {"train": names[:1], "val": names[1:3], "test": names[3:]}
    truth = layout.read_groundtruth(root)
    assert sorted(truth) == names and metrics["frames"] == 5 * 40
    for i, name in enumerate(names):
        poses, labels = truth[name]
        assert poses.shape == (40, 4, 4) and labels.shape == (40,)
        scene = build_scene(LAQ_SEED_BASE + 3 * 100_000 + i, 40, **rig_plan(3, i))
        assert list(labels) == list(scene.rig_states()[2])  # the planned manoeuvre of every frame
        table = pointcloud_table.read_partition(root / layout.POINTS, name, CAMERA)
        counts = table.groupby("frame").size()
        assert list(counts.index) == list(range(40)) and counts.max() <= 64 and counts.min() > 20
        normals = table[["nx", "ny", "nz"]].to_numpy()
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
        points = table[["x", "y", "z"]].to_numpy()
        assert ((normals * points).sum(1) <= 1e-4).all()  # normals face the camera at the origin
        np.testing.assert_allclose(table["depth"].to_numpy(), points[:, 2], atol=1e-3)  # planar depth = z


def test_extra_validation_drives_come_after_and_leave_train_and_test_alone():
    names = [layout.drive_name(i) for i in range(12)]
    plain = drive_splits(names[:9], DrivesParams(**{**SMALL, "sequences": 9}))
    grown = DrivesParams(**{**SMALL, "sequences": 9, "extra_val_sequences": 3})
    assert grown.rendered == 12
    splits = drive_splits(names, grown)
    assert plain == {"train": names[:5], "val": names[5:7], "test": names[7:9]}
    assert splits == {"train": plain["train"], "val": plain["val"] + names[9:], "test": plain["test"]}


def test_held_out_splits_hold_every_manoeuvre(drives):
    root, _ = drives
    truth = layout.read_groundtruth(root)
    labels = {name: v[1] for name, v in truth.items()}
    splits = json.loads((root / layout.POINTS / "manifest.json").read_text())["splits"]
    for split in ("val", "test"):
        assert layout.missing_labels(labels, splits[split]) == []
        assert set(np.concatenate([labels[n] for n in splits[split]])) == set(LABELS)
    assert layout.missing_labels({"a": np.array(["stop", "left"])}, ["a"]) == [
        label for label in LABELS if label not in ("stop", "left")]


def test_one_held_out_drive_misses_manoeuvres_and_stops(tmp_path):
    with pytest.raises(ValueError, match=r"drives\.val_sequences' = 1: the val drives hold no"):
        build_drives(tmp_path / "d", DrivesParams(**{**SMALL, "sequences": 4, "frames": 40, "val_sequences": 1}),
                     workers=1, progress=False)
    assert not (tmp_path / "d").exists()


def test_deterministic(drives, tmp_path):
    root, _ = drives
    again = tmp_path / "drives"
    build_drives(again, DrivesParams(**SMALL), workers=1, progress=False)  # other worker count, same data
    pd.testing.assert_frame_equal(pd.read_parquet(root / layout.GROUNDTRUTH), pd.read_parquet(again / layout.GROUNDTRUTH))
    for i in range(5):
        name = layout.drive_name(i)
        pd.testing.assert_frame_equal(pointcloud_table.read_partition(root / layout.POINTS, name, CAMERA),
                                      pointcloud_table.read_partition(again / layout.POINTS, name, CAMERA))


def test_params_leave_a_training_drive():
    with pytest.raises(ValueError, match="leave no training drive"):
        DrivesParams(**{**SMALL, "val_sequences": 3, "test_sequences": 2})


def test_features_of_drives_keep_the_split_and_do_not_depend_on_workers(drives, tmp_path):
    root, _ = drives
    p = repo_params("concerto", points_from="drives", grid_size=0.1, bev_cells_x=4, bev_cells_z=3, bev_width=16.0,
                    bev_depth=30.0)
    model = concerto.load_model(p, torch.device("cpu"))
    one, two = tmp_path / "f1", tmp_path / "f2"
    concerto.build_features(root / layout.POINTS, one, (CAMERA,), p, model, torch.device("cpu"), progress=False)
    concerto.build_features(root / layout.POINTS, two, (CAMERA,), p, model, torch.device("cpu"), progress=False,
                            workers=2)
    manifest = features_cache.load_manifest(one)
    assert manifest == features_cache.load_manifest(two) and manifest["input"] == "drives"
    for i in range(5):
        a = features_cache.load_features(one, layout.drive_name(i), CAMERA)
        b = features_cache.load_features(two, layout.drive_name(i), CAMERA)
        for key in features_cache.ARRAYS:
            assert np.array_equal(a[key], b[key]), key
    data = load_laq_data(one, frame_offset=5, val_sequences=0, test_sequences=0)  # the manifest's split wins
    assert data.splits == manifest["splits"] and len(data.test) == 2 * 35 and len(data.val) == 2 * 35
    assert len(data.train) == 35 and len(data.held_out) == 4 * 35
