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
  GT/LABELS (0 when absent); ``manifest.json`` says ``"units": "vggt"`` (arbitrary scale).
- ``reports/vggt/figures/<sequence>.png`` (:func:`pipeline.eval.vggt_figures.depth_figure`);
and returns the metrics the stage logs to ``reports/vggt/metrics.json`` (depth AbsRel / delta1 after per-frame
median scaling, consecutive-frame rotation and translation-direction errors, speed, peak RSS).

Random weights (the offline default) are announced in every metric file and figure (``RANDOM_NOTE``); the
stage also warns on stderr and tags the MLflow run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import runtime
from pipeline.config import parse_section
from pipeline.data.pointcloud import estimate_normals
from pipeline.data.sampling import subsample
from pipeline.eval.vggt_figures import depth_figure
from pipeline.eval.vggt_metrics import evaluate_camera, model_to_original_pixels, summarise_errors
from pipeline.io import atomic, pointcloud_table, synthia
from pipeline.io.synthia import SequenceLayout, SynthiaFormatError
from pipeline.models.vggt.geometry import depth_to_camera_points
from pipeline.models.vggt.infer import run_vggt
from pipeline.models.vggt.config import depth_camera_config
from pipeline.models.vggt.load import load_vggt
from pipeline.params.data import DataParams
from pipeline.params.vggt import VggtParams
from pipeline.tracking import stage_run

RANDOM_NOTE = "random weights: numbers are not meaningful"
POINTS_DIR = "points"


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


def save_npz(path: Path, out: dict, frames: list[int], random_weights: bool) -> None:
    """The per-camera arrays (see module docstring), written atomically."""

    keys = ["depth", "depth_conf", "extrinsic", "intrinsic", "intrinsic_model", "chunk_index", "chunk_scale",
            "weights_source"] + [k for k in out if k.startswith("pre_")]
    arrays = {k: out[k] for k in keys}
    arrays["frame"] = np.asarray(frames, dtype=np.int64)
    arrays["random_weights"] = np.asarray(random_weights)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, write)


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
    manifest = {"source": "vggt", "coordinates": "camera", "units": "vggt (arbitrary scale per sequence, not metres)",
                "max_points": params.max_points, "sampling": params.sampling, "far_m": None,
                "weights_source": str(model.weights_source), "random_weights": random_weights, "partitions": []}
    total_frames, model_seconds, model_hw = 0, 0.0, None
    start = time.perf_counter()
    with atomic.atomic_dir(out_root) as tmp, atomic.atomic_dir(figures_root) as fig_tmp:
        for seq_index, layout in enumerate(layouts):
            for camera in cameras:
                frames = select_frames(layout, camera, params.max_frames)
                rgb = read_rgb_frames(layout, camera, frames)
                t0 = time.perf_counter()
                out = run_vggt(model, rgb, frames_per_chunk=params.frames_per_chunk, device=device, mode=params.mode,
                               target_size=params.target_size, chain_chunks=True)
                model_seconds += time.perf_counter() - t0
                model_hw = [int(x) for x in out["pre_model_hw"]]
                total_frames += len(frames)
                errors, gt_model = evaluate_camera(layout, camera, frames, out, params.eval_max_depth_m)
                has_labels = (layout.root / "GT/LABELS" / camera).is_dir()
                columns = []
                for i, frame in enumerate(frames):
                    labels = synthia.read_labels(layout.labels(camera, frame), rgb.shape[1:3]) if has_labels else None
                    rng = np.random.default_rng([params.seed, seq_index, frame])
                    columns.append(frame_columns(out, i, frame, rgb[i], labels, params, rng))
                manifest["partitions"].append(pointcloud_table.write_frames(tmp / POINTS_DIR, layout.name, camera,
                                                                            columns))
                save_npz(tmp / layout.name / f"{pointcloud_table.camera_dirname(camera)}.npz", out, frames,
                         random_weights)
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
    seconds = time.perf_counter() - start
    result = {
        "weights_source": str(model.weights_source), "random_weights": random_weights,
        "preset": params.preset, "device": str(device), "torch_threads": runtime.torch_threads(), "model_hw": model_hw,
        "frames": total_frames, "sequences": len(layouts),
        **summarise_errors(pooled),
        "seconds": round(seconds, 2), "frames_per_s": round(total_frames / seconds, 3),
        "model_frames_per_s": round(total_frames / model_seconds, 3),
        "peak_rss_mb": round(runtime.peak_rss_mb(), 1),
        "points": int(sum(p["points"] for p in manifest["partitions"])),
        "per_sequence": per_sequence,
    }
    if random_weights:
        result["note"] = RANDOM_NOTE
    result.update(runtime.cuda_memory_metrics(device))
    return result


def run(params: dict[str, Any], raw: Path, out: Path, reports: Path, device: torch.device) -> None:
    """The stage: VGGT over ``raw`` into ``out`` (npz + ``points/``), metrics and figures into ``reports``.

    ``params``: the whole params.yaml (sections ``data`` and ``vggt``); ``device``: where the model runs.
    """
    data = parse_section(params, "data", DataParams)
    p = parse_section(params, "vggt", VggtParams)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: dataset folder not found (run the download stage first)")
    model, info = load_vggt(p.weights, depth_camera_config(p.preset), revision=p.revision or None, device=device, seed=p.seed)
    random_weights = bool(info["random_init"])
    if random_weights:
        print(f"WARNING: vggt: RANDOM WEIGHTS ({info['weights_source']}, preset {p.preset}): depth, cameras, points "
              f"and metrics are NOT meaningful. Use real weights with e.g. `dvc exp run -S vggt.weights=facebook/VGGT-1B "
              f"-S vggt.preset=1b -S vggt.target_size=518` on a machine with internet.", file=sys.stderr, flush=True)
    with atomic.transaction(), stage_run("vggt", reports) as stage:  # all outputs change together
        stage.log_params({"vggt": params["vggt"], "data.cameras": list(data.cameras)})
        stage.set_tags({"vggt.weights_source": info["weights_source"], "vggt.random_weights": str(random_weights)})
        stage.log_metrics(build_vggt_outputs(raw, out, reports / "figures", data.cameras, p, model, device,
                                             random_weights))
        for png in sorted(atomic.current_path(reports / "figures").glob("*.png")):
            stage.log_artifact(png, "figures")
