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
  anchors (sorted by depth, no identity), the reference that shows what carrying buys; each once with the
  slot indices as identities and once with the track ids of :mod:`pipeline.models.video.object_tracks`
  (the slots' objects, touching slots grouped within ``track_touch_m``, associated in the world frame with a
  gate ``track_gate_m``, a memory ``track_memory_s`` and established tracks preferred by
  ``track_established_m``): ``phase2_tracked`` is the system's identity, the others show what each part buys.
- **Forecasts** at Δ = 1, 5, 10 frames from every window of ``eval_context_frames`` consecutive
  usable frames whose target frame is usable (stride 1: all valid windows): one-directional Chamfer
  (mean distance of the true target frame's points to the nearest surface of the forecast meshes,
  metres, point-to-triangle over 8 candidate faces per point: within 1e-5 of exact on such scenes, over
  ``EVAL_POINTS`` evenly spread target points) of the model's best-of-1 (the guess with the highest confidence
  logit) and best-of-k, against the single-guess baselines copy-last, constant velocity and constant
  acceleration (parabola through the last three frames) and the k-guess baselines (speed scalings,
  context lengths; :mod:`pipeline.models.video.baselines`), plus two references: the last centres moved by
  their objects' gated velocity (``objects_constant_velocity``: what the object tracks give without learning,
  :mod:`pipeline.models.video.object_motion`; with ``velocity_from = objects`` the model's guesses extrapolate the
  same velocity) and the encoder's own slots of the target frame (what a perfect forecast of the model's slots
  would score). The forecast is made in the world
  frame and compared in the target camera, placed with the same pose for every method (predicted by
  the camera head from the target depth frame, or GT). One row per forecast and method:
  :func:`forecast_rows` (the evaluate stage writes them to ``reports/evaluate/phase2_forecasts.csv``).
