"""Phase-one figures and mesh export: ray-cast reconstructions, slot segmentation, prototypes, PLY."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.camera import pixel_rays
from pipeline.data.frames import FrameRecord
from pipeline.geometry.raycast import MeshRaycaster
from pipeline.eval import figure_kit
from pipeline.io import atomic

SLOT_COLOURS = np.array([[0.90, 0.10, 0.10], [0.10, 0.60, 0.90], [0.20, 0.80, 0.20], [0.95, 0.60, 0.10],
                         [0.60, 0.20, 0.80], [0.10, 0.80, 0.80], [0.90, 0.40, 0.70], [0.50, 0.50, 0.10],
                         [0.40, 0.40, 0.90], [0.70, 0.30, 0.20], [0.30, 0.60, 0.50], [0.80, 0.80, 0.30]])


def slot_colours(k: int) -> np.ndarray:
    return SLOT_COLOURS[np.arange(k) % len(SLOT_COLOURS)]


def raycast_slots(verts: np.ndarray, faces: np.ndarray, record: FrameRecord) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast K meshes (K, V, 3; camera frame) with the record's camera: (depth (h, w) with +inf
    where no slot is hit, slot id (h, w) with -1 there). Planar depth, as the input."""
    scene = MeshRaycaster()
    ids = [scene.add_mesh(v, faces) for v in verts]
    h, w = record.depth.shape
    dirs = pixel_rays(h, w, record.intrinsics).reshape(-1, 3)
    depth, geometry, _ = scene.cast(np.zeros_like(dirs), dirs)
    depth, geometry = depth.reshape(h, w), geometry.reshape(h, w)
    lut = {g: k for k, g in enumerate(ids)}
    slot = np.vectorize(lambda g: lut.get(g, -1))(geometry)
    return np.where(np.isfinite(depth), depth, np.inf), slot


def reconstruction_figure(record: FrameRecord, verts: np.ndarray, faces: np.ndarray, point_slot: np.ndarray,
                          title: str, out: Path) -> Path:
    """Input depth | depth ray-cast from the slot meshes (one colour bar, metres) | slot segmentation |
    top view of the points (one slot legend for both)."""

    plt = figure_kit.pyplot()
    rendered, slot = raycast_slots(verts, faces, record)
    colours = slot_colours(len(verts))
    seg = np.where(slot[..., None] >= 0, colours[np.clip(slot, 0, None)], 1.0)
    vmax = np.nanpercentile(np.where(np.isfinite(record.depth), record.depth, np.nan), 95)
    fig, axes = plt.subplots(2, 2, figsize=(14, 8.5))
    im = axes[0, 0].imshow(np.where(np.isfinite(record.depth), record.depth, np.nan), cmap="magma_r", vmin=0, vmax=vmax)
    axes[0, 0].set_title(figure_kit.wrap(f"input depth ({record.sequence} frame {record.frame}; white = sky/invalid)", 55))
    figure_kit.colorbar(fig, im, axes[0, 0], "depth (m)")
    im = axes[0, 1].imshow(np.where(np.isfinite(rendered), rendered, np.nan), cmap="magma_r", vmin=0, vmax=vmax)
    axes[0, 1].set_title(figure_kit.wrap(f"depth ray-cast from {len(verts)} slot meshes: {title}", 55))
    figure_kit.colorbar(fig, im, axes[0, 1], "depth (m)")
    axes[1, 0].imshow(seg)
    axes[1, 0].set_title("slot segmentation (ray-cast; white = no slot)")
    axes[1, 1].scatter(record.points[:, 0], record.points[:, 2], s=1, c=colours[point_slot])
    for k, v in enumerate(verts):
        axes[1, 1].scatter(v[:, 0], v[:, 2], s=0.3, color=colours[k], alpha=0.3)
    axes[1, 1].set_aspect("equal")
    axes[1, 1].set_xlabel("x (m, right)")
    axes[1, 1].set_ylabel("z (m, forward)")
    axes[1, 1].set_title(figure_kit.wrap("top view: target points by nearest slot, mesh vertices", 55))
    figure_kit.slot_legend(axes[1, 1], colours)
    figure_kit.image_axes(*axes.flat[:3])
    fig.tight_layout()
    return figure_kit.save(fig, out, dpi=70)


def prototype_gallery(shapes: np.ndarray, faces: np.ndarray, usage: np.ndarray, out: Path,
                      classes: dict[str, list[int]] | None = None) -> Path:
    """One 3-D surface plot per learned prototype (unit scale, no pose; x right, z forward, y up), with its
    mean usage (the mean softmax weight over held-out slots, in [0, 1]) and, given ``classes`` (class ->
    matched slots per prototype), its counts; at most 4 prototypes per row."""

    plt = figure_kit.pyplot()
    p = len(shapes)
    cols = min(p, 4)
    rows = -(-p // cols)
    fig = plt.figure(figsize=(3.6 * cols, 3.6 * rows + 0.6))
    for i, shape in enumerate(shapes):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        ax.plot_trisurf(shape[:, 0], shape[:, 2], -shape[:, 1], triangles=faces, color=SLOT_COLOURS[i % 12], alpha=0.8)
        lim = np.abs(shape).max()
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        counts = ", ".join(f"{name} {c[i]}" for name, c in (classes or {}).items() if c[i])
        ax.set_title(f"prototype {i}: usage {usage[i]:.2f}" + (f"\n{counts}" if counts else ""), pad=0, fontsize=9)
        ax.set_axis_off()
    fig.suptitle("learned prototypes (unit ico-sphere + learned offsets; usage = mean weight on held-out slots)")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.8 / (3.6 * rows + 0.6), wspace=0.05, hspace=0.15)
    return figure_kit.save(fig, out, dpi=90)  # one row of 4.2 inches: 378 pixels high


def export_ply(verts: np.ndarray, faces: np.ndarray, out: Path) -> Path:
    """K slot meshes merged into one PLY (camera frame, metres), vertex colours per slot."""
    import open3d as o3d

    k, v, _ = verts.shape
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(verts.reshape(-1, 3).astype(np.float64)),
        o3d.utility.Vector3iVector(np.concatenate([faces + i * v for i in range(k)]).astype(np.int32)))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.repeat(slot_colours(k), v, axis=0))
    mesh.compute_vertex_normals()

    def write(tmp: Path) -> None:  # the temporary name keeps the .ply suffix open3d needs
        if not o3d.io.write_triangle_mesh(str(tmp), mesh, write_ascii=False):
            raise OSError(f"{out}: PLY export failed")

    atomic.write_with(out, write)
    return out
