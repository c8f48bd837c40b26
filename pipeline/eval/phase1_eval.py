"""Phase-one evaluation on held-out frames: the learned slots against the two per-frame baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.frames import FrameRecord
from pipeline.eval.baselines import ellipsoid_meshes, sphere_meshes
from pipeline.eval.gt_objects import matched_position_error, visible_things
from pipeline.eval.prototype_stats import class_prototype_stats, distinct_slots
from pipeline.eval.scene_metrics import frame_metrics, mean_metrics
from pipeline.geometry.icosphere import ico_sphere
from pipeline.io.synthia import SequenceLayout
from pipeline.models.slots import SlotSceneModel
from pipeline.models.slots.batch import Merge, anchors_of, make_batch, model_merge, predict, slot_groups
from pipeline.models.slots.losses import refine_weights
from pipeline.models.slots.refine import refine_vectors
from pipeline.params.train import Phase1Params
from pipeline.progress import progress_bar

METHODS = ("model", "model_refined", "kmeans_spheres", "pca_ellipsoids")
BASELINE_ICO_LEVEL = 3
MIN_OBJECT_POINTS = 20
SELECTION_KEYS = ("chamfer_l1_m", "chamfer_vis_m", "acc_m", "comp_all_m", "fg_ari")


def predict_meshes(model: SlotSceneModel, records: list[FrameRecord], params: Phase1Params | None = None,
                   refine_steps: int = 0, batch_size: int = 8):
    """Per record: (verts (K, V, 3), centres (K, 3), prototype weights (K, P)) from the model's single
    pass, or after ``refine_steps`` per-frame refinement steps (``params`` gives the loss settings; with
    ``train.refine_parts`` the refinement fits the unmerged clusters, :func:`refinement_merge`)."""
    out = []
    device = model.faces.device
    merge = model_merge(model) if refine_steps <= 0 else refinement_merge(model, params)
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        batch = make_batch(chunk, 1, None, device, merge)
        with torch.no_grad():
            slots = predict(model, batch)
        if refine_steps > 0:
            vectors, stretch = refine_vectors(model, batch, anchors_of(batch), slots.vector, refine_steps,
                                              params.refine_lr, refine_weights(params), params.samples_per_slot,
                                              seed=i, stretch=params.refine_stretch)
            with torch.no_grad():
                slots = model.decode(vectors, anchors_of(batch), stretch=stretch)
        out += [tuple(x[j].detach().cpu().numpy() for x in (slots.verts, slots.centre, slots.weights))
                for j in range(len(chunk))]
    return out


def refinement_merge(model: SlotSceneModel, params: Phase1Params) -> Merge:
    """The anchors the per-frame refinement starts from: the model's own (:func:`model_merge`), or, with
    ``train.refine_parts`` and a ``shared`` model, the k-means clusters unmerged: the network's vectors for each
    cluster, so the refinement fits K primitives (one per cluster, as the baselines do) while the objects, and
    with them the segmentation, stay the merged groups (:func:`slot_groups` depends on the gap alone)."""
    merge = model_merge(model)
    return (merge[0], merge[1], False) if params.refine_parts else merge


def validation_scores(model: SlotSceneModel, records: list[FrameRecord]) -> dict[str, float | None]:
    """Mean single-pass metrics of ``model`` over ``records``, computed as :func:`evaluate_phase1`
    computes them (the model-selection scores; ``chamfer_l1_m`` and ``fg_ari`` among them)."""
    was_training = model.training
    model.eval()
    rows = [frame_metrics(r.points, r.instance, verts, model.faces.cpu(), r.depth, r.intrinsics, seed=r.frame,
                          group=slot_groups(r, model_merge(model)))
            for r, (verts, _, _) in zip(records, predict_meshes(model, records), strict=True)]
    model.train(was_training)
    return {k: v for k, v in mean_metrics(rows).items() if k in SELECTION_KEYS}


def evaluate_phase1(model: SlotSceneModel, records: list[FrameRecord], raw_root: Path, params: Phase1Params,
                    progress: bool = True) -> tuple[dict, list[dict], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Mean metrics per method over ``records``, relative improvements of the model and the prototype
    statistics (:mod:`pipeline.eval.prototype_stats`, single pass); also one row per (frame, method)
    with that frame's metrics (``sequence``, ``frame``, ``method`` and the metric columns), and the
    refined predictions per record (as :func:`predict_meshes`; the figures reuse them)."""
    unit, unit_faces = ico_sphere(BASELINE_ICO_LEVEL)
    unit = unit.numpy()
    single = predict_meshes(model, records)
    refined = predict_meshes(model, records, params, params.refine_steps_eval)
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    per_frame: list[dict] = []
    slots: list[np.ndarray] = []
    merge = model_merge(model)
    for record, (verts, centres, _), (verts_r, centres_r, _) in progress_bar(
            list(zip(records, single, refined, strict=True)), desc="evaluate phase 1", unit="frame",
            disable=not progress):
        truth = visible_things(SequenceLayout(raw_root / record.sequence), record.camera, record.frame)
        if truth is not None:  # objects the slots could fit: at least MIN_OBJECT_POINTS target points
            ids, counts = np.unique(record.instance[record.instance > 0], return_counts=True)
            fitted = np.isin(truth[2], ids[counts >= MIN_OBJECT_POINTS])
        group = slot_groups(record, merge)  # the model's objects; the baselines keep the clusters
        slots.append(distinct_slots(group, shared=merge[2]))
        candidates = {
            "model": (verts, model.faces.cpu(), centres, group),
            "model_refined": (verts_r, model.faces.cpu(), centres_r, group),
            "kmeans_spheres": (sphere_meshes(record.anchors, unit), unit_faces, record.anchors.centre, None),
            "pca_ellipsoids": (ellipsoid_meshes(record.anchors, unit), unit_faces, record.anchors.centre, None),
        }
        for method, (v, faces, c, g) in candidates.items():
            row = frame_metrics(record.points, record.instance, v, faces, record.depth, record.intrinsics,
                                seed=record.frame, group=g)
            if truth is not None:
                error = matched_position_error(c, truth[0][fitted])
                if error is not None:
                    row["position_error_m"] = error
            rows[method].append(row)
            per_frame.append({"sequence": record.sequence, "frame": record.frame, "method": method, **row})
    summary = {m: mean_metrics(r) for m, r in rows.items()}
    summary["prototypes"] = class_prototype_stats(records, single, model.faces.cpu(), MIN_OBJECT_POINTS, slots)
    base = summary["kmeans_spheres"]
    for method in ("model", "model_refined"):
        learned = summary[method]
        summary[f"{method}_vs_kmeans_spheres"] = {
            "chamfer_l1_reduction": _reduction(base["chamfer_l1_m"], learned["chamfer_l1_m"]),
            "chamfer_vis_reduction": _reduction(base["chamfer_vis_m"], learned["chamfer_vis_m"]),
            "acc_reduction": _reduction(base["acc_m"], learned["acc_m"]),
            "fg_ari_gain": (round(learned["fg_ari"] - base["fg_ari"], 4)
                            if learned.get("fg_ari") is not None and base.get("fg_ari") is not None else None),
        }
    return summary, per_frame, refined


def _reduction(baseline: float | None, value: float | None) -> float | None:
    if baseline is None or value is None or baseline == 0:
        return None
    return round(1 - value / baseline, 4)
