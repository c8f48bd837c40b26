"""Phase-two identity metrics on constructed cases: clip vs per-frame FG-ARI, identity switches."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from pipeline.eval.phase2_eval import clip_fg_ari, fg_ari, identity_switches


def two_objects(n: int = 30) -> np.ndarray:
    return np.concatenate([np.zeros(5, int), np.full(n, 7), np.full(n, 9)])  # 5 background points, ids 7 and 9


def test_fg_ari_ignores_background_and_matches_sklearn():
    inst = two_objects()
    slot = np.concatenate([np.full(5, 3), np.zeros(30, int), np.ones(30, int)])
    slot[10] = 1  # one foreground error
    fg = inst > 0
    assert fg_ari(inst, slot) == pytest.approx(adjusted_rand_score(inst[fg], slot[fg]), abs=1e-12)
    assert fg_ari(np.array([0, 4, 4]), np.array([0, 1, 2])) is None  # fewer than 2 instances: not scored


def test_identity_swap_keeps_per_frame_ari_but_lowers_clip_ari():
    inst = two_objects()
    frame_a = np.concatenate([np.full(5, 2), np.zeros(30, int), np.ones(30, int)])
    frame_b = np.concatenate([np.full(5, 2), np.ones(30, int), np.zeros(30, int)])  # slots swapped
    assert fg_ari(inst, frame_a) == 1.0 and fg_ari(inst, frame_b) == 1.0
    swapped = clip_fg_ari([inst, inst], [frame_a, frame_b])
    kept = clip_fg_ari([inst, inst], [frame_a, frame_a])
    assert kept == 1.0 and swapped < 0.5
    # the same value as one ARI over the stacked frames
    both = np.concatenate([inst, inst])
    fg = both > 0
    assert swapped == pytest.approx(adjusted_rand_score(both[fg], np.concatenate([frame_a, frame_b])[fg]), abs=1e-12)


def test_identity_switch_counting():
    inst = two_objects()
    a = np.concatenate([np.full(5, 5), np.zeros(30, int), np.ones(30, int)])  # 7 -> slot 0, 9 -> slot 1
    b = np.concatenate([np.full(5, 5), np.full(30, 2), np.ones(30, int)])  # 7 moves to slot 2: 1 switch
    c = np.concatenate([np.full(5, 5), np.ones(30, int), np.full(30, 2)])  # both move: 2 switches
    assert identity_switches([inst] * 3, [a, a, a]) == (0, 2)
    assert identity_switches([inst] * 3, [a, b, b]) == (1, 2)
    assert identity_switches([inst] * 3, [a, b, c]) == (3, 2)
    # an instance absent in the middle frame keeps its last match: no switch when it returns on it
    gone = np.concatenate([np.zeros(5, int), np.full(30, 0), np.full(30, 9)])
    assert identity_switches([inst, gone, inst], [a, a, a]) == (0, 2)
    # small instances (< min_points) are not tracked
    assert identity_switches([inst], [a], min_points=31) == (0, 0)


def test_point_owners_give_an_alias_mesh_no_point():
    """Slots 0 and 2 carry the same mesh (2 is an alias of 0, a merged group): every point near it goes to slot 0,
    the points near the other sphere to slot 1; against brute-force distances to the sphere centres."""
    import torch

    from pipeline.models.video.object_motion import point_owners
    from pipeline.geometry.icosphere import ico_sphere

    sphere, faces = ico_sphere(2)
    centres = torch.tensor([[0.0, 0.0, 10.0], [3.0, 0.0, 10.0], [0.0, 0.0, 10.0]])
    verts = sphere[None] + centres[:, None]
    points = np.random.default_rng(0).uniform([-1.5, -1.5, 8.5], [4.5, 1.5, 11.5], (500, 3))
    slot = point_owners(points, verts, faces)
    nearer_first = np.linalg.norm(points - centres[0].numpy(), axis=1) < np.linalg.norm(points - centres[1].numpy(), axis=1)
    assert set(slot.tolist()) == {0, 1}
    assert np.array_equal(slot == 0, nearer_first)
