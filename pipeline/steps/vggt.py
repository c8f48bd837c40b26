"""DVC stage ``vggt``: RGB frames -> VGGT depth, cameras and point clouds, evaluated against ground truth.

:func:`run` loads the model (announcing random weights on stderr and in MLflow) and
:func:`build_vggt_outputs` runs it over every sequence and camera and writes (atomically; a failing run
leaves no partial output):
- ``data/vggt/<sequence>/<camera_dirname>.npz``: ``depth`` / ``depth_conf`` (S, h, w) at model-input
  resolution, ``extrinsic`` (S, 3, 4) camera-from-world with OpenCV axes in the frame of the sequence's first
  processed frame, ``intrinsic`` (S, 3, 3) in original image pixels, ``intrinsic_model`` in model pixels,
  ``frame`` (S,) frame indices, ``chunk_index`` / ``chunk_scale``, the pre-processing record ``pre_*``,
  ``weights_source`` and ``random_weights``. VGGT depth and translations have one arbitrary scale per
  sequence (not metres).
- ``data/vggt/points/``: the point-cloud parquet layout of the ``pointclouds`` stage
  (``pipeline/io/pointcloud_table.py``), points in each frame's OpenCV camera axes from VGGT depth and
  model-pixel intrinsics, ``u, v`` = the original pixel under the model pixel, colours from RGB/, labels from
  GT/LABELS (0 when absent). Points and ``depth`` are brought to metres by the scale normaliser
  (``pipeline/geometry/ground.py``: camera ``vggt.camera_height_m`` above the fitted ground plane, one factor
  per sequence, recorded as ``scale`` in each partition of ``manifest.json``; ``camera_height_m: 0`` keeps
  VGGT's arbitrary units).
- ``reports/vggt/figures/<sequence>.png`` (:func:`pipeline.eval.vggt_figures.depth_figure`);
and returns the metrics the stage logs to ``reports/vggt/metrics.json`` (depth AbsRel / delta1 after per-frame
median scaling, consecutive-frame rotation and translation-direction errors, speed, peak RSS).

With ``download.source: videos``, :func:`build_video_outputs` reads the videos listed by the ``videos`` stage
instead (``pipeline/data/video.py``: every ``videos.stride``-th frame, native size, pre-processed to
``vggt.target_size`` like SYNTHIA frames), one partition per video (sequence = the video's name, camera
``video``, frame = the video's frame index), the same npz and parquet layout, no labels and no ground-truth
metrics. Undecodable videos are skipped with one line each and counted in the metrics; none decodable is an
error.

Random weights (the offline default) are announced in every metric file and figure (``RANDOM_NOTE``); the
stage also warns on stderr and tags the MLflow run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import runtime
from pipeline.config import parse_section
from pipeline.data.video import VideoPairs
from pipeline.data.pointcloud import estimate_normals
from pipeline.data.sampling import subsample
from pipeline.eval.vggt_figures import depth_figure
from pipeline.eval.vggt_metrics import evaluate_camera, model_to_original_pixels, summarise_errors
from pipeline.geometry.ground import sequence_scale
from pipeline.io import atomic, pointcloud_table, synthia
from pipeline.io.npz import write_npz
from pipeline.io.synthia import SequenceLayout, SynthiaFormatError
from pipeline.models.vggt.geometry import depth_to_camera_points
from pipeline.models.vggt.infer import run_vggt
from pipeline.models.vggt.config import depth_camera_config
from pipeline.models.vggt.load import load_vggt
from pipeline.params.data import DataParams, DownloadParams
from pipeline.params.vggt import VggtParams
from pipeline.tracking import stage_run

RANDOM_NOTE = "random weights: numbers are not meaningful"
POINTS_DIR = "points"
VIDEO_CAMERA = "video"
NO_GT_NOTE = "videos have no ground truth: depth and camera errors are not computed"


def select_frames(layout: SequenceLayout, camera: str, max_frames: int) -> list[int]:
    """Frame indices of a camera: those of Depth/ when present (SYNTHIA), else of RGB/; the first ``max_frames``."""

    if (layout.root / "Depth" / camera).is_dir():
        frames = layout.frames(camera)
    else:
        folder = layout.root / "RGB" / camera
        if not folder.is_dir():
            raise SynthiaFormatError(f"{folder}: camera folder missing")
        frames = sorted(int(p.stem) for p in folder.glob("[0-9]" * 6 + ".png"))
    if not frames:
        raise SynthiaFormatError(f"{layout.root / 'RGB' / camera}: no frames")
    return frames[:max_frames] if max_frames else frames


def read_rgb_frames(layout: SequenceLayout, camera: str, frames: list[int]) -> np.ndarray:
    """RGB frames (S, H, W, 3) uint8; every frame must have the size of the first."""

    first = synthia.read_rgb(layout.rgb(camera, frames[0]))
    out = np.empty((len(frames), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, frame in enumerate(frames[1:], start=1):
        out[i] = synthia.read_rgb(layout.rgb(camera, frame), first.shape[:2])
    return out


def frame_columns(out: dict, i: int, frame: int, rgb: np.ndarray, labels: tuple[np.ndarray, np.ndarray] | None,
                  params: VggtParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Columns of ``pointcloud_table.SCHEMA`` for output frame ``i`` (original frame index ``frame``).

    Model pixels with positive finite depth whose centre lies inside the original image are back-projected
    with the model-pixel intrinsics (OpenCV camera axes, VGGT units), subsampled, and given normals.
    """

    depth = out["depth"][i]
    u_orig, v_orig, inside = model_to_original_pixels(depth.shape, out["pre_orig_hw"][i], out["pre_scale_xy"][i],
                                                      out["pre_offset_xy"][i])
    valid = inside & np.isfinite(depth) & (depth > 0)
    vm, um = np.nonzero(valid)
    cam = depth_to_camera_points(torch.from_numpy(depth).double(), torch.from_numpy(out["intrinsic_model"][i]))
    points = cam.numpy()[vm, um]
    keep = subsample(points, params.max_points, params.sampling, rng)
    vm, um, points = vm[keep], um[keep], points[keep]
    u, v = u_orig[vm, um], v_orig[vm, um]
    normals = estimate_normals(points, params.normal_neighbours, viewpoint=np.zeros(3))
    zeros = np.zeros(len(u), dtype=np.uint16)
    class_id, instance_id = (labels[0][v, u], labels[1][v, u]) if labels is not None else (zeros, zeros)
    return pointcloud_table.frame_columns(frame, u, v, points, depth[vm, um], normals, rgb[v, u], class_id,
                                          instance_id)


