"""Phase-two evaluation on held-out sequences: identity over time, forecasts, camera.

- **FG-ARI per frame** (as phase one: each target point belongs to the slot owning its nearest
  surface point; ARI against GT instance ids over points with an instance id; frames with >= 2
  instances) and **clip FG-ARI**: one contingency table over all frames of a clip of
  ``eval_clip_frames`` consecutive frames (SAVi's video FG-ARI), so a slot that swaps objects
  between frames is penalised while per-frame FG-ARI cannot see it.
- **Identity switches**: per frame, GT instances are Hungarian-matched to slots on shared points;
  for every GT instance, each change of its matched slot between consecutive frames where it is
  matched counts one switch.
- Both for the phase-two model (carried anchors) and for the phase-one model on per-frame k-means
  anchors (sorted by depth, no identity), the reference that shows what carrying buys.
- **Forecasts** at Δ = 1, 5, 10 frames from ``eval_context_frames`` consecutive context frames:
  one-directional Chamfer (mean distance of the true target frame's points to the nearest surface of
  the forecast meshes, metres, exact point-to-triangle), best-of-1 (the most confident guess) and
  best-of-k, against copy-last-frame slots (world frame) and constant-velocity extrapolation, plus
  the encoder's own slots of the target frame (what a perfect forecast of the model's slots would
  score). The forecast is made in the world frame and compared in the target camera, placed with the
  same pose for every method (predicted by the camera head from the target depth frame, or GT).
- **Camera** (head on, GT poses present): relative-pose error of consecutive frames (degrees,
  metres) and the drift of the chained pose at the sequence end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from pipeline.geometry.mesh import point_mesh_sq_dist
from pipeline.geometry.rotations import geodesic_angle
from pipeline.models.slots.batch import make_batch, predict
from pipeline.models.slots.model import SlotParams
from pipeline.models.video import VideoSlotModel
from pipeline.models.video.forecaster import SlotTrack, constant_velocity, copy_last
from pipeline.models.video.model import forecast_chamfer, world_track
from pipeline.models.video.poses import chain
from pipeline.models.video.priors import third_difference_m
from pipeline.models.video.sequences import SequenceFrames
from pipeline.models.video.tracking import match_chain, reorder
from pipeline.progress import progress_bar


class Phase2EvalSettings(Protocol):
    """The phase-two settings the evaluation reads (the ``video`` section of params.yaml, as trained)."""

    @property
    def camera(self) -> str: ...  # "predicted" (camera head) | "gt"
    @property
    def match_slots(self) -> bool: ...
    @property
    def eval_context_frames(self) -> int: ...
    @property
    def eval_clip_frames(self) -> int: ...


DELTAS = (1, 5, 10)
MIN_INSTANCE_POINTS = 20
BATCH = 8


def fg_ari(instance: np.ndarray, slot: np.ndarray) -> float | None:
    """ARI between GT instance ids and slot ids over points with instance > 0 (None below 2 instances)."""
    fg = instance > 0
    if len(np.unique(instance[fg])) < 2:
        return None
    return float(adjusted_rand_score(instance[fg], slot[fg]))


def clip_fg_ari(instances: list[np.ndarray], slots: list[np.ndarray]) -> float | None:
    """FG-ARI of one contingency table over all frames of a clip (identity swaps count)."""
    return fg_ari(np.concatenate(instances), np.concatenate(slots))


def identity_switches(instances: list[np.ndarray], slots: list[np.ndarray],
                      min_points: int = MIN_INSTANCE_POINTS) -> tuple[int, int]:
    """(switches, tracked instances): per frame, Hungarian matching of GT instances (>= ``min_points``
    points) to slots maximising shared points; a switch is a change of an instance's matched slot
    between consecutive frames in which it is matched."""
    last: dict[int, int] = {}
    switches = 0
    for inst, slot in zip(instances, slots, strict=True):
        ids, counts = np.unique(inst[inst > 0], return_counts=True)
        ids = ids[counts >= min_points]
        if len(ids) == 0:
            continue
        labels = np.unique(slot)
        overlap = np.array([[np.sum((inst == i) & (slot == s)) for s in labels] for i in ids])
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols, strict=True):
            if overlap[r, c] == 0:
                continue
            key, value = int(ids[r]), int(labels[c])
            if key in last and last[key] != value:
                switches += 1
            last[key] = value
    return switches, len(last)


@dataclass
class SequenceInference:
    """Slots of every usable frame of a sequence: camera-frame meshes (T, K, V, 3), the point -> slot
    assignment per frame, the world-frame track (B = 1) and the world_from_camera poses used."""

    verts: np.ndarray
    point_slot: list[np.ndarray]
    track: SlotTrack
    r_wc: torch.Tensor  # (T, 3, 3)
    t_wc: torch.Tensor  # (T, 3)
    r_rel: torch.Tensor | None  # (T-1, 3, 3) predicted prev_from_cur, or None with camera = gt
    t_rel: torch.Tensor | None


@torch.no_grad()
def point_slots(points: np.ndarray, verts: torch.Tensor, faces: torch.Tensor) -> np.ndarray:
    """Slot owning each point's nearest surface point (exact), (N,)."""
    _, slot, _ = point_mesh_sq_dist(torch.tensor(points)[None], verts[None], faces, exact=True)
    return slot[0].numpy()