- **Camera** (camera head or depth odometry, GT poses present): per frame the relative-pose error against the previous usable
  frame (degrees, metres) and the drift of the chained pose from the ground truth (m, degrees); summary:
  means, drift at the sequence end and within ``DRIFT_HORIZON`` frames (``phase2_camera.csv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from pipeline.data.frames import DepthFrame, FrameRecord, depth_frames
from pipeline.data.odometry import Between, depth_odometry, refine_relative_poses
from pipeline.eval.partition_agreement import adjusted_rand_index
from pipeline.geometry.mesh import point_mesh_sq_dist
from pipeline.geometry.rotations import geodesic_angle
from pipeline.models.slots.batch import make_batch, model_merge, predict
from pipeline.models.slots.model import SlotParams
from pipeline.models.video import VideoSlotModel
from pipeline.models.video.baselines import constant_acceleration, context_lengths, speed_scalings
from pipeline.models.video.forecaster import Forecast, SlotTrack, constant_velocity, copy_last
from pipeline.models.video.model import forecast_chamfer, world_track
from pipeline.models.video.object_motion import (SequenceObjects, TrackSettings, gated, point_owners, track_objects,
                                                  world_points)
from pipeline.models.video.object_tracks import relabel
from pipeline.models.video.poses import chain, compose, invert
from pipeline.models.video.priors import third_difference_m
from pipeline.models.video.sequences import SequenceFrames
from pipeline.models.video.tracking import frame_order, matched_track
from pipeline.progress import progress_bar


class Phase2EvalSettings(TrackSettings, Protocol):
    """The phase-two settings the evaluation reads (the ``video`` section of params.yaml, as trained; the object
    trackers' ``track_*`` settings: :class:`pipeline.models.video.object_motion.TrackSettings`)."""

    @property
    def camera(self) -> str: ...  # "predicted" (camera head) | "gt" | "self_supervised" (depth odometry)
    @property
    def camera_refine(self) -> str: ...  # "none" | "icp" (camera = predicted: head's poses refined by ICP)
    @property
    def camera_prior_rotation_deg(self) -> float: ...
    @property
    def camera_prior_translation_m(self) -> float: ...
    @property
    def match_slots(self) -> bool: ...
    @property
    def eval_context_frames(self) -> int: ...
    @property
    def eval_clip_frames(self) -> int: ...
    @property
    def velocity_from(self) -> str: ...  # "slots" | "objects": what the forecaster's guesses extrapolate
    @property
    def object_min_speed_mps(self) -> float: ...
    @property
    def object_max_residual_m(self) -> float: ...
    @property
    def forecast_training(self) -> str: ...  # "best_of_k" | "grpo"
    @property
    def weight_single_guess(self) -> float: ...  # > 0 with best_of_k: guess 0 is the trained one-guess forecast
    @property
    def single_guess_weighting(self) -> str: ...  # "uniform" | "inverse_gap": how guess 0's clips were weighted
    @property
    def confidence_target(self) -> str: ...  # "winner" | "error": what the confidence logits learned


DELTAS = (1, 5, 10)
SINGLE_GUESS = ("copy_last", "constant_velocity", "constant_acceleration")
FORECAST_COLUMNS = ["sequence", "context_last", "delta", "delta_s", "method", "chamfer_m"]
CAMERA_COLUMNS = ["sequence", "frame", "relative_rotation_deg", "relative_translation_m", "drift_m", "drift_deg"]
WORLD_FRAMES = {"predicted": "camera head (chained predicted relative poses)",
                "predicted+icp": "camera head refined by ICP of consecutive depth maps (the head's pose as the prior), chained",
                "gt": "ground-truth poses (camera head off)",
                "self_supervised": "depth odometry (chained ICP of consecutive depth maps, no ground truth)"}
DRIFT_HORIZON = 40  # frames: the drift target's sequence length
MIN_INSTANCE_POINTS = 20
BATCH = 8
EVAL_POINTS = 2048  # at most this many target points per forecast scored (a cap; things-only frames rarely reach it)


def fg_ari(instance: np.ndarray, slot: np.ndarray) -> float | None:
    """ARI between GT instance ids and slot ids over points with instance > 0 (None below 2 instances)."""
    fg = instance > 0
    if len(np.unique(instance[fg])) < 2:
        return None
    return float(adjusted_rand_index(instance[fg], slot[fg]))


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
    head_rel: tuple[torch.Tensor, torch.Tensor] | None = None  # the camera head's own (r_rel, t_rel) when refined
    tracks: list[dict[int, int]] | None = None  # per frame {slot: object track id} (object_tracks.track_slots)
    objects: SequenceObjects | None = None  # the tracked objects' mean points (object_motion), for their velocities


def skipped_depth(raw_root: Path | None) -> Between | None:
    """``between(a, b)`` for :func:`refine_relative_poses` and :func:`depth_odometry`: the depth maps of the raw frames
    between two records, read from ``raw_root`` once per pair (the refined and the self-supervised camera both ask);
    None without ``raw_root``."""
    if raw_root is None:
        return None
    read: dict[tuple[str, str, int, int], list[DepthFrame]] = {}

    def between(a: FrameRecord, b: FrameRecord) -> list[DepthFrame]:
        key = (a.sequence, a.camera, a.frame, b.frame)
        if key not in read:
            read[key] = depth_frames(raw_root, a.sequence, a.camera, list(range(a.frame + 1, b.frame)), a.depth.shape)
        return read[key]
    return between


def world_frame_name(params: Phase2EvalSettings) -> str:
    """Key of :data:`WORLD_FRAMES` for the settings."""
    refined = params.camera == "predicted" and params.camera_refine == "icp"
    return "predicted+icp" if refined else params.camera


@torch.no_grad()
def infer_sequence(model: VideoSlotModel, seq: SequenceFrames, params: Phase2EvalSettings,
                   between: Between | None = None) -> SequenceInference:
    """Run the encoder on every frame (carried anchors) and place the slots in the world frame (``params.camera``;
    with ``camera_refine = icp`` the head's relative poses are refined by ICP of the depth maps before chaining,
    through the depth maps of the skipped frames in between, ``between`` (:func:`skipped_depth`), when given)."""
    camera = params.camera
    encoded, fmaps = [], []
    for i in range(0, len(seq.records), BATCH):
        batch = make_batch(seq.records[i : i + BATCH], 1, None, torch.device("cpu"), model_merge(model.slots))
        out, fmap = model.encode(batch)
        encoded.append(out)
        fmaps.append(fmap)
    fmap = torch.cat(fmaps)
    time = torch.tensor(seq.time, dtype=torch.float32)[None]
    r_rel = t_rel = head_rel = None
    if camera == "predicted":
        r_rel, t_rel = model.relative_poses(fmap[None], time)
        r_rel, t_rel = r_rel[0], t_rel[0]
        if params.camera_refine == "icp":
            head_rel = (r_rel, t_rel)
            r, t = refine_relative_poses(seq.records, r_rel.double().numpy(), t_rel.double().numpy(),
                                         params.camera_prior_rotation_deg, params.camera_prior_translation_m,
                                         between=between)
            r_rel, t_rel = torch.tensor(r, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
        r_wc, t_wc = chain(r_rel[None], t_rel[None])
        r_wc, t_wc = r_wc[0], t_wc[0]
    elif camera == "self_supervised":  # depth odometry, no ground truth
        r, t = depth_odometry(seq.records, between)
        r_wc, t_wc = torch.tensor(r, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
        r_rel, t_rel = compose(*invert(r_wc[:-1], t_wc[:-1]), r_wc[1:], t_wc[1:])
    else:
        if seq.r_wc is None:
            raise ValueError(f"{seq.name}: video.camera = gt needs pose files")
        r_wc, t_wc = torch.tensor(seq.r_wc, dtype=torch.float32), torch.tensor(seq.t_wc, dtype=torch.float32)
    merged = SlotParams(*(torch.cat([getattr(p, f) for p in encoded]) for f in
                          ("vector", "scale", "centre", "euler", "weights", "verts")))
    track = world_track(merged, (1, len(seq.records)), r_wc[None], t_wc[None], time)
    faces = model.slots.faces
    slots = [point_owners(r.points, merged.verts[i], faces) for i, r in enumerate(seq.records)]
    tracks, objects = object_tracks(seq, slots, r_wc, t_wc, params)
    return SequenceInference(merged.verts.numpy(), slots, track, r_wc, t_wc, r_rel, t_rel, head_rel, tracks, objects)


@torch.no_grad()
def phase1_point_slots(phase1_model, seq: SequenceFrames, raw_records) -> list[np.ndarray]:
    """Point -> slot of the phase-one model on per-frame (depth-sorted) k-means anchors."""
    out = []
    for i in range(0, len(raw_records), BATCH):
        chunk = raw_records[i : i + BATCH]
        slots = predict(phase1_model, make_batch(chunk, 1, None, torch.device("cpu"), model_merge(phase1_model)))
        out += [point_owners(r.points, slots.verts[j], phase1_model.faces) for j, r in enumerate(chunk)]
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


def object_tracks(seq: SequenceFrames, slots: list[np.ndarray], r_wc: torch.Tensor, t_wc: torch.Tensor,
                  params: Phase2EvalSettings) -> tuple[list[dict[int, int]], SequenceObjects]:
    """Per frame {slot: track id} of the objects the slots ``slots`` (per frame (N_t,)) cover, associated in the
    world frame of ``r_wc``, ``t_wc`` (:func:`pipeline.models.video.object_tracks.track_slots`), and the objects'
    mean points (:class:`pipeline.models.video.object_motion.SequenceObjects`)."""
    return track_objects(world_points([r.points for r in seq.records], r_wc, t_wc), slots, seq.time, params)


def identity_rows(seq: SequenceFrames, slots: list[np.ndarray], tracks: list[dict[int, int]],
                  params: Phase2EvalSettings) -> dict[str, dict]:
    """:func:`identity_metrics` of the slot indices ``slots`` (per frame (N_t,)) as they are (``slot_ids``) and of the
    track ids ``tracks`` (:func:`object_tracks`) of the objects they cover (``track_ids``)."""
    return {"slot_ids": identity_metrics(seq, slots, params.eval_clip_frames),
            "track_ids": identity_metrics(seq, relabel(slots, tracks), params.eval_clip_frames)}


def summarise_identity(rows: list[dict], frames: int) -> dict:
    per_frame = [a for r in rows for a in r["per_frame"]]
    clips = [a for r in rows for a in r["clip"]]
    switches, tracked = sum(r["switches"] for r in rows), sum(r["tracked"] for r in rows)
    return {"fg_ari_per_frame": round(float(np.mean(per_frame)), 4) if per_frame else None,
            "fg_ari_clip": round(float(np.mean(clips)), 4) if clips else None,
            "clips": len(clips), "clip_frames": frames, "identity_switches": switches,
            "tracked_instances": tracked,
            "switches_per_instance": round(switches / tracked, 3) if tracked else None}


def window(track: SlotTrack, start: int, stop: int, match: bool) -> tuple[SlotTrack, torch.Tensor | None]:
    """Frames [start, stop) of a B = 1 track, Hungarian-chained to the window's first frame if ``match``, and the
    permutations (1, T, K) (None without matching; :func:`pipeline.models.video.tracking.matched_track`)."""
    return matched_track(track.frames(slice(start, stop)), match)


def single_guess_baselines(context: SlotTrack, delta_s: torch.Tensor) -> dict[str, Forecast]:
    """The one-guess baselines: copy-last, constant velocity, constant acceleration (parabola)."""
    return {"copy_last": copy_last(context), "constant_velocity": constant_velocity(context, delta_s),
            "constant_acceleration": constant_acceleration(context, delta_s)}


def k_guess_baselines(context: SlotTrack, delta_s: torch.Tensor, guesses: int) -> dict[str, Forecast]:
    """The k-guess baselines (:mod:`pipeline.models.video.baselines`), scored best-of-k like the model."""
    return {f"speed_scalings_best_of_{guesses}": speed_scalings(context, delta_s, guesses),
            f"context_lengths_best_of_{guesses}": context_lengths(context, delta_s, guesses)}


def context_velocity(objects: SequenceObjects, frames: list[int], slots: int,
                     params: Phase2EvalSettings) -> torch.Tensor:
    """(1, K, 3) m/s, the world frame: the gated velocity of each slot's object over the context ``frames``
    (positions in the sequence's usable frames; :mod:`pipeline.models.video.object_motion`), in slot-index order."""
    velocity = gated(*objects.velocities(frames, slots), params.object_min_speed_mps, params.object_max_residual_m)
    return torch.tensor(velocity, dtype=torch.float32)[None]


def eval_points(points: np.ndarray, n: int = EVAL_POINTS) -> np.ndarray:
    """At most ``n`` of a frame's target points (N, 3): an even stride over the stored order (the ``pointclouds``
    stage's uniform sample), the same points for every method (paired comparisons)."""
    return points if len(points) <= n else points[np.linspace(0, len(points) - 1, n).astype(int)]


def stack_guesses(forecasts: list[Forecast]) -> Forecast:
    """Forecasts of one context (same last-frame scale and weights) -> one forecast with all their guesses."""
    first = forecasts[0]
    return Forecast(torch.cat([f.centre for f in forecasts], 1), torch.cat([f.rotation for f in forecasts], 1),
                    first.scale, first.weights, torch.cat([f.logits for f in forecasts], 1))


def single_guess_trained(params: Phase2EvalSettings) -> bool:
    """Whether guess 0 was trained on every clip (``weight_single_guess`` > 0 under best-of-k training)."""
    return params.forecast_training == "best_of_k" and params.weight_single_guess > 0


def best_of_1_rule(params: Phase2EvalSettings) -> str:
    """Which guess is the model's one-guess forecast (``model_best_of_1``)."""
    weighting = ", each clip's error / its gap" if params.single_guess_weighting == "inverse_gap" else ""
    return (f"guess 0, trained on every clip (video.weight_single_guess{weighting})" if single_guess_trained(params)
            else "the guess with the highest confidence logit" + (
                " (= the lowest predicted error, video.confidence_target: error)"
                if params.forecast_training == "best_of_k" and params.confidence_target == "error" else ""))


@torch.no_grad()
def forecast_rows(model: VideoSlotModel, seq: SequenceFrames, inference: SequenceInference,
                  params: Phase2EvalSettings) -> list[dict]:
    """One row per forecast and method: every window of ``eval_context_frames`` consecutive usable frames
    whose target frame (Δ frames after its last frame) is usable; error = one-directional Chamfer (m).

    Columns: sequence, context_last (frame index), delta (frames), delta_s (seconds), method, chamfer_m.
    ``model_best_of_1`` is :func:`best_of_1_rule`'s guess, ``model_most_confident`` the guess with the highest
    confidence logit, ``model_best_of_k`` the best guess.
    """
    c = params.eval_context_frames
    k = model.config.guesses
    rows: list[dict] = []
    frames = np.array([r.frame for r in seq.records])
    faces = model.slots.faces
    for last in range(c - 1, len(seq.records)):
        if np.any(np.diff(frames[last - c + 1 : last + 1]) != 1):
            continue  # context of consecutive frames only
        first = last - c + 1
        # the window in its first camera's frame, as the forecaster's training clips (SlotTrack.rebased)
        r0, t0 = inference.r_wc[first][None], inference.t_wc[first][None]
        first_from_world = invert(r0, t0)
        context, perm = window(inference.track, first, last + 1, params.match_slots)
        context = context.rebased(r0, t0)
        objects_velocity = frame_order(context_velocity(inference.objects, list(range(first, last + 1)),
                                                        context.centre.shape[2], params), perm, c - 1) @ r0[0]
        velocity = objects_velocity if params.velocity_from == "objects" else None
        for delta in DELTAS:
            hits = np.nonzero(frames == frames[last] + delta)[0]
            if len(hits) == 0:
                continue
            target = int(hits[0])
            points = torch.tensor(eval_points(seq.records[target].points))[None]
            mask = torch.ones(points.shape[:2], dtype=torch.bool)
            r_wc, t_wc = compose(*first_from_world, inference.r_wc[target][None], inference.t_wc[target][None])
            delta_s = torch.tensor([seq.time[target] - seq.time[last]], dtype=torch.float32)
            forecast = model.forecaster(context, delta_s, velocity)
            methods = {"model": forecast, **single_guess_baselines(context, delta_s),
                       # reference, not one of the baselines: what the object tracks give without learning
                       "objects_constant_velocity": constant_velocity(context, delta_s, objects_velocity),
                       **k_guess_baselines(context, delta_s, k)}
            every = stack_guesses(list(methods.values()))  # one Chamfer call for all guesses of all methods
            # 8 candidate faces per point, not certified exact: a forecast metres off leaves most points
            # uncertified and the exact mode then searches every face (7x slower); on such scenes the mean
            # distance is within 1e-5 of brute force (tests/geometry/test_geom_mesh.py).
            per_guess = dict(zip(methods, forecast_chamfer(model, every, r_wc, t_wc, points, mask, exact=False)[0]
                                 .split([f.centre.shape[1] for f in methods.values()]), strict=True))
            model_errors = per_guess.pop("model")
            most_confident = model_errors[forecast.logits[0].argmax()]
            errors = {"model_best_of_1": model_errors[0] if single_guess_trained(params) else most_confident,
                      "model_most_confident": most_confident, "model_best_of_k": model_errors.min(),
                      **{name: e.min() for name, e in per_guess.items()}}
            sq, _, _ = point_mesh_sq_dist(points, torch.from_numpy(inference.verts[target])[None], faces, exact=True)
            errors["target_frame_slots"] = torch.sqrt(sq).mean()
            rows += [{"sequence": seq.name, "context_last": int(frames[last]), "delta": delta,
                      "delta_s": round(float(delta_s), 4), "method": name, "chamfer_m": float(value)}
                     for name, value in errors.items()]
    return rows


def summarise_forecasts(rows: list[dict], guesses: int) -> dict[str, dict]:
    """Per Δ: mean error of every method, the forecast count, and best-of-1 / best-of-k against the best
    single-guess / k-guess baseline (1 - model / baseline: positive = the model is better)."""
    table = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    out = {}
    for delta in DELTAS:
        means = table[table.delta == delta].groupby("method")["chamfer_m"].mean()
        if means.empty:
            out[f"delta_{delta}"] = {"forecasts": 0}
            continue
        entry = {name: round(float(v), 4) for name, v in means.items()}
        entry["forecasts"] = int((table[(table.delta == delta) & (table.method == "model_best_of_1")]).shape[0])
        single = min(means[n] for n in SINGLE_GUESS)
        multi = min(means[n] for n in k_guess_names(guesses))
        entry["best_of_1_vs_best_single_guess_baseline"] = round(float(1 - means["model_best_of_1"] / single), 4)
        entry["best_of_k_vs_best_k_guess_baseline"] = round(float(1 - means["model_best_of_k"] / multi), 4)
        out[f"delta_{delta}"] = entry
    return out


def k_guess_names(guesses: int) -> tuple[str, str]:
    """Method names of the k-guess baselines in the forecast table."""
    return (f"speed_scalings_best_of_{guesses}", f"context_lengths_best_of_{guesses}")


def pose_drift(r_wc: torch.Tensor, t_wc: torch.Tensor, r_gt: torch.Tensor, t_gt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Drift of chained ``world_from_camera`` poses (T, 3, 3), (T, 3) from the ground truth (same world:
    the sequence's first frame): per frame the camera-position error (m) and the rotation error (degrees)."""
    return ((t_wc - t_gt).norm(dim=-1).numpy().astype(np.float64),
            np.degrees(geodesic_angle(r_wc, r_gt).numpy().astype(np.float64)))


def camera_rows(inference: SequenceInference, seq: SequenceFrames, head_only: bool = False) -> list[dict]:
    """Per frame of a sequence (predicted camera, GT poses present): relative-pose error against the previous
    usable frame (degrees, metres; NaN at the first frame) and the chained pose's drift (m, degrees); with
    ``head_only``, of the camera head's poses before the ICP refinement (none when there was no refinement)."""
    rel = inference.head_rel if head_only else (inference.r_rel, inference.t_rel)
    if rel is None or rel[0] is None:
        return []
    return relative_pose_rows(seq, *rel)


def odometry_camera_rows(seq: SequenceFrames, between: Between | None) -> list[dict]:
    """:func:`relative_pose_rows` of the self-supervised camera (depth odometry: no head, no ground truth) on
    ``seq``, reported beside the predicted one (none without ground-truth poses to compare with)."""
    if seq.r_wc is None:
        return []
    r_wc, t_wc = (torch.tensor(a, dtype=torch.float32)
                  for a in depth_odometry(seq.records, between))
    return relative_pose_rows(seq, *compose(*invert(r_wc[:-1], t_wc[:-1]), r_wc[1:], t_wc[1:]))


def relative_pose_rows(seq: SequenceFrames, r_rel: torch.Tensor, t_rel: torch.Tensor) -> list[dict]:
    """Rows of :func:`camera_rows` for the relative poses ``prev_from_cur`` (T-1, 3, 3), (T-1, 3) of ``seq``'s
    usable frames (none without ground-truth poses)."""
    if seq.r_wc is None:
        return []
    r_wc, t_wc = chain(r_rel[None], t_rel[None])
    r_gt, t_gt = torch.tensor(seq.r_wc, dtype=torch.float32), torch.tensor(seq.t_wc, dtype=torch.float32)
    r_true = r_gt[:-1].transpose(-1, -2) @ r_gt[1:]
    t_true = (r_gt[:-1].transpose(-1, -2) @ (t_gt[1:] - t_gt[:-1]).unsqueeze(-1)).squeeze(-1)
    angles = [math.nan] + torch.rad2deg(geodesic_angle(r_rel, r_true)).tolist()
    shifts = [math.nan] + (t_rel - t_true).norm(dim=-1).tolist()
    drift_m, drift_deg = pose_drift(r_wc[0], t_wc[0], r_gt, t_gt)
    return [{"sequence": seq.name, "frame": r.frame, "relative_rotation_deg": a, "relative_translation_m": t,
             "drift_m": float(dm), "drift_deg": float(dd)}
            for r, a, t, dm, dd in zip(seq.records, angles, shifts, drift_m, drift_deg, strict=True)]


def camera_metrics(rows: list[dict], horizon: int = DRIFT_HORIZON) -> dict | None:
    """Mean relative-pose error over frame pairs, mean end-of-sequence drift, and the mean drift at the last
    usable frame within ``horizon`` frames of each sequence's first usable frame (a fixed-length horizon)."""
    if not rows:
        return None
    table = pd.DataFrame(rows)
    ends = table.groupby("sequence").tail(1)
    first = table.groupby("sequence")["frame"].transform("min")
    at_horizon = table[table.frame - first < horizon].groupby("sequence").tail(1)
    return {"relative_rotation_deg": round(float(table.relative_rotation_deg.mean()), 4),
            "relative_translation_m": round(float(table.relative_translation_m.mean()), 4),
            "end_drift_m": round(float(ends.drift_m.mean()), 3), "end_drift_rotation_deg": round(float(ends.drift_deg.mean()), 3),
            f"drift_{horizon}_frames_m": round(float(at_horizon.drift_m.mean()), 3),
            f"drift_{horizon}_frames_deg": round(float(at_horizon.drift_deg.mean()), 3),
            "pairs": int(table.relative_rotation_deg.notna().sum()), "sequences": int(len(ends))}


def motion_residual_m(inference: SequenceInference, match: bool) -> float | None:
    """Mean norm of the third difference (m, true time stamps) of the world slot tracks."""
    track, _ = window(inference.track, 0, inference.track.centre.shape[1], match)
    if track.centre.shape[1] < 4:
        return None
    x = track.centre[0].transpose(0, 1)  # (K, T, 3)
    return float(third_difference_m(x, track.time[0].expand(x.shape[0], -1)).norm(dim=-1).mean())


def evaluate_phase2(model: VideoSlotModel, phase1_model, sequences: list[SequenceFrames],
                    per_frame_records: list[list], params: Phase2EvalSettings,
                    progress: bool = True, raw_root: Path | None = None) -> tuple[dict, list[SequenceInference], list[dict], list[dict]]:
    """All phase-two metrics over held-out ``sequences`` (``per_frame_records``: the same frames with
    phase-one per-frame anchors, for the phase-one reference); returns (metrics, inferences, forecast rows
    (:func:`forecast_rows`), camera rows (:func:`camera_rows`)); ``raw_root``: the raw frames, whose skipped depth
    maps (:func:`skipped_depth`) the refined and the self-supervised camera read."""
    between = skipped_depth(raw_root)
    inferences, ours, reference, forecasts, cameras, head_cameras, odometry = [], [], [], [], [], [], []
    residuals = []
    for seq, raw_records in progress_bar(list(zip(sequences, per_frame_records, strict=True)), desc="evaluate phase 2",
                                 unit="seq", disable=not progress):
        inference = infer_sequence(model, seq, params, between)
        inferences.append(inference)
        ours.append(identity_rows(seq, inference.point_slot, inference.tracks, params))
        reference_slots = phase1_point_slots(phase1_model, seq, raw_records)
        reference_tracks, _ = object_tracks(seq, reference_slots, inference.r_wc, inference.t_wc, params)
        reference.append(identity_rows(seq, reference_slots, reference_tracks, params))
        forecasts += forecast_rows(model, seq, inference, params)
        cameras += camera_rows(inference, seq)
        head_cameras += camera_rows(inference, seq, head_only=True)
        if params.camera == "predicted":
            odometry += odometry_camera_rows(seq, between)
        residual = motion_residual_m(inference, params.match_slots)
        if residual is not None:
            residuals.append(residual)
    metrics = {
        "identity": {name: summarise_identity([r[ids] for r in rows], params.eval_clip_frames)
                     for name, rows, ids in (("phase2_carried", ours, "slot_ids"), ("phase2_tracked", ours, "track_ids"),
                                             ("phase1_per_frame_kmeans", reference, "slot_ids"),
                                             ("phase1_per_frame_kmeans_tracked", reference, "track_ids"))},
        "forecast_chamfer_m": summarise_forecasts(forecasts, model.config.guesses),
        "world_frame": WORLD_FRAMES[world_frame_name(params)],
        "guesses": model.config.guesses,
        "fixed_guesses": list(model.config.fixed_guesses),  # α of the last guesses, which learn nothing
        "fixed_guess_velocity": list(model.config.fixed_guess_velocity),  # what each α scales ([]: velocity_from)
        "best_of_1": best_of_1_rule(params),
        "context_frames": params.eval_context_frames,
        "motion_residual_m": round(float(np.mean(residuals)), 4) if residuals else None,
        "sequences": [s.name for s in sequences],
        "frames": sum(len(s.records) for s in sequences),
    }
    camera = camera_metrics(cameras)
    if camera is not None:
        metrics["camera_error"] = camera
    for key, rows in (("camera_error_head_only", head_cameras),  # camera_refine = icp: the head alone
                      ("camera_error_self_supervised", odometry)):  # depth odometry beside the head
        summary = camera_metrics(rows)
        if summary is not None:
            metrics[key] = summary
    return metrics, inferences, forecasts, cameras