def normalise_scale(columns: list[dict[str, np.ndarray]], params: VggtParams) -> dict:
    """In place: scale x, y, z and depth of one sequence's frames (``pointcloud_table`` column dicts) by the
    normaliser's factor (``pipeline/geometry/ground.py``); returns its record (factor 1, method ``none`` when
    ``params.camera_height_m`` is 0)."""
    if params.camera_height_m == 0:
        return {"factor": 1.0, "method": "none"}
    clouds = [np.stack([c["x"], c["y"], c["z"]], axis=1) for c in columns]
    record = sequence_scale(clouds, params.camera_height_m, seed=params.seed)
    for c in columns:
        for key in ("x", "y", "z", "depth"):
            c[key] = (c[key] * record["factor"]).astype(np.float32)
    return record


def infer(model, rgb: np.ndarray, params: VggtParams, device: torch.device, stats: dict) -> dict:
    """VGGT over one sequence's frames (S, H, W, 3) uint8 in chained chunks (``run_vggt``); adds to ``stats``
    (``frames``, ``model_seconds``; ``model_hw`` = the model input size)."""
    t0 = time.perf_counter()
    out = run_vggt(model, rgb, frames_per_chunk=params.frames_per_chunk, device=device, mode=params.mode,
                   target_size=params.target_size, chain_chunks=True)
    stats["model_seconds"] += time.perf_counter() - t0
    stats["model_hw"] = [int(x) for x in out["pre_model_hw"]]
    stats["frames"] += len(rgb)
    return out


