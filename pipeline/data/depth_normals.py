"""Surface normals of chosen pixels straight from a depth image (no neighbour search).

An organised point cloud already knows its neighbours: the pixels around it. At each chosen pixel the
surface's two tangents are the differences to the pixels ``step`` columns and ``step`` rows away, and the
normal is their cross product. Along each image axis the side whose depth is closer to the centre's is used
(a one-sided difference does not cross a depth edge, so a car's pixels next to the wall behind it keep the
car's normal). Cost: a few gathers per pixel, against a k-NN search and a 3 x 3 eigen-solve per point
for the plane-fit normals (:func:`pipeline.data.pointcloud.estimate_normals`).

The arithmetic runs on separate x, y, z columns of N values (numpy's reductions and ``cross`` over a short
last axis cost more than the arithmetic) in the same operation order as
:func:`pipeline.data.camera.backproject_pixels`, ``np.cross`` and ``np.linalg.norm``, so the normals are
bit-identical to computing them on (N, 3) stacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.io.synthia import Intrinsics

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Centres:
    """The chosen pixels of an (H, W) image: row ``v`` and column ``u`` (N,), their flat row starts ``v * W``,
    ray slopes ``slope_x = (u - cx) / f`` and ``slope_y = (v - cy) / f`` (a pixel's camera point at planar
    depth d is ``(slope_x d, slope_y d, d)``, OpenCV axes, metres), depth ``depth_m`` and camera ``point``."""

    v: np.ndarray
    u: np.ndarray
    row_start: np.ndarray
    slope_x: np.ndarray
    slope_y: np.ndarray
    depth_m: np.ndarray
    point: Columns

    @classmethod
    def of(cls, flat_depth: np.ndarray, shape: tuple[int, int], v: np.ndarray, u: np.ndarray,
           intrinsics: Intrinsics, metres_per_unit: float) -> _Centres:
        row_start = v * shape[1]
        depth_m = flat_depth[row_start + u].astype(np.float64) * metres_per_unit
        slope_x = _slopes(shape[1], intrinsics.cx, intrinsics.focal)[u]
        slope_y = _slopes(shape[0], intrinsics.cy, intrinsics.focal)[v]
        return cls(v, u, row_start, slope_x, slope_y, depth_m, (slope_x * depth_m, slope_y * depth_m, depth_m))


def _slopes(count: int, principal: float, focal: float) -> np.ndarray:
    """Ray slopes ``(i - principal) / focal`` of rows or columns i = 0 .. count - 1 (the arithmetic of
    :func:`pipeline.data.camera.backproject_pixels`, once per row or column)."""
    return (np.arange(count).astype(np.float64) - principal) / focal


def _surface_m(raw: np.ndarray, metres_per_unit: float, no_surface: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``raw`` (N,) as float64 metres and whether it is a surface (finite, > 0, < ``no_surface``); integer
    depths (raw centimetres) are tested before the cast, where the test is cheaper and exact."""
    depth = raw.astype(np.float64)
    if raw.dtype.kind in "ui":
        surface = (raw > 0) & (raw < no_surface)
    else:
        surface = np.isfinite(depth) & (depth > 0) & (depth < no_surface)
    depth *= metres_per_unit
    return depth, surface


def _tangent(flat_depth: np.ndarray, shape: tuple[int, int], centres: _Centres, along_rows: bool, step: int,
             intrinsics: Intrinsics, metres_per_unit: float, no_surface: float) -> tuple[Columns, np.ndarray]:
    """Tangent (x, y, z columns of N) along the image's rows (``along_rows``: v +- step) or columns (u +- step)
    and its depth gap (N,): the difference to the neighbour (clipped to the image) on the side whose depth is
    closer to the centre's; gap inf where neither side is usable (off the image, the centre pixel itself, or no
    surface). ``flat_depth`` is the (H, W) = ``shape`` image, row-major flattened."""
    height, width = shape
    v, u = centres.v, centres.u
    sides = []
    for sign in (1, -1):
        if along_rows:
            moved_to = np.minimum(v + step, height - 1) if sign > 0 else np.maximum(v - step, 0)
            index = moved_to * width + u
            moved = moved_to != v
        else:
            moved_to = np.minimum(u + step, width - 1) if sign > 0 else np.maximum(u - step, 0)
            index = centres.row_start + moved_to
            moved = moved_to != u
        d, usable = _surface_m(flat_depth[index], metres_per_unit, no_surface)
        usable &= moved
        sides.append((moved_to, np.where(usable, d, 0.0), np.where(usable, np.abs(d - centres.depth_m), np.inf)))
    (to1, d1, gap1), (to2, d2, gap2) = sides
    ahead = gap1 <= gap2
    depth = np.where(ahead, d1, d2)
    # the neighbour's slope along the moved axis (the other one is the centre's), from the per-row / -column table
    slope = _slopes(height if along_rows else width, intrinsics.cy if along_rows else intrinsics.cx,
                    intrinsics.focal)[np.where(ahead, to1, to2)]
    neighbour = (centres.slope_x * depth, slope * depth, depth) if along_rows else (
        slope * depth, centres.slope_y * depth, depth)
    sign = np.where(ahead, 1.0, -1.0)
    return tuple((n - c) * sign for n, c in zip(neighbour, centres.point)), np.minimum(gap1, gap2)


def _cross(a: Columns, b: Columns) -> Columns:
    """a x b on columns, each component in ``np.cross``'s order (product, product, difference)."""
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def _dot(a: Columns, b: Columns) -> np.ndarray:
    """Row-wise a . b, summed left to right as ``np.sum(..., axis=1)`` does over 3 values."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


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
    flat_depth = depth.reshape(-1)
    centres = _Centres.of(flat_depth, depth.shape, v, u, intrinsics, metres_per_unit)
    along_u, gap_u = _tangent(flat_depth, depth.shape, centres, False, step, intrinsics, metres_per_unit, no_surface)
    along_v, gap_v = _tangent(flat_depth, depth.shape, centres, True, step, intrinsics, metres_per_unit, no_surface)
    centre = centres.point
    normal = _cross(along_u, along_v)
    length = np.sqrt(_dot(normal, normal))
    centre_length = np.maximum(np.sqrt(_dot(centre, centre)), 1e-12)
    ray = tuple(-c / centre_length for c in centre)  # towards the camera
    fallback = ~(np.isfinite(gap_u) & np.isfinite(gap_v)) | (length < 1e-12)
    safe_length = np.where(length > 0, length, 1.0)
    normal = tuple(np.where(fallback, r, n / safe_length) for r, n in zip(ray, normal))
    facing = np.where(_dot(normal, ray) < 0, -1.0, 1.0)
    out = np.empty((len(v), 3), dtype=np.float32)
    for axis in range(3):
        out[:, axis] = normal[axis] * facing
    return out
