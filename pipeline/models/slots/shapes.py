"""Anchor shapes in a gravity-aligned slot frame, and shape clusters that seed the prototype bank.

Camera coordinates are OpenCV (x right, y down, z forward, metres); objects stand on a road roughly
parallel to the camera's x-z plane, so a slot's frame is the camera frame turned about the vertical
y axis by the anchor's **yaw**: the angle of the main horizontal PCA direction of the anchor's
points, measured from +z towards +x (``R_y(yaw) @ [0, 0, 1] = [sin yaw, 0, cos yaw]``). In that
frame local z is the main horizontal direction (a car's length), y the vertical (a pedestrian's
height) and x the minor horizontal direction.

An anchor's **normalised extents** are the PCA-ellipsoid semi-axes along those three local axes,
``c * std + pad`` (the same ``c`` and ``pad`` as the PCA-ellipsoid baseline), divided by the anchor
radius (mean distance of its points to the centre): a slot of scale = radius whose shape is the unit
sphere stretched by these extents is the anchor's axis-aligned PCA ellipsoid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

SEMI_AXIS_C = 1.5  # ellipsoid semi-axis = SEMI_AXIS_C * standard deviation + SEMI_AXIS_PAD_M
SEMI_AXIS_PAD_M = 0.02
MIN_EXTENT = 0.05  # floor of a normalised extent (flat visible surfaces give ~0)


def anchor_covariance(axes: Tensor, spread: Tensor) -> Tensor:
    """(..., 3, 3) covariance ``A diag(spread^2) A^T`` from PCA axes (columns) and spreads (std, m)."""
    return torch.einsum("...ij,...j,...kj->...ik", axes, spread.pow(2), axes)


def anchor_yaw(axes: Tensor, spread: Tensor) -> Tensor:
    """(...,) yaw (radians, in (-pi/2, pi/2]) of the main horizontal direction of each anchor."""
    cov = anchor_covariance(axes, spread)
    return 0.5 * torch.atan2(2 * cov[..., 0, 2], cov[..., 2, 2] - cov[..., 0, 0])


def normalised_extents(axes: Tensor, spread: Tensor, radius: Tensor) -> Tensor:
    """(..., 3) semi-axes along local (x minor horizontal, y vertical, z main horizontal) over radius."""
    cov = anchor_covariance(axes, spread)
    yaw = anchor_yaw(axes, spread)
    c, s = torch.cos(yaw), torch.sin(yaw)
    var_z = c * c * cov[..., 2, 2] + s * s * cov[..., 0, 0] + 2 * s * c * cov[..., 0, 2]
    var_x = s * s * cov[..., 2, 2] + c * c * cov[..., 0, 0] - 2 * s * c * cov[..., 0, 2]
    std = torch.stack([var_x, cov[..., 1, 1], var_z], dim=-1).clamp_min(0).sqrt()
    return ((SEMI_AXIS_C * std + SEMI_AXIS_PAD_M) / radius.unsqueeze(-1)).clamp_min(MIN_EXTENT)


def shape_clusters(extents: np.ndarray, weight: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """(P, 3) k-means centres of log normalised extents (N, 3) of training anchors, weighted by their
    share of points ``weight`` (N,); sorted by elongation (main horizontal / vertical), so index 0 is
    the tallest shape. Fewer distinct anchors than P: the missing centres repeat the unit sphere."""
    from sklearn.cluster import KMeans

    keep = weight > 0
    logs = np.log(extents[keep].astype(np.float64))
    if len(np.unique(logs, axis=0)) < clusters:
        found = np.unique(logs, axis=0)
        centres = np.concatenate([found, np.zeros((clusters - len(found), 3))])
    else:
        km = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(logs, sample_weight=weight[keep])
        centres = km.cluster_centers_
    centres = centres[np.argsort(centres[:, 2] - centres[:, 1])]
    return np.exp(centres).astype(np.float32)