def write_sequence(tmp: Path, name: str, camera: str, columns: list[dict[str, np.ndarray]], out: dict,
                   frames: list[int], params: VggtParams, manifest: dict) -> dict:
    """Normalise the scale of one (sequence, camera), write its parquet partition under ``tmp/points`` (entry
    added to ``manifest``) and its npz; returns the normaliser's record."""
    norm = normalise_scale(columns, params)
    out["points_scale"] = np.asarray(norm["factor"])
    manifest["partitions"].append({**pointcloud_table.write_frames(tmp / POINTS_DIR, name, camera, columns),
                                   "scale": norm})
    save_npz(tmp / name / f"{pointcloud_table.camera_dirname(camera)}.npz", out, frames, manifest["random_weights"])
    return norm


def save_npz(path: Path, out: dict, frames: list[int], random_weights: bool) -> None:
    """The per-camera arrays (see module docstring; ``points_scale`` = the normaliser's factor), written atomically."""

    keys = ["depth", "depth_conf", "extrinsic", "intrinsic", "intrinsic_model", "chunk_index", "chunk_scale",
            "weights_source", "points_scale"] + [k for k in out if k.startswith("pre_")]
    arrays = {k: out[k] for k in keys}
    arrays["frame"] = np.asarray(frames, dtype=np.int64)
    arrays["random_weights"] = np.asarray(random_weights)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda tmp: write_npz(tmp, arrays))


def build_vggt_outputs(raw: Path, out_root: Path, figures_root: Path, cameras: tuple[str, ...], params: VggtParams,
                       model, device: torch.device, random_weights: bool) -> dict:
    """Run VGGT over every sequence and camera, write ``out_root`` and ``figures_root``; return metrics.

    ``raw``: SYNTHIA-SEQS sequences; ``model``: a loaded ``VGGT`` (``load_vggt``) on ``device``;
    ``random_weights``: the model has no checkpoint (the note goes into metrics, manifest and figures).
    """

    layouts = synthia.list_sequences(raw)
    if not layouts:
        raise FileNotFoundError(f"{raw}: no SYNTHIA-SEQS-NN-WEATHER sequence folders")
    note = RANDOM_NOTE if random_weights else ""
    per_sequence: dict = {}
    pooled: dict[str, list[float]] = {}
    manifest = points_manifest(params, model, random_weights)
    stats = {"frames": 0, "model_seconds": 0.0, "model_hw": None}
    start = time.perf_counter()
    with atomic.atomic_dir(out_root) as tmp, atomic.atomic_dir(figures_root) as fig_tmp:
        for seq_index, layout in enumerate(layouts):
            for camera in cameras:
                frames = select_frames(layout, camera, params.max_frames)
                rgb = read_rgb_frames(layout, camera, frames)
                out = infer(model, rgb, params, device, stats)
                errors, gt_model = evaluate_camera(layout, camera, frames, out, params.eval_max_depth_m)
                has_labels = (layout.root / "GT/LABELS" / camera).is_dir()
                columns = []
                for i, frame in enumerate(frames):
                    labels = synthia.read_labels(layout.labels(camera, frame), rgb.shape[1:3]) if has_labels else None
                    rng = np.random.default_rng([params.seed, seq_index, frame])
                    columns.append(frame_columns(out, i, frame, rgb[i], labels, params, rng))
                write_sequence(tmp, layout.name, camera, columns, out, frames, params, manifest)
                key = layout.name if len(cameras) == 1 else f"{layout.name}/{camera}"
                per_sequence[key] = {"frames": len(frames), **summarise_errors(errors)}
                for name, values in errors.items():
                    pooled.setdefault(name, []).extend(values)
                if camera == cameras[0]:
                    mid = len(frames) // 2
                    scale = errors["scale"][mid] if errors["scale"] else float("nan")
                    depth_figure(fig_tmp / f"{layout.name}.png", f"{layout.name} {camera} frame {frames[mid]}",
                                 rgb[mid], gt_model[mid], out["depth"][mid], out["depth_conf"][mid], scale, note)
        atomic.write_json(tmp / POINTS_DIR / "manifest.json", manifest)
    return {**run_metrics(params, model, device, random_weights, stats, start, manifest["partitions"]),
            "sequences": len(layouts), **summarise_errors(pooled), "per_sequence": per_sequence}


