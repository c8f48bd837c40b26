"""Normals from a depth image's neighbouring pixels, against analytic surfaces rendered exactly."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.camera import backproject_pixels
from pipeline.data.depth_normals import pixel_normals
from pipeline.io.synthia import Intrinsics

H, W = 60, 90
INTRINSICS = Intrinsics(focal=70.0, cx=44.5, cy=29.5, baseline=0.8)


def ray_z1(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rays (..., 3) with z = 1 through pixel centres (OpenCV axes)."""
    return np.stack([(u - INTRINSICS.cx) / INTRINSICS.focal, (v - INTRINSICS.cy) / INTRINSICS.focal,
                     np.ones_like(u, dtype=np.float64)], axis=-1)


def plane_depth(normal: np.ndarray, offset: float) -> np.ndarray:
    """Planar depth (H, W) of the plane {X : normal . X = offset} (exact, no quantisation)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return offset / (ray_z1(v, u) @ normal)


def facing_camera(normal: np.ndarray, point: np.ndarray) -> np.ndarray:
    return normal if normal @ -point > 0 else -normal


def test_plane_normals_are_exact_and_face_the_camera():
    normal = np.array([0.2, -0.3, -0.9]) / np.linalg.norm([0.2, -0.3, -0.9])  # a wall, tilted and slanted
    depth = plane_depth(normal, -5.0)
    assert (depth > 0).all()
    rng = np.random.default_rng(0)
    v, u = rng.integers(0, H, 300), rng.integers(0, W, 300)  # borders included: one-sided differences
    got = pixel_normals(depth.astype(np.float32), v, u, INTRINSICS, step=3)
    points = backproject_pixels(depth[v, u], v, u, INTRINSICS)
    expected = np.array([facing_camera(normal, p) for p in points])
    np.testing.assert_allclose(got, expected, atol=2e-4)  # float32 depth only


def test_sphere_normals_are_radial_up_to_the_step():
    centre, radius = np.array([0.3, -0.2, 6.0]), 2.0
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = ray_z1(v, u)  # |t ray - c|^2 = r^2, nearest root (z of the hit = t)
    b, c = rays @ centre, centre @ centre - radius**2
    disc = b**2 - (rays * rays).sum(-1) * c
    depth = np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / (rays * rays).sum(-1), np.nan)
    inside = np.argwhere(disc > 0.3 * disc.max())
    got = pixel_normals(depth, inside[:, 0], inside[:, 1], INTRINSICS, step=1)
    points = backproject_pixels(depth[inside[:, 0], inside[:, 1]], inside[:, 0], inside[:, 1], INTRINSICS)
    radial = (points - centre) / radius
    angle = np.degrees(np.arccos(np.clip((got * radial).sum(1), -1, 1)))
    assert angle.max() < 3.0


def test_depth_edge_keeps_each_surface_normal():
    """A fronto-parallel box at 4 m in front of a tilted wall: pixels on either side of the edge keep their
    own surface's normal (the difference is taken on the side with the smaller depth gap)."""
    wall_normal = np.array([0.3, 0.0, -1.0]) / np.linalg.norm([0.3, 0.0, -1.0])
    depth = plane_depth(wall_normal, -12.0)
    depth[20:40, 30:60] = 4.0
    v = np.array([20, 39, 30, 30, 19, 40, 30, 30])
    u = np.array([45, 45, 30, 59, 45, 45, 29, 60])  # 4 box pixels on its border, then 4 wall pixels next to it
    got = pixel_normals(depth, v, u, INTRINSICS, step=2)
    np.testing.assert_allclose(got[:4], np.tile([0, 0, -1.0], (4, 1)), atol=1e-6)
    np.testing.assert_allclose(got[4:], np.tile(wall_normal, (4, 1)), atol=1e-5)


@pytest.mark.parametrize("missing", [np.nan, np.inf, 0.0])
def test_pixel_without_neighbours_faces_the_camera_along_its_ray(missing):
    depth = np.full((H, W), missing)
    depth[10, 20] = 5.0
    got = pixel_normals(depth, np.array([10]), np.array([20]), INTRINSICS, step=1)
    ray = backproject_pixels(np.array([5.0]), np.array([10]), np.array([20]), INTRINSICS)[0]
    np.testing.assert_allclose(got[0], -ray / np.linalg.norm(ray), atol=1e-6)


