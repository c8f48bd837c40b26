"""Dataset statistics and one overview figure per sequence (first version of the `evaluate` stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic, pointcloud_table, synthia
from pipeline.io.synthia import CLASS_COLORS, CLASS_NAMES, SequenceLayout


def class_palette(class_ids: np.ndarray) -> np.ndarray:
    """SYNTHIA README colours (N, 3) in [0, 1] for class ids."""
    lut = np.zeros((max(CLASS_COLORS) + 1, 3))
    for cid, colour in CLASS_COLORS.items():
        lut[cid] = np.array(colour) / 255
    return lut[np.clip(class_ids, 0, len(lut) - 1)]


def sequence_stats(layout: SequenceLayout, camera: str, clouds_root: Path) -> dict:
    """Pixel statistics from the raw frames and point statistics from the parquet partition."""
    frames = layout.frames(camera)
    valid, sky = [], []
    for frame in frames:
        raw = synthia.read_depth_cm(layout.depth(camera, frame))
        valid.append(float(np.mean((raw != synthia.DEPTH_INVALID) & (raw != synthia.DEPTH_NO_HIT))))
        sky.append(float(np.mean(raw == synthia.DEPTH_NO_HIT)))
    points = pointcloud_table.read_partition(clouds_root, layout.name, camera,
                                             columns=["frame", "depth", "class_id", "instance_id"])
    per_frame = points.groupby("frame")
    instances = per_frame["instance_id"].apply(lambda s: len(np.unique(s[s > 0])))
    stats = {
        "frames": len(frames),
        "valid_pixel_fraction": round(float(np.mean(valid)), 4),
        "sky_pixel_fraction": round(float(np.mean(sky)), 4),
        "points_per_frame": round(float(per_frame.size().mean()), 1),
        "instances_per_frame": round(float(instances.mean()), 2),
        "depth_median_m": round(float(points["depth"].median()), 2),
        "depth_p95_m": round(float(points["depth"].quantile(0.95)), 2),
    }
    gt = layout.root / "groundtruth" / "objects.parquet"
    if gt.is_file():
        objects = pd.read_parquet(gt)
        first = objects[objects["frame"] == objects["frame"].min()]
        stats["objects_by_motion"] = {k: int(v) for k, v in first.groupby("motion").size().items()}
    return stats


def class_fractions(clouds_root: Path, sequences: list[str], camera: str) -> dict[str, float]:
    """Fraction of points per class name over all sequences."""
    counts: dict[int, int] = {}
    for name in sequences:
        ids = pointcloud_table.read_partition(clouds_root, name, camera, columns=["class_id"])["class_id"]
        for cid, n in ids.value_counts().items():
            counts[int(cid)] = counts.get(int(cid), 0) + int(n)
    total = sum(counts.values()) or 1
    return {CLASS_NAMES.get(c, str(c)): round(n / total, 4) for c, n in sorted(counts.items())}


def class_legend(ax, class_ids: np.ndarray) -> None:
    """Legend (right of ``ax``) naming each class present in ``class_ids`` in its SYNTHIA colour."""
    from pipeline.eval.figure_kit import colour_legend

    present = [int(c) for c in np.unique(class_ids)]
    colour_legend(ax, list(class_palette(np.asarray(present))), [CLASS_NAMES.get(c, str(c)) for c in present], "class")


def overview_figure(layout: SequenceLayout, camera: str, clouds_root: Path, out: Path) -> Path:
    """Write :func:`overview_png` to ``out`` (atomically); returns ``out``."""
    atomic.write_bytes(out, overview_png(layout, camera, clouds_root))
    return out


def overview_png(layout: SequenceLayout, camera: str, clouds_root: Path) -> bytes:
    """PNG (80 dpi) with RGB, depth (colour bar in log10 metres), labels and a top view of the point cloud of
    the middle frame; the label and point panels share one class legend."""
    from pipeline.eval import figure_kit

    plt = figure_kit.pyplot()
    frames = layout.frames(camera)
    frame = frames[len(frames) // 2]
    depth = synthia.read_depth(layout.depth(camera, frame))
    class_id, _ = synthia.read_labels(layout.labels(camera, frame))
    rgb = synthia.read_rgb(layout.rgb(camera, frame))
    cloud = pointcloud_table.read_frame(clouds_root, layout.name, camera, frame, columns=["x", "z", "class_id"])
    fig, axes = plt.subplots(2, 2, figsize=(14, 8))
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title(figure_kit.wrap(f"{layout.name} {camera} frame {frame}: RGB", 50))
    im = axes[0, 1].imshow(np.log10(np.nan_to_num(depth, nan=np.nanmax(depth)) + 1e-3), cmap="magma_r")
    axes[0, 1].set_title("depth (sky shown as the farthest depth)")
    figure_kit.colorbar(fig, im, axes[0, 1], "log10 depth (m)")
    axes[1, 0].imshow(class_palette(class_id))
    axes[1, 0].set_title("ground-truth classes (GT/LABELS)")
    axes[1, 1].scatter(cloud["x"], cloud["z"], s=0.5, c=class_palette(cloud["class_id"].to_numpy()))
    axes[1, 1].set_aspect("equal")
    axes[1, 1].set_xlabel("x (m, right)")
    axes[1, 1].set_ylabel("z (m, forward)")
    axes[1, 1].set_title(f"point cloud, top view ({len(cloud)} points)")
    class_legend(axes[1, 1], np.union1d(np.unique(class_id), cloud["class_id"].to_numpy()))
    for ax in axes.flat[:3]:
        ax.axis("off")
    fig.tight_layout()
    return figure_kit.png_bytes(fig, dpi=80)


def report(layouts: list[SequenceLayout], camera: str, clouds_root: Path) -> tuple[dict, dict, dict[str, bytes]]:
    """The whole dataset report of ``layouts``: (totals, per-sequence stats, overview PNG per sequence name).

    Totals: sequences, frames, mean points and instances per frame over sequences, class fractions.
    Reads only ``data/raw`` and the point clouds, so it can run beside the model evaluation."""
    per_sequence = {layout.name: sequence_stats(layout, camera, clouds_root) for layout in layouts}
    pngs = {layout.name: overview_png(layout, camera, clouds_root) for layout in layouts}
    totals = {
        "sequences": len(layouts),
        "frames": sum(s["frames"] for s in per_sequence.values()),
        "points_per_frame": round(sum(s["points_per_frame"] for s in per_sequence.values()) / len(layouts), 1),
        "instances_per_frame": round(sum(s["instances_per_frame"] for s in per_sequence.values()) / len(layouts), 2),
        "class_fraction": class_fractions(clouds_root, [l.name for l in layouts], camera),
    }
    return totals, per_sequence, pngs