def run_metrics(params: VggtParams, model, device: torch.device, random_weights: bool, stats: dict, start: float,
                partitions: list[dict]) -> dict:
    """Metrics of either source: model, speed (``stats`` of :func:`infer`; ``start`` = ``time.perf_counter()`` at
    the start), memory, points, the normaliser's factors and the random-weights note."""
    seconds = time.perf_counter() - start
    frames, model_seconds, model_hw = stats["frames"], stats["model_seconds"], stats["model_hw"]
    result = {
        "weights_source": str(model.weights_source), "random_weights": random_weights,
        "preset": params.preset, "device": str(device), "torch_threads": runtime.torch_threads(), "model_hw": model_hw,
        "frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 3),
        "model_frames_per_s": round(frames / model_seconds, 3), "peak_rss_mb": round(runtime.peak_rss_mb(), 1),
        "points": int(sum(p["points"] for p in partitions)), "scale": scale_summary(partitions),
    }
    if random_weights:
        result["note"] = RANDOM_NOTE
    result.update(runtime.cuda_memory_metrics(device))
    return result


def points_manifest(params: VggtParams, model, random_weights: bool, source: str = "sequences") -> dict:
    """The ``points/manifest.json`` of either source, before its partitions are added."""
    units = (f"metres by the scale normaliser (camera {params.camera_height_m:g} m above the fitted ground plane; "
             f"factor per partition)" if params.camera_height_m else "vggt (arbitrary scale per sequence, not metres)")
    return {"source": "vggt", "input": source, "coordinates": "camera", "units": units,
            "max_points": params.max_points, "sampling": params.sampling, "far_m": None,
            "weights_source": str(model.weights_source), "random_weights": random_weights, "partitions": []}


def scale_summary(partitions: list[dict]) -> dict:
    """Normaliser factors over partitions: median, min, max and how many used each method."""
    factors = [p["scale"]["factor"] for p in partitions]
    methods = [p["scale"]["method"] for p in partitions]
    return {"factor_median": float(np.median(factors)), "factor_min": float(min(factors)),
            "factor_max": float(max(factors)), "methods": {m: methods.count(m) for m in sorted(set(methods))}}


