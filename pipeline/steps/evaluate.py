"""The phase-one part of the `evaluate` stage: metrics on held-out frames, figures, PLY meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import load_frames
from pipeline.eval.phase1_eval import evaluate_phase1, predict_meshes
from pipeline.eval.phase1_figures import export_ply, prototype_gallery, reconstruction_figure
from pipeline.geometry.mesh import point_mesh_sq_dist
from pipeline.train.phase1 import Phase1Params, load_model


def phase1_report(model_path: Path, raw: Path, clouds: Path, sequences: list[str], camera: str,
                  figures_dir: Path, meshes_dir: Path, n_figures: int = 3) -> tuple[dict, list[Path]]:
    """Evaluate the trained model on ``sequences``; returns (metrics, figure paths)."""
    model, saved = load_model(model_path)
    params = Phase1Params(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    records, skipped = load_frames(raw, clouds, sequences, camera, params.selection())
    if not records:
        raise ValueError(f"no held-out frame of {sequences} has >= train.min_points target points")
    metrics = evaluate_phase1(model, records, raw, params)
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
    all_weights = np.concatenate([w for _, _, w in predict_meshes(model, records)])
    shapes = model.prototypes.shapes().detach().cpu().numpy()
    figures.append(prototype_gallery(shapes, faces, all_weights.mean(0), figures_dir / "phase1_prototypes.png"))
    metrics["prototype_usage"] = [round(float(u), 4) for u in all_weights.mean(0)]
    return metrics, figures
