"""DVC stage ``concerto``: point clouds -> cached Concerto (PTv3) features per frame, for LAQ training.

:func:`run` loads the encoder (random weights announced on stderr and in MLflow) and
:func:`build_features` reads the point-cloud parquet (``data/drives/points``, the many small drives of the ``drives``
stage, by default; ``data/pointclouds`` from ground-truth depth; or ``data/vggt/points`` from the ``vggt`` stage; same
schema, ``pipeline/io/pointcloud_table.py``; the drives' split is copied into the features manifest), runs the encoder of
``pipeline/models/ptv3`` once per frame (eval mode, seeded) and writes ``data/features/`` atomically in the
format of ``pipeline/data/features_cache.py``: ``<sequence>/<camera_dirname>.npz`` with ``frames``,
``time_s``, ``global`` (T, C), ``tokens`` (T, N, C), ``token_xyz`` (T, N, 3), ``token_mask`` (T, N), and
``manifest.json``; it returns the metrics the stage logs to ``reports/concerto/metrics.json``.

Conventions:
- Model input frame: Concerto was trained on z-up scenes, so each frame's OpenCV camera points (x right,
  y down, z forward) are rotated into a gravity-like z-up frame (x right, y forward, z up) before the
  library's transform (centring, grid sampling, colour/255, real normals rotated alike). ``token_xyz`` is
  rotated back: metres in the OpenCV camera frame of that frame.
- ``global`` = the library's ``global_mean``: mean over the stage-0 voxels of the up-cast features, so
  C = the up-cast width D (128 tiny, 896 concerto_small, 1088 base, 1536 large) for globals and tokens.
- Tokens (``concerto.tokens``): ``bev`` (default) pools the per-point features into a fixed bird's-eye grid of
  the camera frame (``pipeline/models/ptv3/bev_tokens.py``; token n is the same region in every frame, empty cells masked);
  ``fps``: ``spatial_tokens`` farthest-point/Voronoi tokens of the library (FPS order, not aligned across
  frames; use ``token_xyz``), where frames with fewer voxels than N repeat tokens and mask the repeats.
  ``concerto.bev_ground`` says whether the road's points enter the bird's-eye cells (:func:`bev_points`);
  ``both`` keeps two poolings per cell side by side, every point and the points above the ground, so C doubles
  for tokens and globals (:func:`bev_cells`).

Random weights (the offline default) are announced in the manifest and in the metrics (``RANDOM_NOTE``); the
stage also warns on stderr and tags the MLflow run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import heap, runtime
from pipeline.config import parse_section
from pipeline.data import features_cache
from pipeline.data.sampling import random_subsample
from pipeline.geometry.ground import height_above_ground
from pipeline.io import atomic, pointcloud_table
from pipeline.io.manifest import read_manifest, require_camera_frame
from pipeline.models.ptv3.bev_tokens import BEVGrid, pool_bev
from pipeline.models.ptv3.features import extract_features
from pipeline.models.ptv3.loader import RANDOM_INIT, load_encoder
from pipeline.models.ptv3.model import PointTransformerV3
from pipeline.params.concerto import ConcertoParams
from pipeline.params.data import DataParams, DownloadParams
from pipeline.progress import progress_bar
from pipeline.tracking import stage_run

# params.yaml concerto.preset -> preset name of pipeline/models/ptv3/config.py
PRESET_NAMES = {"tiny": "tiny", "small": "concerto_small", "base": "concerto_base", "large": "concerto_large"}

RANDOM_NOTE = "random weights: features are not meaningful (offline default; set concerto.weights for real ones)"
POINTS_DIRS = {"drives": Path("data/drives/points"), "pointclouds": Path("data/pointclouds"),
               "vggt": Path("data/vggt/points")}
POOLING = "mean over stage-0 voxels of the up-cast features (library global_mean); C = up-cast width"
DEAD_STD = 1e-6
# (x right, y forward, z up) from OpenCV camera axes (x right, y down, z forward): x'=x, y'=z, z'=-y; det = +1.
ZUP_FROM_CV = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
COLUMNS = ["frame", "x", "y", "z", "r", "g", "b", "nx", "ny", "nz"]
TRIM_EVERY = 8  # frames between heap trims (heap.release_heap): a trim per frame cost ~40 ms of system time
# Input points per worker process started: a spawned worker first imports torch and builds the encoder (~3 s on a
# 2-core machine), the time one process takes to encode ~100,000 points of the tiny preset (~33,000 points/s), so a
# worker with 200,000 points to encode spends at most a third of its time starting.
POINTS_PER_WORKER = 200_000


def read_points_manifest(points_root: Path, cameras: tuple[str, ...]) -> tuple[dict, list[str], int]:
    """Input manifest, sorted sequence names having every camera, and the total frame count (the manifest's total
    point count is :func:`manifest_points`).

    ``cameras``: ``data.cameras``; a manifest that names its own ``cameras`` (the ``video`` camera of the video
    source) overrides them.
    """
    path = points_root / "manifest.json"
    manifest = read_manifest(path, f"point-cloud manifest not found (run the stage that writes {points_root})")
    require_camera_frame(manifest, path)
    cameras = tuple(manifest.get("cameras", cameras))
    parts = {(p["sequence"], p["camera"]): p for p in manifest.get("partitions", [])}
    sequences = sorted({s for s, _ in parts})
    if not sequences:
        raise ValueError(f"{path}: no partitions listed")
    for sequence in sequences:
        for camera in cameras:
            if (sequence, camera) not in parts:
                raise ValueError(f"{path}: no partition for {sequence} {camera} (data.cameras lists it)")
    frames = sum(parts[(s, c)]["frames"] for s in sequences for c in cameras)
    return manifest, sequences, frames


def manifest_points(manifest: dict) -> int:
    """Points of every partition listed in a point-cloud manifest (0 where a partition does not say)."""
    return sum(int(p.get("points", 0)) for p in manifest.get("partitions", []))


def useful_workers(requested: int, points: int) -> int:
    """Worker processes worth starting for ``points`` input points: at most ``requested``, one per
    :data:`POINTS_PER_WORKER` points, at least 1 (a tiny input is encoded in this process, without a pool)."""
    return max(1, min(requested, points // POINTS_PER_WORKER))


def encode_partition(model: PointTransformerV3, points_root: Path, sequence: str, seq_index: int, camera: str,
                     p: ConcertoParams, bar, stats: dict) -> dict[str, np.ndarray]:
    """Features of every frame of one (sequence, camera) partition: arrays for ``write_features``.

    ``bar``: a progress bar (``pipeline/progress.py``) advanced once per frame; ``stats``: running totals (``model_seconds``, ``points``,
    ``voxels``, last ``meta``) updated in place.
    """
    table = pointcloud_table.read_partition(points_root, sequence, camera, columns=COLUMNS)
    where = pointcloud_table.partition_path(points_root, sequence, camera)
    frame_col = table["frame"].to_numpy()
    xyz_all = table[["x", "y", "z"]].to_numpy(np.float64)
    rgb_all = table[["r", "g", "b"]].to_numpy(np.uint8)
    nrm_all = table[["nx", "ny", "nz"]].to_numpy(np.float64)
    if not (np.isfinite(xyz_all).all() and np.isfinite(nrm_all).all()):
        raise ValueError(f"{where}: points or normals contain NaN or inf")
    if len(frame_col) == 0:
        raise ValueError(f"{where}: no points")
    order = np.argsort(frame_col, kind="stable")
    frames, starts = np.unique(frame_col[order], return_index=True)
    ends = [*starts[1:], len(order)]
    out: dict[str, list] = {"global_": [], "tokens": [], "token_xyz": [], "token_mask": []}
    grid, bev = BEVGrid(p.bev_cells_x, p.bev_cells_z, p.bev_width, p.bev_depth), p.tokens == "bev"
    for frame, start, end in zip(frames, starts, ends, strict=True):
        rows = order[start:end]
        if p.max_points and len(rows) > p.max_points:
            rows = rows[random_subsample(len(rows), p.max_points, np.random.default_rng([p.seed, seq_index, int(frame)]))]
        xyz = xyz_all[rows] @ ZUP_FROM_CV.T
        nrm = nrm_all[rows] @ ZUP_FROM_CV.T
        t0 = time.perf_counter()
        res = extract_features(model, xyz, rgb_all[rows], nrm, grid_size=p.grid_size, seed=p.seed,
                               n_spatial_tokens=1 if bev else p.spatial_tokens, return_point_features=bev)
        stats["model_seconds"] += time.perf_counter() - t0
        stats["points"] += len(rows)
        stats["voxels"] += res["num_voxels"]
        stats["meta"] = res["meta"]
        if bev:
            cells, above_mean = bev_cells(xyz_all[rows], res["point_features"], grid, p, stats)  # camera-frame points
            out["global_"].append(res["global_mean"] if above_mean is None
                                  else np.concatenate([res["global_mean"], above_mean]))
            out["tokens"].append(cells["tokens"])
            out["token_xyz"].append(cells["token_xyz"])
            out["token_mask"].append(cells["token_mask"])
            stats["points_in_grid"] += int(cells["counts"].sum())
        else:
            out["global_"].append(res["global_mean"])
            out["tokens"].append(res["spatial_tokens"])
            out["token_xyz"].append(res["spatial_token_xyz"].astype(np.float64) @ ZUP_FROM_CV)  # back to camera axes
            out["token_mask"].append(res["spatial_token_mask"])
        if len(out["global_"]) % TRIM_EVERY == 0:
            heap.release_heap()
        bar.update()
    return {"frames": frames.astype(np.int32), **{k: np.stack(v) for k, v in out.items()}}


BEV_GROUND_TEXT = {"keep": "", "drop": " over the points more than {margin:g} above the frame's fitted ground plane",
                   "fill": " over the points more than {margin:g} above the frame's fitted ground plane, or over its "
                           "ground points where a cell has no other",
                   "both": " in the first C / 2 channels, over the points more than {margin:g} above the frame's fitted "
                           "ground plane in the last C / 2 (zeros where none)"}
BOTH_POOLING = ("; bev_ground = both: C = twice the up-cast width, the second half the mean feature of the points above "
                "the fitted ground plane (zeros without any)")
SUMMED_STATS = ("model_seconds", "points", "points_in_grid", "frames_without_ground", "voxels")


def new_stats() -> dict[str, Any]:
    """Running totals of an encoding (:data:`SUMMED_STATS`, summed over workers) and the last frame's ``meta``."""
    return {**dict.fromkeys(SUMMED_STATS, 0), "model_seconds": 0.0, "meta": None}


