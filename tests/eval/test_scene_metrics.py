"""Evaluation's nearest-surface query against the exact torch point-to-triangle distance."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.geometry.icosphere import ico_sphere
from pipeline.geometry.mesh import point_mesh_sq_dist


def test_nearest_slot_matches_the_exact_torch_distance_and_aliases_count_as_their_first_copy():
    unit, faces = ico_sphere(2)
    rng = np.random.default_rng(0)
    verts = np.stack([unit.numpy() * r + c for r, c in ((1.0, [0, 0, 10]), (0.5, [2.5, 0, 9]), (0.7, [-2, 1, 12]))])
    verts = np.concatenate([verts, verts[:1]]).astype(np.float32)  # slot 3 is an alias of slot 0
    points = rng.normal([0, 0, 10], 2.0, (500, 3)).astype(np.float32)
    distance, slot = nearest_slot(points, verts, faces)
    sq, ref_slot, _ = point_mesh_sq_dist(torch.from_numpy(points)[None], torch.from_numpy(verts)[None], faces, exact=True)
    assert np.allclose(distance, np.sqrt(sq[0].numpy()), atol=1e-5)
    ref = ref_slot[0].numpy()
    assert np.array_equal(slot, np.where(ref == 3, 0, ref)) and 3 not in slot  # the reference splits the tie


def test_part_slots_of_one_object_segment_it_as_one():
    """Two part slots (the halves of one box-shaped object) and a third slot on another object: by slot the
    object is cut in two (FG-ARI < 1); with the group, each point's owner is its part's object (FG-ARI = 1);
    the geometry metrics do not depend on the grouping."""
    from pipeline.eval.scene_metrics import frame_metrics
    from pipeline.io.synthia import Intrinsics

    unit, faces = ico_sphere(2)
    rng = np.random.default_rng(1)
    front = rng.uniform([-0.5, -0.5, 9.0], [0.5, 0.5, 10.0], (200, 3))
    back = rng.uniform([-0.5, -0.5, 10.0], [0.5, 0.5, 11.0], (200, 3))
    other = rng.uniform([3.0, -0.5, 9.5], [4.0, 0.5, 10.5], (200, 3))
    points = np.concatenate([front, back, other]).astype(np.float32)
    instance = np.repeat([1, 1, 2], 200)
    verts = np.stack([unit.numpy() * 0.6 + c for c in ([0, 0, 9.5], [0, 0, 10.5], [3.5, 0, 10])]).astype(np.float32)
    depth, intrinsics = np.full((60, 80), 9.0, np.float32), Intrinsics(40.0, 40.0, 30.0, 0.0)
    by_slot = frame_metrics(points, instance, verts, faces, depth, intrinsics)
    by_object = frame_metrics(points, instance, verts, faces, depth, intrinsics, group=np.array([0, 0, 2]))
    assert by_slot["fg_ari"] < 0.7 and by_object["fg_ari"] == 1.0
    assert by_slot["slots_used"] == 3 and by_object["slots_used"] == 2
    assert all(by_slot[k] == by_object[k] for k in ("acc_m", "comp_all_m", "chamfer_l1_m", "fsv"))
