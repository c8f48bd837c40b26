"""Paired benchmark of the ``pointclouds`` per-frame work against the PNG decode-only limit.

    python -m pipeline.bench.pointclouds --raw data/raw --out reports/bench

The machine may be shared and noisy, so the two rates are measured in the same process over the same
frames, alternately: for every frame, one decode-only pass (read and decode its depth, labels and RGB
PNGs with the decoder the stage uses, ``imagecodecs``) and one call of the stage's per-frame function
(:func:`pipeline.data.pointcloud.frame_points`), in an order that flips every frame. Each of
``--processes`` (<= cores) worker processes does this over its share of the frames; the report gives
per-process medians (ms per frame, wall and CPU time), the aggregate rates (frames/s) and their ratio, the
per-part time of the stage in its order (decode depth, sampling, back-projection, normals, then decode and
gather labels and RGB; the parquet write per frame) and the same files decoded by the other installed decoders (OpenCV ``IMREAD_UNCHANGED``, ``pyspng``),
all checked to return equal arrays. The load average (``os.getloadavg``) is recorded with the numbers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.data import pointcloud
from pipeline.data.camera import backproject_pixels
from pipeline.data.sampling import subsample
from pipeline.data.synthetic.generate import GeneratorConfig, generate_dataset
from pipeline.bench import bench_parser, write_report
from pipeline.io import pointcloud_table, synthia
from pipeline.steps.pointclouds import FrameTask, init_frame_worker, plan_tasks
from pipeline.params.pointcloud import PointcloudParams

KINDS = ("depth", "labels", "rgb")


def _paths(task: FrameTask) -> dict[str, Path]:
    layout = synthia.SequenceLayout(task.root)
    return {"depth": layout.depth(task.camera, task.frame), "labels": layout.labels(task.camera, task.frame),
            "rgb": layout.rgb(task.camera, task.frame)}


def decoders() -> dict[str, Callable[[bytes], np.ndarray]]:
    """Installed PNG decoders: name -> bytes -> array (H, W, C) in the file's RGB channel order."""
    import cv2
    import imagecodecs

    found: dict[str, Callable[[bytes], np.ndarray]] = {
        "imagecodecs": imagecodecs.png_decode,
        "opencv": lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1],
    }
    try:
        import pyspng

        found["pyspng"] = lambda b: pyspng.load(b)[:, :, :3]  # 16-bit files come back as RGBA
    except ImportError:
        pass
    return found


def _decode_only(task: FrameTask) -> None:
    for path in _paths(task).values():
        synthia._imread(path)  # noqa: SLF001 - exactly the stage's read + decode


def _parts(task: FrameTask) -> dict[str, float]:
    """Milliseconds of each part of :func:`frame_points` for one frame (the same steps in its order, timed one by
    one)."""
    params, times, t = task.params, {}, time.perf_counter()
    paths = _paths(task)

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = (now - t) * 1e3
        t = now

    raw = synthia.read_depth_cm(paths["depth"], task.expect_hw)
    lap("decode_depth")
    rng = np.random.default_rng([params.seed, task.sequence_index, task.frame])
    if params.sampling == "random":
        pixels = pointcloud.random_valid_pixels(raw, params.far_m, params.max_points, rng)
        lap("mask_sampling")
    else:
        pixels = np.flatnonzero(pointcloud.valid_depth_mask(raw, params.far_m))
        lap("mask")
        v, u = np.divmod(pixels, raw.shape[1])
        cloud = backproject_pixels(raw.reshape(-1)[pixels].astype(np.float32) / synthia.CM_PER_M, v, u, task.intrinsics)
        pixels = pixels[subsample(cloud, params.max_points, params.sampling, rng)]
        lap("sampling")
    v, u = np.divmod(pixels, raw.shape[1])
    points = backproject_pixels(raw.reshape(-1)[pixels].astype(np.float32) / synthia.CM_PER_M, v, u, task.intrinsics)
    lap("backproject")
    pointcloud.frame_normals(raw, v, u, points, task.intrinsics, params)
    lap("normals")
    labels = synthia.read_labels_image(paths["labels"], task.expect_hw)
    lap("decode_labels")
    _ = np.take(labels.reshape(-1, 3), pixels, axis=0)
    lap("gather_labels")
    rgb = synthia.read_rgb(paths["rgb"], task.expect_hw)
    lap("decode_rgb")
    _ = np.take(rgb.reshape(-1, 3), pixels, axis=0)
    lap("gather_rgb")
    return times