def above_ground(xyz: np.ndarray, p: ConcertoParams, stats: dict) -> np.ndarray:
    """(M,) bool: the points of a frame (``xyz`` (M, 3), OpenCV camera axes) more than ``p.bev_ground_margin`` above
    its fitted ground plane (:func:`pipeline.geometry.ground.height_above_ground`, seeded by ``p.seed``). A frame
    without a plane: every point, counted in ``stats["frames_without_ground"]``."""
    height = height_above_ground(xyz, p.seed)
    if height is None:
        stats["frames_without_ground"] += 1
        return np.ones(len(xyz), dtype=bool)
    return height > p.bev_ground_margin


def bev_points(xyz: np.ndarray, grid: BEVGrid, p: ConcertoParams, stats: dict) -> np.ndarray:
    """(M,) bool: the points of a frame (``xyz`` (M, 3), OpenCV camera axes) pooled into its bird's-eye tokens.

    ``p.bev_ground``: ``keep`` pools every point; ``drop`` only the points above the ground (:func:`above_ground`);
    ``fill`` those, plus the ground points of the cells that hold no other point. Why: the road looks alike
    everywhere, and its points (pixel-uniform samples of a plane seen from a tilted camera) make tokens that follow
    the camera, not the scene. (``both`` pools twice: :func:`bev_cells`.)
    """
    if p.bev_ground in ("keep", "both"):
        return np.ones(len(xyz), dtype=bool)
    above = above_ground(xyz, p, stats)
    if p.bev_ground == "drop":
        return above
    cell = grid.cell_of(xyz)
    return above | ~np.isin(cell, cell[above])


