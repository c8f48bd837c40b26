"""Point cloud of one frame as a PNG (top view + perspective scatter) and a PLY file (open3d).

Points are (N, 3) metres in OpenCV camera axes (x right, y down, z forward) unless stated otherwise;
colours (N, 3) uint8 RGB or floats in [0, 1]. The top view plots x against z (bird's eye, forward up);
the perspective view is a matplotlib 3-D scatter with the y axis flipped so "up" is up.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.io import atomic


def _colours01(colors: np.ndarray | None, n: int) -> np.ndarray | None:
    if colors is None:
        return None
    colors = np.asarray(colors)
    if colors.shape != (n, 3):
        raise ValueError(f"colors shape {colors.shape} does not match {n} points")
    return colors.astype(np.float64) / 255.0 if colors.dtype == np.uint8 else np.clip(colors.astype(np.float64), 0, 1)


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write points (N, 3) and optional colours as a binary PLY with open3d, atomically."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    rgb = _colours01(colors, len(points))
    if rgb is not None:
        cloud.colors = o3d.utility.Vector3dVector(rgb)

    def writer(tmp: Path) -> None:  # the temporary name ends in .ply, so open3d picks the format
        if not o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
            raise OSError(f"{path}: open3d could not write the PLY")

    atomic.write_with(path, writer)


def write_png(path: Path, points: np.ndarray, colors: np.ndarray | None = None, title: str = "",
              max_points: int = 20000, seed: int = 0) -> None:
    """Top view (x vs z) and a perspective 3-D scatter side by side; at most ``max_points`` drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.asarray(points, dtype=np.float64)
    rgb = _colours01(colors, len(points))
    if len(points) > max_points:
        keep = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points, rgb = points[keep], None if rgb is None else rgb[keep]
    colour = rgb if rgb is not None else points[:, 2]
    fig = plt.figure(figsize=(11, 5))
    top = fig.add_subplot(1, 2, 1)
    top.scatter(points[:, 0], points[:, 2], c=colour, s=1, cmap=None if rgb is not None else "viridis")
    top.set_xlabel("x (m, right)")
    top.set_ylabel("z (m, forward)")
    top.set_aspect("equal", adjustable="datalim")
    top.set_title("top view")
    persp = fig.add_subplot(1, 2, 2, projection="3d")
    persp.scatter(points[:, 0], points[:, 2], -points[:, 1], c=colour, s=1, cmap=None if rgb is not None else "viridis")
    persp.set_xlabel("x")
    persp.set_ylabel("z")
    persp.set_zlabel("-y (up)")
    persp.view_init(elev=20, azim=-70)
    persp.set_title("perspective")
    fig.suptitle(title or f"{len(points)} points")
    fig.tight_layout()
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_frame_views(points: np.ndarray, out_dir: Path | str, name: str, colors: np.ndarray | None = None,
                      title: str = "") -> dict[str, Path]:
    """Write ``<out_dir>/<name>.png`` and ``<out_dir>/<name>.ply``; return their paths."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (N, 3) array, got shape {points.shape}")
    finite = np.isfinite(points).all(1)
    points = points[finite]
    colors = None if colors is None else np.asarray(colors)[finite]
    out_dir = Path(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"png": out_dir / f"{name}.png", "ply": out_dir / f"{name}.ply"}
    write_png(paths["png"], points, colors, title)
    write_ply(paths["ply"], points, colors)
    return paths
