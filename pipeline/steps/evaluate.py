"""DVC stage ``evaluate``: dataset statistics and figures, then phase-one and phase-two metrics on held-out sequences.

:func:`run` writes ``reports/evaluate/{metrics.json, phase1_frames.csv, phase2_forecasts.csv, phase2_camera.csv,
figures/, meshes/}``: the dataset report
(``pipeline/eval/dataset_report.py``), :func:`phase1_report` (the learned slots against k-means baselines on
held-out frames, reconstruction figures, PLY meshes, the prototype gallery) and :func:`phase2_report`
(identity over time, forecasts and camera on held-out sequences, one trajectory figure and GIF per sequence),
and logs every param and ``dvc.lock`` to MLflow. The held-out sequences are the test split (the
validation split when it is empty) of ``pipeline/data/splits.py``.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import flatten, parse_section
from pipeline.data.frames import frame_selection
from pipeline.data.frames_cache import CachedSequence, load_cached
from pipeline.data.splits import split_sequences
from pipeline.eval import dataset_report
from pipeline.eval.phase1_eval import evaluate_phase1
from pipeline.eval.phase1_figures import export_ply, prototype_gallery, reconstruction_figure
from pipeline.eval.phase2_eval import CAMERA_COLUMNS, FORECAST_COLUMNS, evaluate_phase2
from pipeline.eval.phase2_figures import gt_tracks, raycast_gif, trajectory_figure
from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.io import atomic, synthia
from pipeline.models.slots.batch import model_merge, slot_groups
from pipeline.models.video.sequences import with_carried
from pipeline.params.data import DataParams
from pipeline.params.train import Phase1Params
from pipeline.params.video import Phase2Params
from pipeline.tracking import stage_run
from pipeline.train.common import check_trained_with, load_checkpoint
from pipeline.train.phase1 import load_model, selected_step
from pipeline.train.phase2 import load_video_model


def phase1_report(model_path: Path, raw: Path, cached: list[CachedSequence], figures_dir: Path, meshes_dir: Path,
                  frames_csv: Path, n_figures: int = 3) -> tuple[dict, list[Path]]:
    """Evaluate the trained model on the ``cached`` held-out sequences; returns (metrics, figure paths).
    Per-frame metrics of every method go to ``frames_csv`` (one row per frame and method: paired comparisons)."""
    model, saved = load_model(model_path)
    params = Phase1Params.model_validate(saved)
    sequences = [c.name for c in cached]
    records, skipped = [r for c in cached for r in c.records], sum(c.skipped for c in cached)
    if not records:
        raise ValueError(f"no held-out frame of {sequences} has >= train.min_points target points")
    metrics, per_frame, refined = evaluate_phase1(model, records, raw, params)
    atomic.write_text(frames_csv, pd.DataFrame(per_frame).to_csv(index=False))
    metrics["held_out_sequences"] = sequences
    metrics["skipped_frames"] = skipped
    metrics["points"] = params.points
    picks = np.linspace(0, len(records) - 1, min(n_figures, len(records))).astype(int)
    predictions = [refined[i] for i in picks]
    faces = model.faces.cpu().numpy()
    figures = []
    for i, (verts, _, _) in zip(picks, predictions, strict=True):
        record = records[i]
        _, slot = nearest_slot(record.points, verts, model.faces.cpu(), slot_groups(record, model_merge(model)))
        stem = f"phase1_{record.sequence}_{record.frame:06d}"
        figures.append(reconstruction_figure(record, verts, faces, slot, f"learned slots + {params.refine_steps_eval} refinement steps",
                                             figures_dir / f"{stem}.png"))
        export_ply(verts, faces, meshes_dir / f"{stem}.ply")
    shapes = model.prototypes.shapes().detach().cpu().numpy()
    usage = np.array(metrics["prototypes"]["prototype_usage"])
    figures.append(prototype_gallery(shapes, faces, usage, figures_dir / "phase1_prototypes.png",
                                     metrics["prototypes"]["class_prototype_table"]))
    metrics["prototype_usage"] = metrics["prototypes"]["prototype_usage"]
    metrics["selected_step"] = selected_step(model_path)
    return metrics, figures


def phase2_report(model_path: Path, phase1_path: Path, raw: Path, cached: list[CachedSequence], camera: str,
                  figures_dir: Path, forecasts_csv: Path, camera_csv: Path) -> tuple[dict, list[Path]]:
    """Evaluate the phase-two model (and the phase-one model as the per-frame reference) on the ``cached``
    held-out sequences; returns (metrics, figure paths): one trajectory figure and one GIF per sequence.
    One row per forecast and method goes to ``forecasts_csv``, one per frame of camera error to ``camera_csv``."""
    model, params, p1 = load_video_model(model_path)
    phase1_model, _ = load_model(phase1_path)
    tracked = [c for c in cached if c.carried is not None]
    if not tracked:
        raise ValueError(f"no held-out sequence of {[c.name for c in cached]} has >= 2 frames with "
                         f">= {p1.min_points} target points")
    seqs = [with_carried(c) for c in tracked]
    per_frame = [c.records for c in tracked]  # the same frames with per-frame k-means anchors
    metrics, inferences, forecasts, cameras = evaluate_phase2(model, phase1_model, seqs, per_frame, params, raw_root=raw)
    atomic.write_text(forecasts_csv, pd.DataFrame(forecasts, columns=FORECAST_COLUMNS).to_csv(index=False))
    atomic.write_text(camera_csv, pd.DataFrame(cameras, columns=CAMERA_COLUMNS).to_csv(index=False))
    figures = []
    faces = model.slots.faces.cpu().numpy()
    for seq, inference in zip(seqs, inferences, strict=True):
        tracks = gt_tracks(raw, seq.name, camera, [r.frame for r in seq.records])
        centres = inference.track.centre[0].numpy()
        figures.append(trajectory_figure(seq.name, centres, inference.t_wc.numpy(), seq.t_wc, tracks,
                                         metrics["world_frame"], figures_dir / f"phase2_tracks_{seq.name}.png"))
        figures.append(raycast_gif(seq.records, inference.verts, faces, figures_dir / f"phase2_slots_{seq.name}.gif",
                                   inference.tracks))
    metrics["phase2_params"] = {"camera": params.camera, "guesses": params.guesses, "steps": params.steps}
    metrics["trajectory_gt_objects"] = int(np.sum([len(gt_tracks(raw, s.name, camera, [r.frame for r in s.records]))
                                                   for s in seqs]))
    return metrics, figures


def _phase2_files(model_path: Path, phase1_path: Path, raw: Path, cached: list[CachedSequence],
                  camera: str) -> tuple[dict, dict[str, bytes], dict[str, bytes]]:
    """:func:`phase2_report` into a scratch folder, for a worker process: (metrics, {CSV name: bytes},
    {figure name: bytes} in the report's figure order); the caller writes them inside its transaction."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        forecasts, cameras = folder / "phase2_forecasts.csv", folder / "phase2_camera.csv"
        metrics, figures = phase2_report(model_path, phase1_path, raw, cached, camera, folder, forecasts, cameras)
        tables = {p.name: p.read_bytes() for p in (forecasts, cameras)}
        return metrics, tables, {p.name: p.read_bytes() for p in figures}


def _write_all(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every (name, bytes) of ``files`` into ``folder`` (atomically); returns the paths in order."""
    for name, content in files.items():
        atomic.write_bytes(folder / name, content)
    return [folder / name for name in files]


def _one_torch_thread() -> None:
    """Worker initializer: torch (and its BLAS) on one thread in this worker. A forked child inherits the state of
    the parent's OpenMP runtime (GNU libgomp is not fork-safe): if the parent had run a parallel torch operation
    before the fork, the child's first one waits forever for thread-team members that were not forked (seen when
    :func:`run` is called twice in one process). With one thread torch runs every operation inline and never
    enters an OpenMP region; the stage's numbers are the same (its outputs kept their ``dvc.lock`` hashes)."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)


def _workers(n: int) -> Executor:
    """``n`` worker processes for the parts of the stage that do not depend on each other (2 cores: one part
    per core). Forked, so a worker starts at once without importing the stage again; each runs torch on one
    thread (:func:`_one_torch_thread`). Threads where fork does not exist."""
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_one_torch_thread)
    return ThreadPoolExecutor(max_workers=n)


