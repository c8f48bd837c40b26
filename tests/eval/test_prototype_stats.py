"""Prototype statistics: blend mass per distinct slot (a merged group once), class table and NMI."""

from __future__ import annotations

import numpy as np

from pipeline.data.frames import FrameRecord, anchors_from_clusters
from pipeline.eval.prototype_stats import class_prototype_stats, distinct_slots
from pipeline.geometry.icosphere import ico_sphere
from pipeline.io import synthia

CAR, PEDESTRIAN = 8, 10


def frame_with_split_car() -> tuple[FrameRecord, np.ndarray, np.ndarray]:
    """One frame: a car that k-means cut into clusters 0 and 1 (merged into group 0) and a pedestrian
    (cluster 2); each cluster's mesh is a 0.5 m sphere at the cluster centre (the car's two clusters carry the
    group's one mesh, as shared alias slots do)."""
    rng = np.random.default_rng(0)
    car = rng.uniform(-1, 1, (300, 3)) * [0.9, 0.7, 2.0] + [0, 0, 10]
    pedestrian = rng.uniform(-1, 1, (60, 3)) * [0.25, 0.9, 0.25] + [4, 0, 10]
    points = np.concatenate([car, pedestrian])
    label = np.concatenate([(car[:, 2] > 10).astype(int), np.full(len(pedestrian), 2)])
    centres = np.stack([points[label == i].mean(0) for i in range(3)])
    record = FrameRecord("S", "Stereo_Left/Omni_F", 0, np.zeros((4, 4), np.float32),
                         synthia.Intrinsics(focal=100.0, cx=2.0, cy=2.0, baseline=0.8), points,
                         instance=np.concatenate([np.ones(len(car), int), np.full(len(pedestrian), 2)]),
                         class_id=np.concatenate([np.full(len(car), CAR), np.full(len(pedestrian), PEDESTRIAN)]),
                         anchors=anchors_from_clusters(points, label, centres))
    sphere = ico_sphere(2)[0].numpy() * 0.5
    car_centre = car.mean(0)
    verts = np.stack([sphere + car_centre, sphere + car_centre, sphere + pedestrian.mean(0)])
    weights = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])  # the alias copies its parent's blend
    return record, verts, weights


def test_merged_group_counts_once_in_the_blend_mass():
    record, verts, weights = frame_with_split_car()
    faces = ico_sphere(2)[1]
    groups = np.array([0, 0, 2])
    slots = [distinct_slots(groups, shared=True)]
    stats = class_prototype_stats([record], [(verts, verts.mean(1), weights)], faces, min_points=20, slots=slots)
    assert np.allclose(stats["prototype_usage"], [(0.9 + 0.2) / 2, (0.1 + 0.8) / 2], atol=1e-4)
    assert np.allclose(stats["prototype_usage_per_cluster"], weights.mean(0), atol=1e-4)
    assert stats["prototypes_over_10pct"] == 2
    # the car's points go to the first of its identical meshes: one car slot, one pedestrian slot, NMI 1
    assert stats["class_prototype_table"] == {"car": [1, 0], "pedestrian": [0, 1]}
    assert stats["matched_slots"] == 2 and np.isclose(stats["class_prototype_nmi"], 1.0)
    # without slot indices every cluster counts, as before
    legacy = class_prototype_stats([record], [(verts, verts.mean(1), weights)], faces, min_points=20)
    assert np.allclose(legacy["prototype_usage"], weights.mean(0), atol=1e-4)


def test_distinct_slots():
    groups = np.array([0, 0, 2, 3, 3, 3])
    assert distinct_slots(groups, shared=True).tolist() == [0, 2, 3]
    assert distinct_slots(groups, shared=False).tolist() == [0, 1, 2, 3, 4, 5]