def test_raw_centimetres_give_the_normals_of_their_metres():
    """SYNTHIA's raw uint16 centimetres (0 invalid, 65535 no hit) read in place equal the metres image."""
    normal = np.array([0.1, -0.8, -0.6]) / np.linalg.norm([0.1, -0.8, -0.6])
    metres = np.where(np.arange(W) < 70, plane_depth(normal, -2.0), np.inf)  # sky on the right
    raw = np.where(np.isfinite(metres), np.round(metres * 100), 65535).astype(np.uint16)
    raw[5, 5] = 0
    rng = np.random.default_rng(1)
    v, u = rng.integers(0, H, 200), rng.integers(0, 70, 200)
    from_raw = pixel_normals(raw, v, u, INTRINSICS, step=3, metres_per_unit=0.01, no_surface=65535)
    from_metres = pixel_normals(np.where(raw == 65535, np.nan, raw * 0.01), v, u, INTRINSICS,
                                step=3)
    np.testing.assert_allclose(from_raw, from_metres, atol=1e-5)


def stacked_reference_normals(depth: np.ndarray, v: np.ndarray, u: np.ndarray, step: int, metres_per_unit: float,
                              no_surface: float) -> np.ndarray:
    """The grid normals written the plain way, on (N, 3) stacks with ``np.cross`` and ``np.linalg.norm`` (the
    implementation before the column-wise one): the column-wise code must give the same bits."""
    height, width = depth.shape
    centre_m = depth[v, u].astype(np.float64) * metres_per_unit
    centre = backproject_pixels(centre_m, v, u, INTRINSICS)

    def tangent(dv: int, du: int) -> tuple[np.ndarray, np.ndarray]:
        sides = []
        for sign in (1, -1):
            vn, un = np.clip(v + sign * dv, 0, height - 1), np.clip(u + sign * du, 0, width - 1)
            d = depth[vn, un].astype(np.float64)
            usable = np.isfinite(d) & (d > 0) & (d < no_surface) & ((vn != v) | (un != u))
            d *= metres_per_unit
            sides.append((vn, un, np.where(usable, d, 0.0), np.where(usable, np.abs(d - centre_m), np.inf)))
        (v1, u1, d1, gap1), (v2, u2, d2, gap2) = sides
        ahead = gap1 <= gap2
        neighbour = backproject_pixels(np.where(ahead, d1, d2), np.where(ahead, v1, v2), np.where(ahead, u1, u2),
                                       INTRINSICS)
        return (neighbour - centre) * np.where(ahead, 1.0, -1.0)[:, None], np.minimum(gap1, gap2)

    along_u, gap_u = tangent(0, step)
    along_v, gap_v = tangent(step, 0)
    normals = np.cross(along_u, along_v)
    length = np.linalg.norm(normals, axis=1)
    ray = -centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
    fallback = ~(np.isfinite(gap_u) & np.isfinite(gap_v)) | (length < 1e-12)
    normals = np.where(fallback[:, None], ray, normals / np.where(length > 0, length, 1.0)[:, None])
    normals *= np.where(np.sum(normals * ray, axis=1) < 0, -1.0, 1.0)[:, None]
    return normals.astype(np.float32)


@pytest.mark.parametrize("as_raw", [True, False])
def test_column_wise_normals_are_bit_identical_to_the_stacked_computation(as_raw):
    """Boxes in front of a slanted wall, holes (0) and sky (65535), quantised to centimetres: depth edges, one-sided
    differences, fallbacks and borders, on raw uint16 and on float metres with NaN holes."""
    rng = np.random.default_rng(7)
    metres = plane_depth(np.array([0.1, -0.2, -0.97]) / np.linalg.norm([0.1, -0.2, -0.97]), -6.0)
    for _ in range(6):
        top, left = rng.integers(0, H - 10), rng.integers(0, W - 10)
        metres[top : top + rng.integers(3, 15), left : left + rng.integers(3, 20)] = rng.uniform(1.0, 4.0)
    raw = np.round(metres * 100).astype(np.uint16)
    raw[rng.random((H, W)) < 0.05] = 0
    raw[:, :6] = 65535
    v, u = rng.integers(0, H, 2000), rng.integers(0, W, 2000)
    if as_raw:
        depth, scale, no_surface = raw, 0.01, 65535
    else:
        depth, scale, no_surface = np.where((raw == 0) | (raw == 65535), np.nan, raw * 0.01), 1.0, np.inf
    got = pixel_normals(depth, v, u, INTRINSICS, step=3, metres_per_unit=scale, no_surface=no_surface)
    expected = stacked_reference_normals(depth, v, u, 3, scale, no_surface)
    assert got.dtype == expected.dtype == np.float32
    assert got.tobytes() == expected.tobytes()
