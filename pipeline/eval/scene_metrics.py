"""Geometry and decomposition metrics of K slot meshes against a depth frame's points.

For one frame (camera coordinates, metres), given target points, their GT instance ids, the depth
map the points came from (for visibility) and K meshes sharing one face list:

- ``acc_m``: mean exact point -> nearest surface distance (the one-directional training loss, in
  metres, unsquared); ``acc_p90_m`` its 90th percentile;
- ``comp_all_m`` / ``comp_vis_m``: mean distance from area-uniform surface samples (all / only the
  visible ones: in the image and not more than 0.3 m behind the observed depth) to the nearest
  target point; ``chamfer_l1_m = (acc + comp_all) / 2`` and ``chamfer_vis_m = (acc + comp_vis) / 2``;
- ``fscore_<t>``: harmonic mean of precision (visible samples within t of a point) and recall
  (points within t of a surface), for t in 0.1 / 0.2 / 0.5 m;
- ``fsv``: fraction of in-image samples more than 0.3 m in front of the observed depth;
- ``fg_ari``: adjusted Rand index between GT instance ids and the slot owning each point's nearest
  surface point (its object, where part slots are grouped), over points with an instance id (only frames
  with >= 2 instances are scored);
- ``slots_used``: slots (objects, where grouped) that own at least one point.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.eval.partition_agreement import adjusted_rand_index
from pipeline.geometry.mesh import sample_points_on_mesh
from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.geometry.nearest import nearest_sq_dist
from pipeline.io.synthia import Intrinsics

F_THRESHOLDS = (0.1, 0.2, 0.5)
VISIBILITY_SLACK_M = 0.3


def surface_samples(verts: torch.Tensor, faces: torch.Tensor, per_mesh: int, seed: int) -> torch.Tensor:
    """(K*per_mesh, 3) area-uniform samples on K meshes (K, V, 3)."""
    generator = torch.Generator().manual_seed(seed)
    pts, _, _ = sample_points_on_mesh(verts, faces, per_mesh, generator=generator)
    return pts.reshape(-1, 3)


def visibility(samples: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(in_image, visible) masks of camera-frame samples against a depth map (+inf = nothing seen)."""
    z = samples[:, 2]
    ok = z > 0.1
    u = np.round(intrinsics.focal * samples[:, 0] / np.where(ok, z, 1) + intrinsics.cx).astype(np.int64)
    v = np.round(intrinsics.focal * samples[:, 1] / np.where(ok, z, 1) + intrinsics.cy).astype(np.int64)
    h, w = depth.shape
    in_image = ok & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    observed = np.full(len(samples), np.inf)
    observed[in_image] = depth[v[in_image], u[in_image]]
    visible = in_image & (z <= observed + VISIBILITY_SLACK_M)
    return in_image, visible


def frame_metrics(points: np.ndarray, instance: np.ndarray, verts: np.ndarray, faces: torch.Tensor,
                  depth: np.ndarray, intrinsics: Intrinsics, samples_per_mesh: int = 1000, seed: int = 0,
                  group: np.ndarray | None = None) -> dict:
    """All metrics of one frame (see module docstring). ``verts`` (K, V, 3), ``points`` (N, 3); ``group`` (K,)
    the object of each slot where several part slots form one object (segmentation by object)."""
    verts_t = torch.as_tensor(verts, dtype=torch.float32)
    pts_t = torch.as_tensor(points, dtype=torch.float32)
    acc, slot = nearest_slot(points, verts, faces, group)
    with torch.no_grad():
        samples = surface_samples(verts_t, faces, samples_per_mesh, seed)
        comp_sq, _ = nearest_sq_dist(samples[None], pts_t[None])
        comp = torch.sqrt(comp_sq[0]).numpy()
    samples_np = samples.numpy()
    in_image, visible = visibility(samples_np, depth, intrinsics)
    comp_vis = comp[visible] if visible.any() else np.array([np.nan])
    out = {
        "acc_m": float(acc.mean()), "acc_p90_m": float(np.percentile(acc, 90)),
        "comp_all_m": float(comp.mean()), "comp_vis_m": float(np.mean(comp_vis)),
        "chamfer_l1_m": float((acc.mean() + comp.mean()) / 2), "chamfer_vis_m": float((acc.mean() + np.mean(comp_vis)) / 2),
        "slots_used": int(len(np.unique(slot))),
    }
    for t in F_THRESHOLDS:
        precision = float(np.mean(comp_vis < t)) if visible.any() else 0.0
        recall = float(np.mean(acc < t))
        out[f"fscore_{t}"] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    z = samples_np[:, 2]
    observed = np.full(len(z), np.inf)
    u = np.round(intrinsics.focal * samples_np[:, 0] / np.maximum(z, 1e-6) + intrinsics.cx).astype(np.int64)
    v = np.round(intrinsics.focal * samples_np[:, 1] / np.maximum(z, 1e-6) + intrinsics.cy).astype(np.int64)
    observed[in_image] = depth[v[in_image], u[in_image]]
    out["fsv"] = float(np.mean((observed[in_image] - z[in_image]) > VISIBILITY_SLACK_M)) if in_image.any() else 0.0
    fg = instance > 0
    if len(np.unique(instance[fg])) >= 2:
        out["fg_ari"] = float(adjusted_rand_index(instance[fg], slot[fg]))
    return out


def mean_metrics(rows: list[dict]) -> dict:
    """Mean of each metric over frames (frames missing a key, e.g. fg_ari, are left out of that mean)."""
    keys = sorted({k for row in rows for k in row})
    out = {}
    for key in keys:
        values = [row[key] for row in rows if key in row and np.isfinite(row[key])]
        out[key] = round(float(np.mean(values)), 4) if values else None
    out["frames"] = len(rows)
    out["frames_with_fg_ari"] = sum("fg_ari" in row for row in rows)
    return out
