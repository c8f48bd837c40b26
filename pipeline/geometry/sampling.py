"""Farthest-point sampling (FPS): the one implementation, used by the point-cloud stages, VGGT clouds and PTv3 tokens."""

from __future__ import annotations

import torch


def farthest_point_sampling(points: torch.Tensor, k: int, start: int = 0) -> torch.Tensor:
    """Greedy FPS: points (N, 3) -> indices (min(k, N),) long, in selection order; O(N k) time, O(N) memory.

    The first index is ``start``; each next one is the point farthest (squared Euclidean distance, in the
    points' dtype) from all chosen ones, ties to the lowest index. Runs on the points' device.
    """
    n = points.shape[0]
    k = min(k, n)
    idx = torch.empty(k, dtype=torch.long, device=points.device)
    dist = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
    cur = start
    for i in range(k):
        idx[i] = cur
        dist = torch.minimum(dist, ((points - points[cur]) ** 2).sum(-1))
        cur = int(torch.argmax(dist))
    return idx
