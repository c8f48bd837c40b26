"""Rigid alignment of two point clouds: point-to-plane ICP with trimming (robust to moving objects).

Conventions: a pose ``(R, t)`` maps a source point p to ``R @ p + t`` in the target's frame (``target_from_source``);
metres. Each iteration pairs every transformed source point with its nearest target point (k-d tree, pairs
farther than ``max_pair_m`` dropped), keeps the ``keep`` fraction with the smallest point-to-plane residuals
``n · (R p + t - q)`` (the rest are outliers: moving objects, occlusions, new structure), and solves the
linearised problem for a small rotation ω and shift δ by damped least squares (Chen & Medioni 1992; Rusinkiewicz
& Levoy 2001): ``Σ ((p' × n) · ω + n · δ + r)²``.

With a :class:`PosePrior` (e.g. a learned camera head's prediction) the problem becomes a Gaussian maximum a
posteriori fit: point residuals are divided by ``residual_sigma_m`` and the pose's distance to the prior (rotation
vector of ``R R0ᵀ`` in radians, ``t - t0`` in metres) by the prior's standard deviations. Directions the geometry
pins down (e.g. yaw and sideways shift between two building facades) follow the points; directions it leaves free
(e.g. sliding along a straight street with parallel walls, where point-to-plane ICP is degenerate) follow the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class PosePrior:
    """A Gaussian prior on ``target_from_source``: mean (3, 3), (3,) and isotropic standard deviations."""

    rotation: np.ndarray
    translation: np.ndarray
    rotation_sigma_rad: float
    translation_sigma_m: float


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def prior_normal_equations(prior: PosePrior, r: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(6, 6) information and (6,) gradient of the prior's squared residual, linearised at the pose ``(r, t)``
    for the update ``R' = exp(ω) R``, ``t' = exp(ω) t + δ`` (unknowns ``[ω, δ]``, as in the point terms)."""
    phi = Rotation.from_matrix(r @ prior.rotation.T).as_rotvec()
    jac = np.zeros((6, 6))
    jac[:3, :3] = np.eye(3) / prior.rotation_sigma_rad
    jac[3:, :3] = -_skew(t) / prior.translation_sigma_m  # d(ω × t)/dω
    jac[3:, 3:] = np.eye(3) / prior.translation_sigma_m
    residual = np.concatenate([phi / prior.rotation_sigma_rad, (t - prior.translation) / prior.translation_sigma_m])
    return jac.T @ jac, jac.T @ residual


def point_to_plane_icp(source: np.ndarray, target: np.ndarray, target_normals: np.ndarray,
                       rotation: np.ndarray | None = None, translation: np.ndarray | None = None,
                       iterations: int = 30, max_pair_m: float = 2.0, keep: float = 0.8,
                       damping: float = 1e-3, tolerance: float = 1e-6, prior: PosePrior | None = None,
                       residual_sigma_m: float = 0.05, untrimmed_iterations: int = 0,
                       cauchy_m: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``target_from_source`` (3, 3), (3,) aligning ``source`` (N, 3) to ``target`` (M, 3) with unit normals
    (M, 3), from the initial pose (identity if None; the prior's mean if None and a prior is given); returns
    (R, t, rms point-to-plane residual of the kept pairs, m). ``residual_sigma_m`` only matters with a prior.

    ``untrimmed_iterations`` first iterations keep every pair (then ``iterations`` trimmed ones): when the start is a
    few degrees off, trimming from the first iteration drops exactly the misaligned walls that would correct it and
    keeps the ground, which is flat and agrees with any yaw. ``cauchy_m``: in the trimmed iterations, each kept pair
    is weighted by ``1 / (1 + (r / cauchy_m)²)`` (iteratively reweighted least squares), a softer way to ignore
    outliers than trimming (``keep = 1`` with a kernel trims nothing)."""
    if prior is not None and rotation is None and translation is None:
        rotation, translation = prior.rotation, prior.translation
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
    tree = cKDTree(target)
    rms = float("nan")
    for count, share, robust_m in ((untrimmed_iterations, 1.0, None), (iterations, keep, cauchy_m)):
        for _ in range(count):
            step, rms = _icp_step(source, target, target_normals, tree, r, t, max_pair_m, share, damping, prior,
                                  residual_sigma_m, robust_m)
            if step is None:
                return r, t, rms
            delta = Rotation.from_rotvec(step[:3]).as_matrix()
            r, t = delta @ r, delta @ t + step[3:]
            if np.linalg.norm(step) < tolerance:
                break
    return r, t, rms


def _icp_step(source: np.ndarray, target: np.ndarray, target_normals: np.ndarray, tree: cKDTree, r: np.ndarray,
              t: np.ndarray, max_pair_m: float, keep: float, damping: float, prior: PosePrior | None,
              residual_sigma_m: float, cauchy_m: float | None = None) -> tuple[np.ndarray | None, float]:
    """One Gauss-Newton step ``[ω, δ]`` (6,) of :func:`point_to_plane_icp` at ``(r, t)`` and the kept pairs' rms
    residual; ``(None, nan)`` when fewer than 6 pairs are within ``max_pair_m``."""
    moved = source @ r.T + t
    dist, index = tree.query(moved, distance_upper_bound=max_pair_m)
    ok = np.isfinite(dist)
    if ok.sum() < 6:
        return None, float("nan")
    p, q, n = moved[ok], target[index[ok]], target_normals[index[ok]]
    residual = np.einsum("ij,ij->i", p - q, n)
    kept = np.argsort(np.abs(residual))[: max(6, int(keep * len(residual)))]
    p, n, residual = p[kept], n[kept], residual[kept]
    a = np.concatenate([np.cross(p, n), n], axis=1)  # (N, 6)
    weight = 1.0 / (1.0 + (residual / cauchy_m) ** 2) if cauchy_m else np.ones_like(residual)
    info, grad = (a * weight[:, None]).T @ a, a.T @ (weight * residual)
    if prior is not None:
        prior_info, prior_grad = prior_normal_equations(prior, r, t)
        info, grad = info / residual_sigma_m**2 + prior_info, grad / residual_sigma_m**2 + prior_grad
    return np.linalg.solve(info + damping * np.eye(6), -grad), float(np.sqrt(np.mean(residual**2)))


def inlier_fraction(source: np.ndarray, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                    radius_m: float = 0.15, tree: cKDTree | None = None) -> float:
    """Share of transformed source points with a target point within ``radius_m`` (an overlap score that, unlike
    the trimmed residual, a degenerate sliding alignment does not improve)."""
    tree = cKDTree(target) if tree is None else tree
    dist, _ = tree.query(source @ rotation.T + translation, distance_upper_bound=radius_m)
    return float(np.isfinite(dist).mean())


def prior_distance(prior: PosePrior, rotation: np.ndarray, translation: np.ndarray) -> float:
    """Squared Mahalanobis distance of a pose from the prior's mean (rotation angle and shift over their sigmas)."""
    phi = Rotation.from_matrix(rotation @ prior.rotation.T).as_rotvec()
    shift = translation - prior.translation
    return float(phi @ phi / prior.rotation_sigma_rad**2 + shift @ shift / prior.translation_sigma_m**2)
