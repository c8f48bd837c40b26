"""Anchor shapes: yaw and normalised extents against point clouds of known pose; shape-cluster prototypes."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from pipeline.data.frames import anchors_from_clusters
from pipeline.models.slots import SlotModelConfig, SlotSceneModel
from pipeline.models.slots.shapes import SEMI_AXIS_C, SEMI_AXIS_PAD_M, anchor_yaw, normalised_extents, shape_clusters


def box_points(half: tuple[float, float, float], yaw: float, n: int = 4000, seed: int = 0) -> np.ndarray:
    """Uniform points of a box with half-sizes (x, y, z) in its own frame, turned by ``yaw`` about y."""
    local = np.random.default_rng(seed).uniform(-1, 1, (n, 3)) * np.array(half)
    return local @ Rotation.from_euler("Y", yaw).as_matrix().T + np.array([1.0, 0.5, 12.0])


def anchor_tensors(points: np.ndarray):
    a = anchors_from_clusters(points, np.zeros(len(points), np.int64), points.mean(0, keepdims=True))
    return (torch.from_numpy(a.axes), torch.from_numpy(a.spread), torch.from_numpy(a.radius))


def test_yaw_and_extents_of_a_turned_car():
    half, yaw = (0.9, 0.75, 2.2), 0.6  # a car: long along its local z
    axes, spread, radius = anchor_tensors(box_points(half, yaw))
    assert abs(float(anchor_yaw(axes, spread)[0]) - yaw) < 0.02
    # reference: standard deviations of the points in the box's own frame
    local = box_points(half, 0.0)
    expected = (SEMI_AXIS_C * local.std(0) + SEMI_AXIS_PAD_M) / float(radius[0])
    assert np.allclose(normalised_extents(axes, spread, radius)[0].numpy(), expected, rtol=0.03)


def test_tall_and_long_shapes_get_different_clusters():
    rng = np.random.default_rng(1)
    tall = np.exp(rng.normal(np.log([0.5, 1.6, 0.5]), 0.05, (50, 3)))
    long = np.exp(rng.normal(np.log([0.6, 0.5, 1.7]), 0.05, (50, 3)))
    centres = shape_clusters(np.concatenate([tall, long]), np.ones(100), 2, seed=0)
    assert np.allclose(centres[0], [0.5, 1.6, 0.5], rtol=0.05)  # sorted: tallest first
    assert np.allclose(centres[1], [0.6, 0.5, 1.7], rtol=0.05)


def test_cluster_weights_decide_whether_few_small_objects_get_a_prototype():
    """Pedestrian-like anchors holding few points beside three modes of car-like anchors, 3 clusters: weighted by
    their share of points (``train.prototype_cluster_weight: points``) the car modes take every centre; counted
    once each (``anchors``, weight 1), the tall anchors keep a centre of their own."""
    rng = np.random.default_rng(2)
    modes = [[0.5, 1.6, 0.5], [0.4, 0.5, 1.8], [1.2, 0.9, 0.4], [1.0, 0.8, 0.7]]  # tall; car side, rear, oblique
    extents = np.concatenate([np.exp(rng.normal(np.log(m), 0.05, (40, 3))) for m in modes])
    points_share = np.concatenate([np.full(40, 0.002), np.full(120, 0.05)])
    by_points = shape_clusters(extents, points_share, 3, seed=0)
    by_anchor = shape_clusters(extents, (points_share > 0).astype(float), 3, seed=0)
    assert not np.isclose(by_points, modes[0], rtol=0.1).all(axis=1).any()
    assert np.allclose(by_anchor[0], modes[0], rtol=0.1)  # sorted: tallest first


def test_untrained_model_puts_the_anchor_ellipsoid_on_a_turned_car():
    cfg = SlotModelConfig(slots=1, prototypes=2, ico_level=1, input_height=32, input_width=48, channels=(8, 8, 8, 8),
                          hidden=16, prior_width=0.05)
    model = SlotSceneModel(cfg)
    points = box_points((0.9, 0.75, 2.2), 0.6)
    axes, spread, radius = anchor_tensors(points)
    extents = normalised_extents(axes, spread, radius)
    model.prototypes.init_from_extents(torch.stack([torch.tensor([0.5, 1.6, 0.5]), extents[0].float()]))
    anchors = {"centre": torch.from_numpy(points.mean(0))[None, None].float(), "radius": radius[None].float(),
               "spread": spread[None].float(), "axes": axes[None].float(), "weight": torch.ones(1, 1)}
    with torch.no_grad():
        params = model.decode(model.anchor_prior(anchors), anchors)
    assert params.weights[0, 0, 1] > 0.99  # the car prototype, not the tall one
    # every vertex lies on the ellipsoid with semi-axes radius * extents in the car's frame
    local = (params.verts[0, 0] - anchors["centre"][0, 0]).double().numpy() @ Rotation.from_euler("Y", 0.6).as_matrix()
    semi = (radius[0] * extents[0]).numpy()
    assert np.allclose(((local / semi) ** 2).sum(1), 1.0, atol=0.03)