@torch.no_grad()
def infer_sequence(model: VideoSlotModel, seq: SequenceFrames, camera: str) -> SequenceInference:
    """Run the encoder on every frame (carried anchors) and place the slots in the world frame."""
    params, fmaps = [], []
    for i in range(0, len(seq.records), BATCH):
        batch = make_batch(seq.records[i : i + BATCH], 1, None, torch.device("cpu"))
        out, fmap = model.encode(batch)
        params.append(out)
        fmaps.append(fmap)
    fmap = torch.cat(fmaps)
    time = torch.tensor(seq.time, dtype=torch.float32)[None]
    r_rel = t_rel = None
    if camera == "predicted":
        r_rel, t_rel = model.relative_poses(fmap[None], time)
        r_wc, t_wc = chain(r_rel, t_rel)
        r_wc, t_wc, r_rel, t_rel = r_wc[0], t_wc[0], r_rel[0], t_rel[0]
    else:
        if seq.r_wc is None:
            raise ValueError(f"{seq.name}: video.camera = gt needs pose files")
        r_wc, t_wc = torch.tensor(seq.r_wc, dtype=torch.float32), torch.tensor(seq.t_wc, dtype=torch.float32)
    merged = SlotParams(*(torch.cat([getattr(p, f) for p in params]) for f in
                          ("vector", "scale", "centre", "euler", "weights", "verts")))
    track = world_track(merged, (1, len(seq.records)), r_wc[None], t_wc[None], time)
    faces = model.slots.faces
    slots = [point_slots(r.points, merged.verts[i], faces) for i, r in enumerate(seq.records)]
    return SequenceInference(merged.verts.numpy(), slots, track, r_wc, t_wc, r_rel, t_rel)


@torch.no_grad()
def phase1_point_slots(phase1_model, seq: SequenceFrames, raw_records) -> list[np.ndarray]:
    """Point -> slot of the phase-one model on per-frame (depth-sorted) k-means anchors."""
    out = []
    for i in range(0, len(raw_records), BATCH):
        chunk = raw_records[i : i + BATCH]
        slots = predict(phase1_model, make_batch(chunk, 1, None, torch.device("cpu")))
        out += [point_slots(r.points, slots.verts[j], phase1_model.faces) for j, r in enumerate(chunk)]
    return out


def identity_metrics(seq: SequenceFrames, slots: list[np.ndarray], clip_frames: int) -> dict:
    """Per-frame FG-ARI rows, clip FG-ARI rows and identity switches of one sequence."""
    instances = [r.instance for r in seq.records]
    per_frame = [a for a in (fg_ari(i, s) for i, s in zip(instances, slots, strict=True)) if a is not None]
    clips = []
    for start in range(0, len(instances) - clip_frames + 1, clip_frames):
        value = clip_fg_ari(instances[start : start + clip_frames], slots[start : start + clip_frames])
        if value is not None:
            clips.append(value)
    switches, tracked = identity_switches(instances, slots)
    return {"per_frame": per_frame, "clip": clips, "switches": switches, "tracked": tracked}