def run(params: dict[str, Any], raw: Path, clouds: Path, frames: Path, reports: Path, phase1: Path, phase2: Path) -> None:
    """The stage: dataset report of ``raw`` + ``clouds``, then the two models' reports on the held-out
    sequences of the frame cache ``frames``, all into ``reports``.

    ``params``: the whole params.yaml (section ``data``; every param is logged to MLflow).
    """
    data = parse_section(params, "data", DataParams)
    camera = data.cameras[0]
    layouts = synthia.list_sequences(raw)
    train = parse_section(params, "train", Phase1Params)  # the models must match params.yaml
    phase1_saved, phase2_saved = load_checkpoint(phase1), load_checkpoint(phase2)
    check_trained_with(phase1, phase1_saved["params"], train.model_dump(), "train")
    check_trained_with(phase2, phase2_saved["phase1_params"], train.model_dump(), "train")
    check_trained_with(phase2, phase2_saved["params"], parse_section(params, "video", Phase2Params).model_dump(), "video")
    split = split_sequences([l.name for l in layouts], data.val_sequences, data.test_sequences)
    cached = load_cached(frames, split["test"] or split["val"], camera, frame_selection(train))
    # The dataset report and phase two do not depend on phase one's results: each runs in its own worker
    # process beside phase one (forked before MLflow starts; outputs come back as bytes and are written here).
    pool = _workers(2)
    dataset = pool.submit(dataset_report.report, layouts, camera, clouds)
    second = pool.submit(_phase2_files, phase2, phase1, raw, cached, camera)
    with pool, atomic.transaction(), stage_run("evaluate", reports) as stage:  # all outputs change together
        phase1_metrics, phase1_figures = phase1_report(phase1, raw, cached, reports / "figures", reports / "meshes",
                                                       reports / "phase1_frames.csv")
        stage.log_metrics({"phase1": phase1_metrics})
        phase2_metrics, tables, phase2_pngs = second.result()
        _write_all(reports, tables)
        phase2_figures = _write_all(reports / "figures", phase2_pngs)
        stage.log_metrics({"phase2": phase2_metrics})
        totals, per_sequence, pngs = dataset.result()
        stage.log_metrics({"dataset": totals, "per_sequence": per_sequence}, mlflow_group="stats")
        figures = _write_all(reports / "figures", {f"{name}.png": png for name, png in pngs.items()})
        for figure in figures + phase1_figures + phase2_figures:
            stage.log_artifact(figure, "figures")
        # Make the MLflow run self-describing: every param and the lock file (stages DVC skipped log nothing).
        stage.log_params(flatten(params))
        stage.log_dict(flatten(params), "config/params_flat.json")
        stage.log_artifact(Path("dvc.lock"), "config")
