"""Per-frame training/evaluation records for the slot models: encoder input, target points, anchors.

A :class:`FrameRecord` holds, for one (sequence, camera, frame):

- ``depth``: (h, w) float32 planar depth in metres at the model's input size (nearest-neighbour
  resampled; +inf where the ray hit nothing or beyond the 655 m encoding), and ``intrinsics`` for
  that size (OpenCV pixel convention);
- ``points`` (N, 3) float32 target points in the frame's OpenCV camera coordinates (metres) from the
  point-cloud parquet, filtered to ``points="things"`` (car / pedestrian / bicycle) or ``"all"``
  classes and to depth <= ``far_m``; ``instance`` (N,) and ``class_id`` (N,) per point;
- ``anchors``: per-frame k-means of the target points (K clusters, sorted by depth) with centre,
  mean radius and PCA spread — the slot models start from these by construction
  (data-driven initialisation: the single biggest lever for phase one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.io import pointcloud_table, synthia
from pipeline.io.manifest import read_manifest, require_camera_frame
from pipeline.io.synthia import THING_CLASSES, SequenceLayout
from pipeline.params.train import Phase1Params
from pipeline.progress import progress_bar

MAX_DEPTH_M = 655.0


@dataclass
class Anchors:
    """k-means summary of a frame's target points; arrays have a leading K axis (sorted by depth)."""

    centre: np.ndarray  # (K, 3) metres, camera frame
    radius: np.ndarray  # (K,) mean distance of members to the centre, metres (>= 0.05)
    spread: np.ndarray  # (K, 3) sqrt of the PCA eigenvalues, descending, metres
    axes: np.ndarray  # (K, 3, 3) PCA axes as columns (matching ``spread``)
    weight: np.ndarray  # (K,) fraction of the frame's points in the cluster
    label: np.ndarray  # (N,) cluster of each target point


@dataclass
class FrameRecord:
    sequence: str
    camera: str
    frame: int
    depth: np.ndarray
    intrinsics: synthia.Intrinsics
    points: np.ndarray
    instance: np.ndarray
    class_id: np.ndarray
    anchors: Anchors


def frame_times(records: list[FrameRecord]) -> np.ndarray:
    """(T,) time stamps in seconds of ``records`` (frame index / frame rate)."""
    return np.array([r.frame / synthia.FRAME_RATE_HZ for r in records])