def build_video_outputs(listing: dict, out_root: Path, figures_root: Path, params: VggtParams, model,
                        device: torch.device, random_weights: bool) -> dict:
    """Run VGGT over every decodable video of ``listing`` (``data/videos/listing.json``), write ``out_root`` and
    ``figures_root`` (one depth figure per video, no ground truth); return metrics.

    Videos that cannot be decoded, or have fewer than 2 frames on the stride grid, are skipped with one line
    each on stderr (count and names in the metrics); ValueError when no video is left.
    """
    folder, stride = Path(listing["dir"]), int(listing["stride"])
    names = {folder / v["path"]: v["sequence"] for v in listing["videos"]}
    index = VideoPairs(list(names), frame_size=None, frame_offset=stride, stride=stride, max_frames=params.max_frames)
    skipped = [(path, reason) for path, reason in index.skipped]
    note = RANDOM_NOTE if random_weights else ""
    manifest = {**points_manifest(params, model, random_weights, "videos"), "cameras": [VIDEO_CAMERA],
                "frame_stride": stride}
    per_video: dict = {}
    stats = {"frames": 0, "model_seconds": 0.0, "model_hw": None}
    start = time.perf_counter()
    with atomic.atomic_dir(out_root) as tmp, atomic.atomic_dir(figures_root) as fig_tmp:
        for v, path in enumerate(index.videos):
            name = names[path]
            try:
                frames, rgb = index.read_grid(v)
                if len(frames) < 2:
                    raise ValueError(f"{path}: fewer than 2 frames on the stride grid (videos.stride = {stride})")
            except ValueError as err:
                skipped.append((path, str(err)))
                continue
            out = infer(model, rgb, params, device, stats)
            columns = [frame_columns(out, i, frame, rgb[i], None, params, np.random.default_rng([params.seed, v, frame]))
                       for i, frame in enumerate(frames)]
            scale = write_sequence(tmp, name, VIDEO_CAMERA, columns, out, frames, params, manifest)
            per_video[name] = {"frames": len(frames), "scale_factor": scale["factor"], "scale_method": scale["method"]}
            mid = len(frames) // 2
            depth_figure(fig_tmp / f"{name}.png", f"{name} frame {frames[mid]}", rgb[mid], None, out["depth"][mid],
                         out["depth_conf"][mid], scale["factor"], note)
        for path, reason in skipped:
            print(f"warning: vggt: skipped {reason}", file=sys.stderr, flush=True)
        if not manifest["partitions"]:
            raise ValueError(f"{folder}: none of the {len(names)} listed videos could be used (first: {skipped[0][1]})")
        atomic.write_json(tmp / POINTS_DIR / "manifest.json", manifest)
    return {**run_metrics(params, model, device, random_weights, stats, start, manifest["partitions"]),
            "source": "videos", "videos_listed": len(names), "videos": len(per_video), "videos_skipped": len(skipped),
            "skipped": [names[p] for p, _ in skipped], "frame_stride": stride, "per_video": per_video,
            "ground_truth_note": NO_GT_NOTE}


def run(params: dict[str, Any], raw: Path, out: Path, reports: Path, device: torch.device,
        videos: Path = Path("data/videos")) -> None:
    """The stage: VGGT over ``raw`` into ``out`` (npz + ``points/``), metrics and figures into ``reports``.

    ``params``: the whole params.yaml (sections ``data``, ``download`` and ``vggt``); ``device``: where the model
    runs; ``videos``: the ``videos`` stage's listing folder, read instead of ``raw`` when ``download.source`` is
    ``videos``.
    """
    data = parse_section(params, "data", DataParams)
    source = parse_section(params, "download", DownloadParams).source
    p = parse_section(params, "vggt", VggtParams)
    listing = None
    if source == "videos":
        listing = json.loads((videos / "listing.json").read_text())
        if listing.get("source") != "videos" or not listing.get("videos"):
            raise ValueError(f"{videos / 'listing.json'}: no videos listed (rerun the videos stage)")
    elif not raw.is_dir():
        raise FileNotFoundError(f"{raw}: dataset folder not found (run the download stage first)")
    model, info = load_vggt(p.weights, depth_camera_config(p.preset), revision=p.revision or None, device=device, seed=p.seed)
    random_weights = bool(info["random_init"])
    if random_weights:
        print(f"WARNING: vggt: RANDOM WEIGHTS ({info['weights_source']}, preset {p.preset}): depth, cameras, points "
              f"and metrics are NOT meaningful. Use real weights with e.g. `dvc exp run -S vggt.weights=facebook/VGGT-1B "
              f"-S vggt.preset=1b -S vggt.target_size=518` on a machine with internet.", file=sys.stderr, flush=True)
    with atomic.transaction(), stage_run("vggt", reports) as stage:  # all outputs change together
        stage.log_params({"vggt": params["vggt"], "data.cameras": list(data.cameras), "download.source": source,
                          **({"videos": params["videos"]} if listing is not None else {})})
        stage.set_tags({"vggt.weights_source": info["weights_source"], "vggt.random_weights": str(random_weights)})
        if listing is not None:
            stage.log_metrics(build_video_outputs(listing, out, reports / "figures", p, model, device, random_weights))
        else:
            stage.log_metrics(build_vggt_outputs(raw, out, reports / "figures", data.cameras, p, model, device,
                                                 random_weights))
        for png in sorted(atomic.current_path(reports / "figures").glob("*.png")):
            stage.log_artifact(png, "figures")