def bev_cells(xyz: np.ndarray, features: np.ndarray, grid: BEVGrid, p: ConcertoParams,
              stats: dict) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A frame's bird's-eye cells (:func:`pipeline.models.ptv3.bev_tokens.pool_bev` of the :func:`bev_points`;
    ``xyz`` (M, 3) camera frame, ``features`` (M, C)), and None.

    ``both``: each cell's token is [mean feature of all its points, mean feature of its points above the ground]
    (2C; the second half zeros where none is above), its centre and occupancy from all its points, so the road
    stays in the tokens while the part that moves with the scene has channels of its own; the second value is
    then the mean feature (C,) of the frame's points above the ground (zeros without any), the second half of the
    frame's global feature."""
    if p.bev_ground != "both":
        pooled = bev_points(xyz, grid, p, stats)
        return pool_bev(xyz[pooled], features[pooled], grid), None
    cells = pool_bev(xyz, features, grid)
    above = above_ground(xyz, p, stats)
    cells["tokens"] = np.concatenate([cells["tokens"], pool_bev(xyz[above], features[above], grid)["tokens"]], -1)
    above_mean = features[above].mean(0) if above.any() else np.zeros(features.shape[1])
    return cells, above_mean.astype(np.float32)


_WORKER_MODEL: list[PointTransformerV3] = []