def _worker(tasks: list[FrameTask], repeats: int) -> dict:
    """Alternate decode-only and ``frame_points`` over ``tasks``; per-frame ms lists (wall and CPU) and per-part
    times."""
    decode_ms, stage_ms, decode_cpu_ms, stage_cpu_ms, parts, columns = [], [], [], [], [], []
    for rep in range(repeats):
        for i, task in enumerate(tasks):
            order = ("decode", "stage") if (i + rep) % 2 == 0 else ("stage", "decode")
            for what in order:
                t0, c0 = time.perf_counter(), time.process_time()
                if what == "decode":
                    _decode_only(task)
                    decode_ms.append((time.perf_counter() - t0) * 1e3)
                    decode_cpu_ms.append((time.process_time() - c0) * 1e3)
                else:
                    rng = np.random.default_rng([task.params.seed, task.sequence_index, task.frame])
                    cols = pointcloud.frame_points(synthia.SequenceLayout(task.root), task.camera, task.frame,
                                                   task.intrinsics, task.expect_hw, task.params, rng)
                    stage_ms.append((time.perf_counter() - t0) * 1e3)
                    stage_cpu_ms.append((time.process_time() - c0) * 1e3)
                    if rep == 0:
                        columns.append(cols)
            if rep == 0:
                parts.append(_parts(task))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pointcloud_table.write_frames(Path(tmp), "bench", "cam", columns)
        write_ms = (time.perf_counter() - t0) * 1e3 / max(len(columns), 1)
    return {"decode_ms": decode_ms, "stage_ms": stage_ms, "decode_cpu_ms": decode_cpu_ms, "stage_cpu_ms": stage_cpu_ms,
            "parts": parts, "write_ms_per_frame": write_ms}


def _worker_star(args: tuple[list[FrameTask], int]) -> dict:
    return _worker(*args)


def compare_decoders(tasks: list[FrameTask], repeats: int) -> dict:
    """Median ms per file kind for every installed decoder, alternating decoders per file; checks equality."""
    found = decoders()
    times = {name: {kind: [] for kind in KINDS} for name in found}
    for rep in range(repeats):
        for task in tasks:
            for kind, path in _paths(task).items():
                blob = path.read_bytes()
                reference = None
                for name, decode in (found.items() if rep % 2 == 0 else reversed(found.items())):
                    t0 = time.perf_counter()
                    image = decode(blob)
                    times[name][kind].append((time.perf_counter() - t0) * 1e3)
                    if reference is None:
                        reference = image
                    elif not np.array_equal(reference, image) or reference.dtype != image.dtype:
                        raise AssertionError(f"{path}: decoder {name} returns a different image")
    return {name: {kind: statistics.median(v) for kind, v in per.items()} for name, per in times.items()}


