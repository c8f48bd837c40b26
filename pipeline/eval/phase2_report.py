"""The phase-two part of the `evaluate` stage: metrics on held-out sequences, trajectory figure, GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.frames import load_frames
from pipeline.eval.phase2_eval import evaluate_phase2
from pipeline.eval.phase2_figures import gt_tracks, raycast_gif, trajectory_figure
from pipeline.train.phase1 import frame_selection, load_model
from pipeline.train.phase2 import load_sequences, load_video_model


def phase2_report(model_path: Path, phase1_path: Path, raw: Path, clouds: Path, sequences: list[str], camera: str,
                  figures_dir: Path) -> tuple[dict, list[Path]]:
    """Evaluate the phase-two model (and the phase-one model as the per-frame reference) on
    ``sequences``; returns (metrics, figure paths): one trajectory figure and one GIF per sequence."""
    model, params, p1 = load_video_model(model_path)
    phase1_model, _ = load_model(phase1_path)
    selection = frame_selection(p1)
    seqs = load_sequences(raw, clouds, sequences, camera, selection)
    if not seqs:
        raise ValueError(f"no held-out sequence of {sequences} has >= 2 frames with >= {p1.min_points} target points")
    per_frame = []
    for seq in seqs:
        records, _ = load_frames(raw, clouds, [seq.name], camera, selection, progress=False)
        by_frame = {r.frame: r for r in records}
        per_frame.append([by_frame[r.frame] for r in seq.records])
    metrics, inferences = evaluate_phase2(model, phase1_model, seqs, per_frame, params)
    figures = []
    faces = model.slots.faces.cpu().numpy()
    for seq, inference in zip(seqs, inferences, strict=True):
        frames = [r.frame for r in seq.records]
        tracks = gt_tracks(raw, seq.name, camera, frames)
        centres = inference.track.centre[0].numpy()
        figures.append(trajectory_figure(seq.name, centres, inference.t_wc.numpy(), seq.t_wc, tracks,
                                         metrics["world_frame"], figures_dir / f"phase2_tracks_{seq.name}.png"))
        figures.append(raycast_gif(seq.records, inference.verts, faces, figures_dir / f"phase2_slots_{seq.name}.gif"))
    metrics["phase2_params"] = {"camera": params.camera, "guesses": params.guesses, "steps": params.steps}
    metrics["trajectory_gt_objects"] = int(np.sum([len(gt_tracks(raw, s.name, camera, [r.frame for r in s.records]))
                                                   for s in seqs]))
    return metrics, figures