def _init_worker(p: ConcertoParams, threads: int) -> None:
    """Worker process (spawned: no state inherited from a parent's thread pools): its own copy of the encoder,
    loaded as the parent's (:func:`load_model`, seeded), on the CPU with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    _WORKER_MODEL[:] = [load_model(p, torch.device("cpu"))]


def _encode_task(task: tuple) -> tuple[dict[str, np.ndarray], dict]:
    """One partition in a worker process: (arrays, its own stats) (:func:`encode_partition`)."""
    points_root, sequence, seq_index, camera, p = task
    stats = new_stats()
    return encode_partition(_WORKER_MODEL[0], points_root, sequence, seq_index, camera, p, _NoBar(), stats), stats


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def encoded_partitions(model: PointTransformerV3, points_root: Path, sequences: list[str], cameras: tuple[str, ...],
                       p: ConcertoParams, bar, stats: dict, workers: int):
    """Yield (sequence, camera, arrays) of every partition in order, ``workers`` processes at a time (CPU only;
    every frame is seeded, so the arrays do not depend on ``workers``); ``stats`` summed in place."""
    tasks = [(points_root, s, i, c, p) for i, s in enumerate(sequences) for c in cameras]
    if workers <= 1 or len(tasks) < 2 or next(model.parameters()).device.type != "cpu":
        for _, sequence, seq_index, camera, _ in tasks:
            yield sequence, camera, encode_partition(model, points_root, sequence, seq_index, camera, p, bar, stats)
        return
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(p, runtime.torch_threads()))
    try:
        for task, (arrays, part) in zip(tasks, pool.imap(_encode_task, tasks), strict=True):
            for key in SUMMED_STATS:
                stats[key] += part[key]
            stats["meta"] = part["meta"]
            bar.update(len(arrays["frames"]))
            yield task[1], task[3], arrays
    finally:
        pool.terminate()


def feature_statistics(globals_: np.ndarray, masks: np.ndarray) -> dict:
    """Mean/std over all global values; dead channels = std over frames below DEAD_STD; valid-token share."""
    per_channel_std = globals_.std(axis=0)
    return {"global_mean": float(globals_.mean()), "global_std": float(globals_.std()),
            "global_channel_std_mean": float(per_channel_std.mean()),
            "dead_channel_fraction": float((per_channel_std < DEAD_STD).mean()),
            "dead_channel_rule": f"std over frames of the global feature < {DEAD_STD:g}",
            "token_valid_fraction": float(masks.mean())}


def build_features(points_root: Path, out_root: Path, cameras: tuple[str, ...], p: ConcertoParams,
                   model: PointTransformerV3, device: torch.device, progress: bool = True, workers: int = 1) -> dict:
    """Encode every frame, write ``out_root`` atomically (npz per sequence/camera + manifest); return metrics.

    ``model``: the encoder of :func:`load_model` on ``device``; ``progress``: a progress bar over frames;
    ``workers``: processes encoding partitions in parallel on the CPU (same output for any number).
    """
    in_manifest, sequences, total = read_points_manifest(points_root, cameras)
    cameras = tuple(in_manifest.get("cameras", cameras))
    random_weights = model.weights_source == RANDOM_INIT
    stats = new_stats()
    globals_, masks = [], []
    start = time.perf_counter()
    with atomic.atomic_dir(out_root) as tmp:
        bar = progress_bar(total=total, desc="concerto features", unit="frame", disable=not progress)
        try:
            for sequence, camera, arrays in encoded_partitions(model, points_root, sequences, cameras, p, bar, stats,
                                                               workers):
                features_cache.write_features(features_cache.features_path(tmp, sequence, camera), **arrays)
                globals_.append(arrays["global_"])
                masks.append(arrays["token_mask"])
        finally:
            bar.close()
        meta = stats["meta"]
        manifest = {
            "weights_source": str(model.weights_source), "random_weights": random_weights,
            "preset": str(model.preset_name), "channels": all_channels(p, meta), "tokens": p.n_tokens,
            "pooling": POOLING + (BOTH_POOLING if pools_twice(p) else ""),
            "points_from": p.points_from, "grid_size": p.grid_size, "camera": list(cameras),
            "sequences": sequences, "coordinates": "camera",
            "points_units": str(in_manifest.get("units", "metres")),
            "input": str(in_manifest.get("input", "sequences")),  # videos: no camera poses (LAQ skips pose metrics)
            # drives: their own train/val/test split (data/drives) and ground truth (LAQ reads both)
            "frame_stride": int(in_manifest.get("frame_stride", 1)),
            "token_xyz_frame": "OpenCV camera axes of each frame (x right, y down, z forward)",
            "model_input_frame": "z-up: (x, z, -y) of the OpenCV camera axes",
            "token_layout": p.tokens, "token_order": token_order(p, meta), "upcast": meta["upcast"], "seed": p.seed,
            "max_points": p.max_points, "enc_channels": meta["enc_channels"],
        }
        if "splits" in in_manifest:
            manifest["splits"] = in_manifest["splits"]
        if p.tokens == "bev":
            manifest.update({"bev_cells_x": p.bev_cells_x, "bev_cells_z": p.bev_cells_z,
                             "bev_width": p.bev_width, "bev_depth": p.bev_depth,
                             "bev_ground": p.bev_ground, "bev_ground_margin": p.bev_ground_margin})
        if random_weights:
            manifest["note"] = RANDOM_NOTE
        features_cache.write_manifest(tmp, manifest)
    seconds = time.perf_counter() - start
    all_globals = np.concatenate(globals_)
    metrics = {
        "weights_source": manifest["weights_source"], "random_weights": random_weights, "preset": manifest["preset"],
        "points_from": p.points_from, "grid_size": p.grid_size, "channels": manifest["channels"],
        "tokens": p.n_tokens, "token_layout": p.tokens, "device": str(device), "torch_threads": runtime.torch_threads(),
        "sequences": len(sequences), "frames": int(len(all_globals)), "points": stats["points"],
        "voxels_per_frame": round(stats["voxels"] / len(all_globals), 1),
        "points_per_s": round(stats["points"] / stats["model_seconds"], 1),
        "frames_per_s": round(len(all_globals) / seconds, 3),
        "model_seconds": round(stats["model_seconds"], 2), "seconds": round(seconds, 2),
        "peak_rss_mb": round(runtime.peak_rss_mb(), 1),
        "features": feature_statistics(all_globals, np.concatenate(masks)),
    }
    if p.tokens == "bev" and stats["frames_without_ground"]:
        print(f"WARNING: concerto: {stats['frames_without_ground']} of {len(all_globals)} frames have no fitted ground "
              f"plane; their tokens pool every point (concerto.bev_ground = {p.bev_ground})", file=sys.stderr, flush=True)
    if p.tokens == "bev":
        metrics["points_in_grid_fraction"] = round(stats["points_in_grid"] / max(1, stats["points"]), 4)
        metrics["bev_ground"] = p.bev_ground
        metrics["frames_without_ground_plane"] = stats["frames_without_ground"]
    if random_weights:
        metrics["note"] = RANDOM_NOTE
    metrics.update(runtime.cuda_memory_metrics(device))
    return metrics


def pools_twice(p: ConcertoParams) -> bool:
    """Whether every bird's-eye cell holds two poolings side by side (``bev_ground = both``, :func:`bev_cells`)."""
    return p.tokens == "bev" and p.bev_ground == "both"


