"""Rigid alignment of two point clouds: point-to-plane ICP with trimming (robust to moving objects).

Conventions: a pose ``(R, t)`` maps a source point p to ``R @ p + t`` in the target's frame (``target_from_source``);
metres. Each iteration pairs every transformed source point with its nearest target point (k-d tree, pairs
farther than ``max_pair_m`` dropped), keeps the ``keep`` fraction with the smallest point-to-plane residuals
``n · (R p + t - q)`` (the rest are outliers: moving objects, occlusions, new structure), and solves the
linearised problem for a small rotation ω and shift δ by damped least squares (Chen & Medioni 1992; Rusinkiewicz
& Levoy 2001): ``Σ ((p' × n) · ω + n · δ + r)²``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation


def point_to_plane_icp(source: np.ndarray, target: np.ndarray, target_normals: np.ndarray,
                       rotation: np.ndarray | None = None, translation: np.ndarray | None = None,
                       iterations: int = 30, max_pair_m: float = 2.0, keep: float = 0.8,
                       damping: float = 1e-3, tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray, float]:
    """``target_from_source`` (3, 3), (3,) aligning ``source`` (N, 3) to ``target`` (M, 3) with unit normals
    (M, 3), from the initial pose (identity if None); returns (R, t, rms point-to-plane residual of the kept pairs, m)."""
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
    tree = cKDTree(target)
    rms = float("nan")
    for _ in range(iterations):
        moved = source @ r.T + t
        dist, index = tree.query(moved, distance_upper_bound=max_pair_m)
        ok = np.isfinite(dist)
        if ok.sum() < 6:
            break
        p, q, n = moved[ok], target[index[ok]], target_normals[index[ok]]
        residual = np.einsum("ij,ij->i", p - q, n)
        kept = np.argsort(np.abs(residual))[: max(6, int(keep * len(residual)))]
        p, n, residual = p[kept], n[kept], residual[kept]
        rms = float(np.sqrt(np.mean(residual**2)))
        a = np.concatenate([np.cross(p, n), n], axis=1)  # (N, 6)
        step = np.linalg.solve(a.T @ a + damping * np.eye(6), -a.T @ residual)
        delta = Rotation.from_rotvec(step[:3]).as_matrix()
        r, t = delta @ r, delta @ t + step[3:]
        if np.linalg.norm(step) < tolerance:
            break
    return r, t, rms


def inlier_fraction(source: np.ndarray, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                    radius_m: float = 0.15, tree: cKDTree | None = None) -> float:
    """Share of transformed source points with a target point within ``radius_m`` (an overlap score that, unlike
    the trimmed residual, a degenerate sliding alignment does not improve)."""
    tree = cKDTree(target) if tree is None else tree
    dist, _ = tree.query(source @ rotation.T + translation, distance_upper_bound=radius_m)
    return float(np.isfinite(dist).mean())