def scaled_intrinsics(intrinsics: synthia.Intrinsics, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> synthia.Intrinsics:
    """Intrinsics of an image resized from ``src_hw`` to ``dst_hw`` (pixel centres at integers)."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return synthia.Intrinsics(focal=intrinsics.focal * sx, cx=(intrinsics.cx + 0.5) * sx - 0.5,
                              cy=(intrinsics.cy + 0.5) * sy - 0.5, baseline=intrinsics.baseline)


def resize_depth(depth_m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (NaN -> +inf, i.e. nothing seen along the ray)."""
    import cv2

    filled = np.where(np.isfinite(depth_m), depth_m, np.inf).astype(np.float32)
    return cv2.resize(filled, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


@dataclass
class DepthFrame:
    """One frame's depth map at the model's input size: ``depth`` (H, W) metres along the optical axis (+inf where
    nothing is seen) and the intrinsics at that size (the fields of :class:`FrameRecord` that odometry reads)."""

    frame: int
    depth: np.ndarray
    intrinsics: synthia.Intrinsics


def depth_frames(raw_root: Path, sequence: str, camera: str, frames: list[int], hw: tuple[int, int]) -> list[DepthFrame]:
    """Depth maps of ``frames`` of a raw sequence resized to ``hw`` as the ``frames`` stage resizes its records'
    (also frames it skipped for having too few target points: odometry needs every frame, not only those with objects)."""
    layout = SequenceLayout(raw_root / sequence)
    intrinsics = synthia.read_intrinsics(layout.intrinsics)
    out = []
    for frame in frames:
        depth = synthia.read_depth(layout.depth(camera, frame))
        out.append(DepthFrame(frame, resize_depth(depth, hw), scaled_intrinsics(intrinsics, depth.shape, hw)))
    return out


def anchors_from_clusters(points: np.ndarray, label: np.ndarray, centre: np.ndarray) -> Anchors:
    """Per-cluster radius, PCA spread/axes and weight of ``points`` (N, 3) with ``label`` (N,) in
    ``range(K)`` and centres (K, 3), in the given cluster order (an empty cluster gets radius
    0.05 m, zero spread and weight)."""
    k = len(centre)
    radius, spread, axes, weight = np.full(k, 0.05), np.zeros((k, 3)), np.tile(np.eye(3), (k, 1, 1)), np.zeros(k)
    for i in range(k):
        members = points[label == i] - centre[i]
        if len(members) == 0:
            continue
        radius[i] = max(float(np.linalg.norm(members, axis=1).mean()), 0.05)
        eigval, eigvec = np.linalg.eigh(members.T @ members / len(members))
        spread[i] = np.sqrt(np.clip(eigval[::-1], 0, None))
        axes[i] = eigvec[:, ::-1]
        weight[i] = len(members) / len(points)
    return Anchors(centre.astype(np.float64), radius, spread, axes, weight, label.astype(np.int64))


def kmeans_anchors(points: np.ndarray, k: int, seed: int) -> Anchors:
    """k-means (sklearn, k-means++) with per-cluster radius and PCA; clusters sorted by centre depth."""
    from sklearn.cluster import KMeans

    k_eff = min(k, len(points))
    km = KMeans(n_clusters=k_eff, n_init=3, random_state=seed).fit(points.astype(np.float64))
    order = np.argsort(km.cluster_centers_[:, 2])
    remap = np.empty_like(order)
    remap[order] = np.arange(k_eff)
    anchors = anchors_from_clusters(points, remap[km.labels_], km.cluster_centers_[order])
    pad = k - k_eff  # fewer points than slots: repeat the last cluster (tiny weight marks it)
    if pad:
        anchors = Anchors(*(np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in
                            (anchors.centre, anchors.radius, anchors.spread, anchors.axes, anchors.weight)),
                          anchors.label)
    return anchors


@dataclass(frozen=True)
class FrameSelection:
    """Which points of a frame the slot models fit, and at what input size."""

    points: Literal["things", "all"]
    far_m: float
    input_height: int
    input_width: int
    min_points: int
    slots: int
    seed: int


def frame_selection(params: Phase1Params) -> FrameSelection:
    """Which points of a frame are targets, and the encoder's input size, from the ``train`` section."""
    return FrameSelection(points=params.points, far_m=params.far_m, input_height=params.input_height,
                          input_width=params.input_width, min_points=params.min_points, slots=params.slots,
                          seed=params.seed)


def load_frames(raw_root: Path, clouds_root: Path, sequences: list[str], camera: str, sel: FrameSelection,
                progress: bool = True) -> tuple[list[FrameRecord], int]:
    """Records of every frame of ``sequences`` with at least ``sel.min_points`` target points.

    Returns (records, number of frames skipped for having too few target points).
    """
    path = clouds_root / "manifest.json"
    require_camera_frame(read_manifest(path, "point-cloud manifest not found (run the pointclouds stage)"), path)
    records, skipped = [], 0
    hw = (sel.input_height, sel.input_width)
    bar = progress_bar(total=len(sequences), desc=f"load frames ({sel.points})", unit="seq", disable=not progress)
    for name in sequences:
        layout = SequenceLayout(raw_root / name)
        intrinsics = synthia.read_intrinsics(layout.intrinsics)
        cloud = pointcloud_table.read_partition(clouds_root, name, camera,
                                                columns=["frame", "x", "y", "z", "depth", "class_id", "instance_id"])
        keep = cloud["depth"].to_numpy() <= sel.far_m
        if sel.points == "things":
            keep &= np.isin(cloud["class_id"].to_numpy(), THING_CLASSES)
        cloud = cloud[keep]
        for frame, part in cloud.groupby("frame"):
            if len(part) < sel.min_points:
                skipped += 1
                continue
            depth_full = synthia.read_depth(layout.depth(camera, int(frame)))
            # copy=True: a writable array of its own (pandas may hand out a read-only view, which torch warns about)
            points = part[["x", "y", "z"]].to_numpy(np.float32, copy=True)
            records.append(FrameRecord(
                sequence=name, camera=camera, frame=int(frame), depth=resize_depth(depth_full, hw),
                intrinsics=scaled_intrinsics(intrinsics, depth_full.shape, hw), points=points,
                instance=part["instance_id"].to_numpy(np.int64), class_id=part["class_id"].to_numpy(np.int64),
                anchors=kmeans_anchors(points, sel.slots, sel.seed + int(frame)),
            ))
        all_frames = layout.frames(camera)
        skipped += len(set(all_frames) - set(cloud["frame"].unique().tolist()))
        bar.update()
    bar.close()
    return records, skipped
