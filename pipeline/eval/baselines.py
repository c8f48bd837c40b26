"""Non-learned per-frame baselines on the same points as the model: k-means spheres and PCA ellipsoids.

Both use the frame's anchors (:func:`pipeline.data.frames.kmeans_anchors`, the same clusters the
slot model starts from), meshed as unit ico-spheres of one level:

- **k-means spheres**: centre = cluster mean, radius = mean distance of its points to the centre;
- **k-means + PCA ellipsoids**: the sphere mapped by the cluster's PCA axes with semi-axes
  ``c * sqrt(eigenvalue) + 0.02`` metres (``c = 1.5`` by default; phase-one notes §1; the same
  constants define the slot model's normalised anchor extents, :mod:`pipeline.models.slots.shapes`).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.frames import Anchors
from pipeline.models.slots.shapes import SEMI_AXIS_C as ELLIPSOID_C
from pipeline.models.slots.shapes import SEMI_AXIS_PAD_M as ELLIPSOID_PAD_M


def sphere_meshes(anchors: Anchors, unit_verts: np.ndarray) -> np.ndarray:
    """(K, V, 3) vertices of one sphere per cluster."""
    return anchors.centre[:, None, :] + anchors.radius[:, None, None] * unit_verts[None]


def ellipsoid_meshes(anchors: Anchors, unit_verts: np.ndarray, c: float = ELLIPSOID_C) -> np.ndarray:
    """(K, V, 3) vertices of one PCA ellipsoid per cluster."""
    semi = c * anchors.spread + ELLIPSOID_PAD_M  # (K, 3)
    local = unit_verts[None] * semi[:, None, :]  # in PCA coordinates
    return anchors.centre[:, None, :] + np.einsum("kij,kvj->kvi", anchors.axes, local)