def summarise_identity(rows: list[dict], frames: int) -> dict:
    per_frame = [a for r in rows for a in r["per_frame"]]
    clips = [a for r in rows for a in r["clip"]]
    switches, tracked = sum(r["switches"] for r in rows), sum(r["tracked"] for r in rows)
    return {"fg_ari_per_frame": round(float(np.mean(per_frame)), 4) if per_frame else None,
            "fg_ari_clip": round(float(np.mean(clips)), 4) if clips else None,
            "clips": len(clips), "clip_frames": frames, "identity_switches": switches,
            "tracked_instances": tracked,
            "switches_per_instance": round(switches / tracked, 3) if tracked else None}


def window(track: SlotTrack, start: int, stop: int, match: bool) -> SlotTrack:
    """Frames [start, stop) of a B = 1 track, Hungarian-chained to the window's first frame if ``match``."""
    part = track.frames(slice(start, stop))
    if not match:
        return part
    perm = match_chain(part.centre[0], part.weights[0])[None]
    return SlotTrack(reorder(part.centre, perm), reorder(part.rotation, perm), reorder(part.scale, perm),
                     reorder(part.weights, perm), part.time)


@torch.no_grad()
def forecast_metrics(model: VideoSlotModel, seq: SequenceFrames, inference: SequenceInference, params: Phase2EvalSettings,
                     stride: int = 2) -> dict[int, dict[str, list[float]]]:
    """Per Δ (frames): lists of per-forecast errors (m) for every method (see module docstring)."""
    c = params.eval_context_frames
    out: dict[int, dict[str, list[float]]] = {d: {} for d in DELTAS}
    frames = np.array([r.frame for r in seq.records])
    faces = model.slots.faces
    for last in range(c - 1, len(seq.records), stride):
        context = window(inference.track, last - c + 1, last + 1, params.match_slots)
        if np.any(np.diff(frames[last - c + 1 : last + 1]) != 1):
            continue  # context of consecutive frames only
        for delta in DELTAS:
            hits = np.nonzero(frames == frames[last] + delta)[0]
            if len(hits) == 0:
                continue
            target = int(hits[0])
            record = seq.records[target]
            points = torch.tensor(record.points)[None]
            mask = torch.ones(points.shape[:2], dtype=torch.bool)
            r_wc, t_wc = inference.r_wc[target][None], inference.t_wc[target][None]
            delta_s = torch.tensor([seq.time[target] - seq.time[last]], dtype=torch.float32)
            forecast = model.forecaster(context, delta_s)
            per_guess = forecast_chamfer(model, forecast, r_wc, t_wc, points, mask, exact=True)[0]
            rows = out[delta]
            rows.setdefault("model_best_of_1", []).append(float(per_guess[forecast.logits[0].argmax()]))
            rows.setdefault("model_best_of_k", []).append(float(per_guess.min()))
            for name, baseline in (("copy_last", copy_last(context)), ("constant_velocity", constant_velocity(context, delta_s))):
                rows.setdefault(name, []).append(float(forecast_chamfer(model, baseline, r_wc, t_wc, points, mask,
                                                                        exact=True)[0, 0]))
            sq, _, _ = point_mesh_sq_dist(points, torch.from_numpy(inference.verts[target])[None], faces, exact=True)
            rows.setdefault("target_frame_slots", []).append(float(torch.sqrt(sq).mean()))
    return out