def run(raw: Path, params: PointcloudParams, cameras: tuple[str, ...], frames: int, processes: int,
        repeats: int) -> dict:
    """The whole benchmark; returns the JSON report."""
    tasks = plan_tasks(raw, cameras, params)[:frames]
    load_start = os.getloadavg()
    shares = [tasks[i::processes] for i in range(processes)]
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(processes, initializer=init_frame_worker) as pool:
        results = pool.map(_worker_star, [(share, repeats) for share in shares])
    wall = time.perf_counter() - t0
    decode = [statistics.median(r["decode_ms"]) for r in results]
    stage = [statistics.median(r["stage_ms"]) for r in results]
    parts = {name: statistics.median(p[name] for r in results for p in r["parts"]) for name in results[0]["parts"][0]}
    parts["parquet_write_per_frame"] = statistics.median(r["write_ms_per_frame"] for r in results)
    decode_fps = sum(1e3 / d for d in decode)
    stage_fps = sum(1e3 / s for s in stage)
    # the stage also writes every frame into its parquet partition (in the parent process, overlapping the
    # workers; on 2 cores it competes with them): the same per-frame work plus the write, for the whole picture
    with_write = [s + r["write_ms_per_frame"] for s, r in zip(stage, results, strict=True)]
    with_write_fps = sum(1e3 / s for s in with_write)
    cpu = {kind: [statistics.median(r[f"{kind}_cpu_ms"]) for r in results] for kind in ("decode", "stage")}
    return {
        "command": "python -m pipeline.bench.pointclouds",
        "frames": len(tasks), "image_hw": list(tasks[0].expect_hw), "processes": processes, "repeats": repeats,
        "params": params.model_dump(),
        "decode_only_ms_per_frame": decode, "stage_ms_per_frame": stage,
        "decode_only_frames_per_s": decode_fps, "stage_frames_per_s": stage_fps,
        "stage_vs_decode_only": stage_fps / decode_fps,
        "stage_with_write_ms_per_frame": with_write, "stage_with_write_frames_per_s": with_write_fps,
        "stage_with_write_vs_decode_only": with_write_fps / decode_fps,
        "decode_only_cpu_ms_per_frame": cpu["decode"], "stage_cpu_ms_per_frame": cpu["stage"],
        "stage_vs_decode_only_cpu": sum(cpu["decode"]) / sum(cpu["stage"]),
        "parts_ms_median": parts,
        "decoders_ms_median": compare_decoders(tasks[: max(2, frames // 4)], repeats=3),
        "wall_s": wall, "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(),
    }


def markdown(report: dict) -> str:
    """The report as a markdown section."""
    lines = [
        "## pointclouds vs the PNG decode-only limit (paired, same process, same frames)",
        "",
        f"Command: `{report['command']}`; {report['frames']} frames of {report['image_hw'][1]}x{report['image_hw'][0]}, "
        f"{report['processes']} processes, {report['repeats']} alternating passes; load average "
        f"{report['loadavg_start'][0]:.1f} at start, {report['loadavg_end'][0]:.1f} at end on {report['cpus']} CPUs.",
        "",
        "| | ms per frame (median per process) | frames/s (all processes) |",
        "|---|---:|---:|",
        f"| decode only (imagecodecs: depth + labels + RGB) | {' / '.join(f'{d:.1f}' for d in report['decode_only_ms_per_frame'])} "
        f"| {report['decode_only_frames_per_s']:.1f} |",
        f"| stage per-frame work (`frame_points`) | {' / '.join(f'{s:.1f}' for s in report['stage_ms_per_frame'])} "
        f"| {report['stage_frames_per_s']:.1f} |",
        f"| stage per-frame work + its parquet write | "
        f"{' / '.join(f'{s:.1f}' for s in report['stage_with_write_ms_per_frame'])} "
        f"| {report['stage_with_write_frames_per_s']:.1f} |",
        "",
        f"Stage rate / decode-only rate: **{report['stage_vs_decode_only']:.2f}** (wall time); in CPU time "
        f"(`time.process_time`, less sensitive to other processes on a loaded machine) "
        f"{' / '.join(f'{d:.1f}' for d in report['decode_only_cpu_ms_per_frame'])} ms decode-only vs "
        f"{' / '.join(f'{s:.1f}' for s in report['stage_cpu_ms_per_frame'])} ms stage per frame: "
        f"**{report['stage_vs_decode_only_cpu']:.2f}**. With the parquet write: "
        f"**{report['stage_with_write_vs_decode_only']:.2f}** (wall time).",
        "",
        "Per part (median ms per frame): " + ", ".join(f"{k} {v:.1f}" for k, v in report["parts_ms_median"].items()) + ".",
        "",
        "| decoder | depth ms | labels ms | RGB ms | sum ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, per in report["decoders_ms_median"].items():
        lines.append(f"| {name} | {per['depth']:.1f} | {per['labels']:.1f} | {per['rgb']:.1f} | {sum(per.values()):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import yaml

    parser = bench_parser(__doc__)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="", help="WIDTHxHEIGHT: bench a synthetic sample rendered at this size "
                        "(2 sequences, --frames in all) instead of --raw; report pointclouds-<size>.md")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path("params.yaml").read_text())
    cameras = tuple(params["data"]["cameras"])
    with tempfile.TemporaryDirectory(prefix="protoscene-bench-") as scratch:
        raw, name = args.raw, "pointclouds"
        if args.size:
            width, height = (int(x) for x in args.size.lower().split("x"))
            raw, name = Path(scratch), f"pointclouds-{width}x{height}"
            config = GeneratorConfig(seed=0, sequences=2, frames=(args.frames + 1) // 2, height=height, width=width,
                                     cameras=cameras, workers=min(2, os.cpu_count() or 1))
            generate_dataset(config, raw, progress=False)
        report = run(raw, PointcloudParams(**params["pointcloud"]), cameras, args.frames,
                     min(args.processes, os.cpu_count() or 1), args.repeats)
    if args.size:
        report["command"] += f" --size {args.size} --frames {args.frames}"
    write_report(args.out, name, report, markdown(report))


if __name__ == "__main__":
    main()
