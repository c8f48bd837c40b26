"""Surface normals of chosen pixels straight from a depth image (no neighbour search).

An organised point cloud already knows its neighbours: the pixels around it. At each chosen pixel the
surface's two tangents are the differences to the pixels ``step`` columns and ``step`` rows away, and the
normal is their cross product. Along each image axis the side whose depth is closer to the centre's is used
(a one-sided difference does not cross a depth edge, so a car's pixels next to the wall behind it keep the
car's normal). Cost: a few gathers per pixel, against a k-NN search and a 3 x 3 eigen-solve per point
for the plane-fit normals (:func:`pipeline.data.pointcloud.estimate_normals`).
"""

from __future__ import annotations

import numpy as np

from pipeline.data.camera import backproject_pixels
from pipeline.io.synthia import Intrinsics


def _tangent(depth: np.ndarray, v: np.ndarray, u: np.ndarray, dv: int, du: int, centre_m: np.ndarray,
             intrinsics: Intrinsics, metres_per_unit: float, no_surface: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent (N, 3) along image direction (dv, du) and its depth gap (N,): the difference to the neighbour
    (clipped to the image) on the side whose depth is closer to the centre's; gap inf where neither side is
    usable (off the image, the centre pixel itself, or no surface)."""
    height, width = depth.shape
    sides = []
    for sign in (1, -1):
        vn, un = np.clip(v + sign * dv, 0, height - 1), np.clip(u + sign * du, 0, width - 1)
        d = depth[vn, un].astype(np.float64)
        usable = np.isfinite(d) & (d > 0) & (d < no_surface) & ((vn != v) | (un != u))
        d *= metres_per_unit
        sides.append((vn, un, np.where(usable, d, 0.0), np.where(usable, np.abs(d - centre_m), np.inf), sign))
    (v1, u1, d1, gap1, _), (v2, u2, d2, gap2, _) = sides
    ahead = gap1 <= gap2
    vn, un, d = np.where(ahead, v1, v2), np.where(ahead, u1, u2), np.where(ahead, d1, d2)
    neighbour = backproject_pixels(d, vn, un, intrinsics)
    centre = backproject_pixels(centre_m, v, u, intrinsics)
    return (neighbour - centre) * np.where(ahead, 1.0, -1.0)[:, None], np.minimum(gap1, gap2)


def pixel_normals(depth: np.ndarray, v: np.ndarray, u: np.ndarray, intrinsics: Intrinsics, step: int = 2,
                  metres_per_unit: float = 1.0, no_surface: float = np.inf) -> np.ndarray:
    """Unit normals (N, 3) float32 at pixels (row ``v``, column ``u``) of a planar depth image ``depth``
    (H, W) in units of ``metres_per_unit`` metres (no surface: non-finite, <= 0 or >= ``no_surface``; e.g. the
    raw uint16 centimetres of SYNTHIA with 0.01 and 65535, read at the gathered pixels only), in OpenCV camera
    axes, facing the camera.

    ``step``: pixels between a pixel and the neighbours that span its tangents (larger = smoother on
    quantised depth, blurrier at edges). A pixel without a usable neighbour along an axis gets the normal
    facing the camera along its ray.
    """
    centre_m = depth[v, u].astype(np.float64) * metres_per_unit
    centre = backproject_pixels(centre_m, v, u, intrinsics)
    along_u, gap_u = _tangent(depth, v, u, 0, step, centre_m, intrinsics, metres_per_unit, no_surface)
    along_v, gap_v = _tangent(depth, v, u, step, 0, centre_m, intrinsics, metres_per_unit, no_surface)
    normals = np.cross(along_u, along_v)
    length = np.linalg.norm(normals, axis=1)
    ray = -centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)  # towards the camera
    fallback = ~(np.isfinite(gap_u) & np.isfinite(gap_v)) | (length < 1e-12)
    normals = np.where(fallback[:, None], ray, normals / np.where(length > 0, length, 1.0)[:, None])
    normals *= np.where(np.sum(normals * ray, axis=1) < 0, -1.0, 1.0)[:, None]
    return normals.astype(np.float32)
