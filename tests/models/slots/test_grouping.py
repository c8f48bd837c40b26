"""Cluster merging: pieces of one object share a slot, separate objects and object rows do not."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.frames import anchors_from_clusters
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.grouping import cluster_gaps, merge_clusters


def box(centre, half, n=400, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)) * np.array(half) + np.array(centre)


def test_cluster_gaps_match_brute_force():
    rng = np.random.default_rng(0)
    points, label = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    gaps = cluster_gaps(points, label, 3)
    for i in range(3):
        for j in range(3):
            if i != j:
                d = np.linalg.norm(points[label == i][:, None] - points[label == j][None], axis=-1)
                assert np.isclose(gaps[i, j], d.min())


def test_split_car_is_merged_and_the_pedestrian_stays_apart():
    car = box([0, 0, 10], [0.9, 0.7, 2.2])
    pedestrian = box([4, -0.2, 10], [0.25, 0.9, 0.25], n=100, seed=1)
    points = np.concatenate([car, pedestrian])
    label = np.concatenate([(car[:, 2] > 10).astype(int), np.full(100, 2)])  # the car cut in two
    centres = np.stack([points[label == i].mean(0) for i in range(3)])
    merged, parent = merge_clusters(points, anchors_from_clusters(points, label, centres), gap_m=0.3, max_semi_axis_m=3.0)
    assert parent.tolist() == [0, 0, 2]
    assert np.all(merged.label[:len(car)] == 0) and np.all(merged.label[len(car):] == 2)
    assert np.allclose(merged.centre[1], car.mean(0)) and merged.radius[1] == merged.radius[0]
    # object-sized cap: the same two halves stay apart when a semi-axis of 1 m is the limit
    _, parent = merge_clusters(points, anchors_from_clusters(points, label, centres), gap_m=0.3, max_semi_axis_m=1.0)
    assert parent.tolist() == [0, 1, 2]


def test_alias_slots_share_the_parent_mesh():
    cfg = SlotModelConfig(slots=3, prototypes=2, ico_level=1, input_height=32, input_width=48, channels=(8, 8, 8, 8),
                          hidden=16)
    model = SlotSceneModel(cfg)
    anchors = {"centre": torch.tensor([[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [3.0, 0.0, 9.0]]]),
               "radius": torch.ones(1, 3), "spread": torch.ones(1, 3, 3), "axes": torch.eye(3).expand(1, 3, 3, 3),
               "weight": torch.ones(1, 3), "parent": torch.tensor([[0, 0, 2]])}
    params = model.decode(torch.randn(1, 3, cfg.slot_dim), anchors)
    assert torch.equal(params.verts[0, 1], params.verts[0, 0])
    assert not torch.equal(params.verts[0, 2], params.verts[0, 0])


def test_merged_anchors_are_cached_per_anchor_set_not_per_frame():
    """One frame, two anchor sets (phase one's per-frame k-means, phase two's carried): each gets its own merge."""
    import dataclasses

    from pipeline.data.frames import FrameRecord
    from pipeline.io.synthia import Intrinsics
    from pipeline.models.slots.batch import slot_anchors, slot_groups

    car = box([0, 0, 10], [0.9, 0.7, 2.2])
    pedestrian = box([4, -0.2, 10], [0.25, 0.9, 0.25], n=100, seed=1)
    points = np.concatenate([car, pedestrian])
    halves = np.concatenate([(car[:, 2] > 10).astype(int), np.full(100, 2)])  # the car cut in two: merged
    whole = np.concatenate([np.zeros(len(car), int), np.full(100, 1)])  # car, pedestrian ...
    whole[:10] = 2  # ... and a third cluster inside the car, merged into it
    records = []
    for label in (halves, whole):
        centres = np.stack([points[label == i].mean(0) for i in range(3)])
        records.append(FrameRecord("S", "cam", 0, np.zeros((2, 2)), Intrinsics(1.0, 0.0, 0.0, 0.0), points,
                                   np.zeros(len(points), int), np.zeros(len(points), int),
                                   anchors_from_clusters(points, label, centres)))
    parents = [slot_anchors(r, (0.3, 3.0, True))[1].tolist() for r in records]
    assert parents == [[0, 0, 2], [0, 1, 0]]
    again = dataclasses.replace(records[0])
    assert slot_anchors(again, (0.3, 3.0, True))[1].tolist() == [0, 0, 2]
    # parts: every slot keeps its own k-means cluster; the merge only says which slots form one object
    anchors, parent = slot_anchors(records[0], (0.3, 3.0, False))
    assert anchors is records[0].anchors and parent.tolist() == [0, 1, 2]
    assert [slot_groups(r, (0.3, 3.0, False)).tolist() for r in records] == [[0, 0, 2], [0, 1, 0]]
    assert slot_groups(records[0], (0.0, 3.0, False)).tolist() == [0, 1, 2]