def all_channels(p: ConcertoParams, meta: dict) -> int:
    """C of the cached globals and tokens: the up-cast width, twice it when the cells pool twice."""
    return int(meta["feature_dim"]) * (2 if pools_twice(p) else 1)


def token_order(p: ConcertoParams, meta: dict) -> str:
    """How the N tokens of a frame are ordered (manifest text)."""
    if p.tokens == "fps":
        return meta["spatial_token_order"]
    return (f"bird's-eye grid of the camera frame, aligned across frames: token = row * {p.bev_cells_x} + col, "
            f"{p.bev_cells_x} columns over x in [-{p.bev_width / 2:g}, {p.bev_width / 2:g}), {p.bev_cells_z} rows over "
            f"z in [0, {p.bev_depth:g}) (units of the points); mean point features per cell"
            + BEV_GROUND_TEXT[p.bev_ground].format(margin=p.bev_ground_margin) + "; zeros and "
            f"token_mask False in empty cells (token_xyz = cell centre there)")


def load_model(p: ConcertoParams, device: torch.device) -> PointTransformerV3:
    """The encoder: seeded random ``preset`` for ``weights: random``, else the named/local checkpoint."""
    weights = None if p.random_weights else p.weights.strip()
    return load_encoder(weights, preset_name=PRESET_NAMES[p.preset], device=device, seed=p.seed)


