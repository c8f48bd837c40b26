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
