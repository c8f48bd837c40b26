"""Slot identity over time: anchors carried from frame to frame, and Hungarian matching of slots.

**Carried anchors** (a SAVi-like recurrence, Kipf et al. 2022): frame 0 gets the
phase-one k-means anchors (sorted by depth). Frame t runs k-means *initialised with frame t-1's
centres moved by their velocity* (constant velocity in the camera frame over the true time gap, so
ego-motion is carried too), so cluster k of frame t continues cluster k of frame t-1 and the slot
built on it keeps its index. A centre that lands far from its prediction (k-means re-seeded an empty
cluster, or a new object took it) restarts with zero velocity. The phase-one encoder then refines
each frame's slots from these anchors (it is permutation-equivariant over slots).

**Matching**: before any consistency or motion loss, consecutive frames are
Hungarian-matched on centre distance plus prototype-weight distance, and the matches are chained to
frame 0's order, so a swap of two slots is never penalised as motion.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from pipeline.data.frames import Anchors, anchors_from_clusters, kmeans_anchors

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


def match_chain(centres: Tensor, weights: Tensor, weight_cost_m: float = 1.0) -> Tensor:
    """Hungarian-match each frame's slots to the previous frame's (already matched) slots.

    Args:
        centres: (T, K, 3) slot centres in one frame of reference (metres); weights (T, K, P).
        weight_cost_m: metres of cost per unit L2 distance of prototype weights.
    Returns:
        (T, K) long permutation ``perm`` with ``perm[0] = arange(K)``: slot ``perm[t, k]`` of frame t
        is the same object as slot k of frame 0 (``x[t, perm[t]]`` reorders frame t).
    """
    c, w = centres.detach().cpu().double(), weights.detach().cpu().double()
    k = c.shape[1]
    perms = [torch.arange(k)]
    for t in range(1, c.shape[0]):
        prev = perms[-1]
        cost = torch.cdist(c[t - 1, prev], c[t]) + weight_cost_m * torch.cdist(w[t - 1, prev], w[t])
        rows, cols = linear_sum_assignment(cost.numpy())
        perm = torch.empty(k, dtype=torch.long)
        perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
        perms.append(perm)
    return torch.stack(perms).to(centres.device)


def reorder(x: Tensor, perm: Tensor) -> Tensor:
    """Apply per-frame permutations (B, T, K) to x (B, T, K, ...)."""
    index = perm.view(perm.shape + (1,) * (x.dim() - 3)).expand_as(x) if x.dim() > 3 else perm
    return torch.gather(x, 2, index)
