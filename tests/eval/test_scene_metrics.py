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
