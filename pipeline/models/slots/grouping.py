"""Which of a frame's k-means clusters form one object: clusters of one object are grouped (merged).

k-means with K clusters cuts a near car into several pieces whenever a frame has fewer than K
objects; the slot model then fits each piece with its own slot, and FG-ARI pays for the split.
Points of one object are connected (neighbouring points a few centimetres to decimetres apart),
points of two objects are separated by free space. :func:`merge_clusters` joins clusters whose
closest points are within ``gap_m`` of each other, smallest gaps first, as long as the joined
cluster stays object-sized (its largest PCA semi-axis ``1.5 * std`` at most ``max_semi_axis_m``),
so a row of touching parked cars is not chained into one slot.

What a group is depends on ``train.merge_geometry`` (:func:`pipeline.models.slots.batch.slot_anchors`):

- ``parts``: every slot keeps its own k-means cluster and mesh, a part of the object; the group
  is one object for segmentation, so a point owned by any of its parts gets the group's label
  (:func:`pipeline.models.slots.batch.slot_groups`). The geometry keeps K primitives, as the baselines do.
- ``shared`` (default): the group keeps one slot. Its lowest slot index is the **parent**; every other member slot
  becomes an alias of the parent (``parent[k] != k``), carries the group's statistics and, in the model,
  the parent's slot vector, so its mesh coincides with the parent's (it owns no point: nearest surface
  ties go to the lowest index). Slot count and order stay K.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pipeline.data.frames import Anchors, anchors_from_clusters
from pipeline.models.slots.shapes import SEMI_AXIS_C


def cluster_gaps(points: np.ndarray, label: np.ndarray, k: int) -> np.ndarray:
    """(K, K) smallest distance (m) between points of cluster i and cluster j (inf if either is empty)."""
    gaps = np.full((k, k), np.inf)
    members = [points[label == i] for i in range(k)]
    for i in range(k):
        if len(members[i]) == 0:
            continue
        tree = cKDTree(members[i])
        for j in range(i + 1, k):
            if len(members[j]):
                gaps[i, j] = gaps[j, i] = float(tree.query(members[j], k=1)[0].min())
    return gaps


def merge_clusters(points: np.ndarray, anchors: Anchors, gap_m: float, max_semi_axis_m: float) -> tuple[Anchors, np.ndarray]:
    """Merged anchors (same K and order; aliases carry their group's statistics) and ``parent`` (K,).

    ``points`` (N, 3) with ``anchors.label`` (N,); ``gap_m <= 0`` returns the anchors unchanged."""
    k = len(anchors.centre)
    parent = np.arange(k)
    if gap_m <= 0:
        return anchors, parent
    gaps = cluster_gaps(points, anchors.label, k)
    root = list(range(k))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for flat in np.argsort(gaps, axis=None):
        i, j = np.unravel_index(flat, gaps.shape)
        if i >= j or gaps[i, j] > gap_m:
            continue
        a, b = find(i), find(j)
        if a == b:
            continue
        group = np.isin(np.array([find(x) for x in range(k)])[anchors.label], [a, b])
        centred = points[group] - points[group].mean(0)
        largest = np.sqrt(max(np.linalg.eigvalsh(centred.T @ centred / len(centred))[-1], 0.0))
        if SEMI_AXIS_C * largest <= max_semi_axis_m:
            root[max(a, b)] = min(a, b)
    parent = np.array([find(i) for i in range(k)])
    label = parent[anchors.label]
    centre = np.stack([points[label == p].mean(0) if np.any(label == p) else anchors.centre[p] for p in parent])
    merged = anchors_from_clusters(points, label, centre)
    for i in range(k):  # aliases: the group's statistics (the members were counted at the parent)
        for field in ("radius", "spread", "axes", "weight"):
            getattr(merged, field)[i] = getattr(merged, field)[parent[i]]
    return merged, parent
