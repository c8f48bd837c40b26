"""Point subsampling: uniform random and farthest-point sampling (FPS, ``pipeline/geometry/sampling.py``)."""

from __future__ import annotations

import numpy as np


def random_subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``min(n, k)`` distinct points drawn uniformly, sorted (keeps image order)."""
    if n <= k:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def farthest_point_sample(points: np.ndarray, k: int, rng: np.random.Generator, presample: int = 8) -> np.ndarray:
    """Indices of ``min(N, k)`` points chosen greedily to maximise the distance to those already chosen.

    ``points`` (N, 3). Exact FPS costs O(N·k); to keep a 1-megapixel frame tractable the search runs
    on a uniform random pre-sample of ``presample * k`` points (exact FPS when N is below that).
    The first point is drawn at random from ``rng``.
    """
    n = len(points)
    if n <= k:
        return np.arange(n)
    import torch  # here, not at the top: the random path (pointclouds, drives) starts ~2 s faster without torch

    from pipeline.geometry.sampling import farthest_point_sampling

    pool = random_subsample(n, presample * k, rng)
    candidates = torch.from_numpy(points[pool].astype(np.float64))
    chosen = farthest_point_sampling(candidates, k, start=int(rng.integers(len(candidates)))).numpy()
    return np.sort(pool[chosen])


def subsample(points: np.ndarray, k: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Dispatch on ``method`` in {"random", "fps"}; returns indices into ``points``."""
    if method == "random":
        return random_subsample(len(points), k, rng)
    if method == "fps":
        return farthest_point_sample(points, k, rng)
    raise ValueError(f"unknown sampling method {method!r}; expected 'random' or 'fps'")