def camera_metrics(inferences: list[SequenceInference], sequences: list[SequenceFrames]) -> dict | None:
    """Relative-pose error of consecutive frames and chained drift at the end (predicted camera only)."""
    angles, shifts, drift_t, drift_r = [], [], [], []
    for inf, seq in zip(inferences, sequences, strict=True):
        if inf.r_rel is None or seq.r_wc is None:
            continue
        r_gt, t_gt = torch.tensor(seq.r_wc, dtype=torch.float32), torch.tensor(seq.t_wc, dtype=torch.float32)
        r_true = r_gt[:-1].transpose(-1, -2) @ r_gt[1:]
        t_true = (r_gt[:-1].transpose(-1, -2) @ (t_gt[1:] - t_gt[:-1]).unsqueeze(-1)).squeeze(-1)
        angles += torch.rad2deg(geodesic_angle(inf.r_rel, r_true)).tolist()
        shifts += (inf.t_rel - t_true).norm(dim=-1).tolist()
        drift_t.append(float((inf.t_wc[-1] - t_gt[-1]).norm()))
        drift_r.append(math.degrees(float(geodesic_angle(inf.r_wc[-1], r_gt[-1]))))
    if not angles:
        return None
    return {"relative_rotation_deg": round(float(np.mean(angles)), 4),
            "relative_translation_m": round(float(np.mean(shifts)), 4),
            "end_drift_m": round(float(np.mean(drift_t)), 3), "end_drift_rotation_deg": round(float(np.mean(drift_r)), 3),
            "pairs": len(angles)}


def motion_residual_m(inference: SequenceInference, match: bool) -> float | None:
    """Mean norm of the third difference (m, true time stamps) of the world slot tracks."""
    track = window(inference.track, 0, inference.track.centre.shape[1], match)
    if track.centre.shape[1] < 4:
        return None
    x = track.centre[0].transpose(0, 1)  # (K, T, 3)
    return float(third_difference_m(x, track.time[0].expand(x.shape[0], -1)).norm(dim=-1).mean())


def evaluate_phase2(model: VideoSlotModel, phase1_model, sequences: list[SequenceFrames],
                    per_frame_records: list[list], params: Phase2EvalSettings, progress: bool = True) -> tuple[dict, list[SequenceInference]]:
    """All phase-two metrics over held-out ``sequences`` (``per_frame_records``: the same frames with
    phase-one per-frame anchors, for the phase-one reference)."""
    inferences, ours, reference = [], [], []
    forecasts: dict[int, dict[str, list[float]]] = {d: {} for d in DELTAS}
    residuals = []
    for seq, raw_records in progress_bar(list(zip(sequences, per_frame_records, strict=True)), desc="evaluate phase 2",
                                 unit="seq", disable=not progress):
        inference = infer_sequence(model, seq, params.camera)
        inferences.append(inference)
        ours.append(identity_metrics(seq, inference.point_slot, params.eval_clip_frames))
        reference.append(identity_metrics(seq, phase1_point_slots(phase1_model, seq, raw_records), params.eval_clip_frames))
        for delta, rows in forecast_metrics(model, seq, inference, params).items():
            for name, values in rows.items():
                forecasts[delta].setdefault(name, []).extend(values)
        residual = motion_residual_m(inference, params.match_slots)
        if residual is not None:
            residuals.append(residual)
    metrics = {
        "identity": {"phase2_carried": summarise_identity(ours, params.eval_clip_frames),
                     "phase1_per_frame_kmeans": summarise_identity(reference, params.eval_clip_frames)},
        "forecast_chamfer_m": {f"delta_{d}": {**{k: round(float(np.mean(v)), 4) for k, v in rows.items()},
                                              "forecasts": len(next(iter(rows.values()), []))}
                               for d, rows in forecasts.items()},
        "world_frame": "camera head (chained predicted relative poses)" if params.camera == "predicted"
                       else "ground-truth poses (camera head off)",
        "guesses": model.config.guesses,
        "context_frames": params.eval_context_frames,
        "motion_residual_m": round(float(np.mean(residuals)), 4) if residuals else None,
        "sequences": [s.name for s in sequences],
        "frames": sum(len(s.records) for s in sequences),
    }
    for d, rows in metrics["forecast_chamfer_m"].items():
        if rows.get("model_best_of_1") is not None and rows.get("copy_last") is not None:
            best_baseline = min(rows["copy_last"], rows["constant_velocity"])
            rows["best_of_1_vs_best_baseline"] = round(1 - rows["model_best_of_1"] / best_baseline, 4)
            rows["best_of_k_vs_best_baseline"] = round(1 - rows["model_best_of_k"] / best_baseline, 4)
    camera = camera_metrics(inferences, sequences)
    if camera is not None:
        metrics["camera_error"] = camera
    return metrics, inferences
