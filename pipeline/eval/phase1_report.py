"""The phase-one part of the `evaluate` stage: metrics on held-out frames, figures, PLY meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import load_frames
from pipeline.eval.phase1_eval import evaluate_phase1, predict_meshes
from pipeline.eval.phase1_figures import export_ply, prototype_gallery, reconstruction_figure
from pipeline.geometry.mesh import point_mesh_sq_dist
from pipeline.io import atomic
from pipeline.train.phase1 import Phase1Params, load_model, selected_step


def phase1_report(model_path: Path, raw: Path, clouds: Path, sequences: list[str], camera: str,
                  figures_dir: Path, meshes_dir: Path, frames_csv: Path, n_figures: int = 3) -> tuple[dict, list[Path]]:
    """Evaluate the trained model on ``sequences``; returns (metrics, figure paths). Per-frame metrics
    of every method go to ``frames_csv`` (one row per frame and method; paired comparisons)."""
    model, saved = load_model(model_path)
    params = Phase1Params(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    records, skipped = load_frames(raw, clouds, sequences, camera, params.selection())
    if not records:
        raise ValueError(f"no held-out frame of {sequences} has >= train.min_points target points")
    metrics, per_frame = evaluate_phase1(model, records, raw, params)
    write_frame_table(per_frame, frames_csv)
    metrics["held_out_sequences"] = sequences
    metrics["skipped_frames"] = skipped
    metrics["points"] = params.points
    picks = np.linspace(0, len(records) - 1, min(n_figures, len(records))).astype(int)
    predictions = predict_meshes(model, [records[i] for i in picks], params, params.refine_steps_eval)
    faces = model.faces.cpu().numpy()
    figures = []
    for i, (verts, _, _) in zip(picks, predictions, strict=True):
        record = records[i]
        with torch.no_grad():
            _, slot, _ = point_mesh_sq_dist(torch.from_numpy(record.points)[None], torch.from_numpy(verts)[None],
                                            model.faces.cpu())
        stem = f"phase1_{record.sequence}_{record.frame:06d}"
        figures.append(reconstruction_figure(record, verts, faces, slot[0].numpy(), f"learned slots + {params.refine_steps_eval} refinement steps",
                                             figures_dir / f"{stem}.png"))
        export_ply(verts, faces, meshes_dir / f"{stem}.ply")
    shapes = model.prototypes.shapes().detach().cpu().numpy()
    usage = np.array(metrics["prototypes"]["prototype_usage"])
    figures.append(prototype_gallery(shapes, faces, usage, figures_dir / "phase1_prototypes.png",
                                     metrics["prototypes"]["class_prototype_table"]))
    metrics["prototype_usage"] = metrics["prototypes"]["prototype_usage"]
    metrics["selected_step"] = selected_step(model_path)
    return metrics, figures


def write_frame_table(rows: list[dict], out: Path) -> Path:
    """Per-frame metrics as CSV (atomic write)."""
    import pandas as pd

    atomic.write_text(out, pd.DataFrame(rows).to_csv(index=False))
    return out
