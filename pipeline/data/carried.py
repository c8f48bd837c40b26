"""Anchors carried from frame to frame: slot k starts on the same cluster in every frame of a sequence.

A SAVi-like recurrence (Kipf et al. 2022): frame 0 gets the phase-one k-means anchors (sorted by
depth). Frame t runs k-means *initialised with frame t-1's centres moved by their velocity* (constant
velocity in the camera frame over the true time gap, so ego-motion is carried too), so cluster k of
frame t continues cluster k of frame t-1 and the slot built on it keeps its index. A centre that lands
far from its prediction (k-means re-seeded an empty cluster, or a new object took it) restarts with zero
velocity. The phase-one encoder then refines each frame's slots from these anchors (it is
permutation-equivariant over slots); phase two matches slots across frames
(``pipeline/models/video/tracking.py``).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.frames import (Anchors, FrameRecord, FrameSelection, anchors_from_clusters, frame_times,
                                  kmeans_anchors)

JUMP_RADII = 2.0
JUMP_M = 1.0


def carried_kmeans(points: np.ndarray, init: np.ndarray, seed: int) -> Anchors:
    """One k-means run on ``points`` started from ``init`` (K, 3), cluster order kept."""
    from sklearn.cluster import KMeans

    k = len(init)
    if len(points) < k:
        raise ValueError(f"frame has {len(points)} target points, fewer than the {k} slots")
    km = KMeans(n_clusters=k, init=init.astype(np.float64), n_init=1, random_state=seed).fit(points.astype(np.float64))
    return anchors_from_clusters(points, km.labels_, km.cluster_centers_)


def track_anchors(points: list[np.ndarray], times: np.ndarray, k: int, seed: int = 0) -> list[Anchors]:
    """Carried anchors for consecutive frames of one sequence (see module docstring).

    ``points``: per frame (N_t, 3) target points in that frame's camera axes (metres); ``times``
    (T,) seconds, increasing. Returns one :class:`Anchors` per frame; slot k is carried along.
    """
    out: list[Anchors] = [kmeans_anchors(points[0], k, seed)]
    velocity = np.zeros((k, 3))
    for t in range(1, len(points)):
        dt = float(times[t] - times[t - 1])
        previous = out[-1]
        predicted = previous.centre + velocity * dt
        anchors = carried_kmeans(points[t], predicted, seed + t)
        velocity = (anchors.centre - previous.centre) / max(dt, 1e-6)
        jumped = np.linalg.norm(anchors.centre - predicted, axis=1) > JUMP_RADII * previous.radius + JUMP_M
        velocity[jumped] = 0.0
        out.append(anchors)
    return out


def carry_anchors(records: list[FrameRecord], selection: FrameSelection) -> list[Anchors]:
    """Carried anchors of one sequence's ``records`` (sorted by frame, at least 2), one per record."""
    return track_anchors([r.points for r in records], frame_times(records), selection.slots, selection.seed)