def input_points(p: ConcertoParams) -> Path:
    """The point-cloud folder ``p.points_from`` names (relative to the project root); it must exist."""
    points_root = POINTS_DIRS[p.points_from]
    if not points_root.is_dir():
        raise FileNotFoundError(f"{points_root}: point clouds not found (concerto.points_from = {p.points_from}; "
                                f"run the {p.points_from} stage first)")
    return points_root


def run(params: dict[str, Any], out: Path, reports: Path, device: torch.device, progress: bool = True,
        workers: int = 1) -> None:
    """The stage: features of every frame of the ``concerto.points_from`` clouds into ``out``, metrics into ``reports``.

    ``params``: the whole params.yaml (sections ``data``, ``download`` and ``concerto``); ``device``: where the
    encoder runs; ``workers``: at most this many CPU processes (:func:`encoded_partitions`; fewer for a small input,
    :func:`useful_workers`). With ``download.source: videos`` the clouds are VGGT's of the videos, whatever
    ``concerto.points_from`` says (the video folder feeds this branch only).
    """
    data = parse_section(params, "data", DataParams)
    p = parse_section(params, "concerto", ConcertoParams)
    if parse_section(params, "download", DownloadParams).source == "videos" and p.points_from != "vggt":
        print("concerto: download.source is videos: reading the VGGT clouds of the videos (data/vggt/points)",
              file=sys.stderr, flush=True)
        p = p.model_copy(update={"points_from": "vggt"})
    points_root = input_points(p)
    workers = useful_workers(workers, manifest_points(read_points_manifest(points_root, data.cameras)[0]))
    heap.tame_heap()
    model = load_model(p, device)
    if p.random_weights:
        print(f"WARNING: concerto: RANDOM WEIGHTS (preset {p.preset}, seed {p.seed}): cached features are NOT "
              f"meaningful. For real ones: `dvc exp run -S concerto.weights=concerto_base` (grid_size 0.02 m as "
              f"upstream) on a machine with internet (GPU recommended).", file=sys.stderr, flush=True)
    with atomic.transaction(), stage_run("concerto", reports) as stage:  # all outputs change together
        stage.log_params({"concerto": params["concerto"], "data.cameras": list(data.cameras),
                          "concerto.points_from_effective": p.points_from})
        stage.set_tags({"concerto.weights_source": str(model.weights_source),
                        "concerto.random_weights": str(p.random_weights)})
        stage.log_metrics(build_features(points_root, out, data.cameras, p, model, device, progress, workers))
