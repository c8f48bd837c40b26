"""Phase-two training: slots with identity over time, camera vector, motion priors, forecasting at t + Δ.

Data: each sequence's frames (the ``frames`` stage's cache) come with carried anchors
(:func:`pipeline.data.carried.track_anchors`), so slot k is one object along the whole
sequence. A training sample is a clip of ``context_frames`` frames whose gaps follow a random rate
schedule (constant fast or slow, increasing, decreasing, or random gaps of 1 ... ``max_gap`` frames)
plus one target frame Δ = 1 ... ``max_delta`` frames after the last context frame (before the first
one, with probability ``reverse_fraction``). Times are the frames' true time stamps in seconds
(frame index / 5 Hz), so the model sees real, uneven time gaps and never a step index.

Loss of a clip batch (each weight a param):

- ``weight_depth`` x the phase-one loss (Chamfer, free space, reverse, compact, scale, prototype
  smoothness/usage with the phase-one checkpoint's settings) on every frame;
- after Hungarian matching of consecutive frames (chained to the first frame's order), on the
  time-sorted clip in the world frame: ``weight_prototype_change`` x the change of prototype
  weights, ``weight_motion`` x the third difference of centres (constant acceleration, true time
  stamps, metres), ``weight_scale_smooth`` x the log-scale change, ``weight_rotation_smooth`` x the
  geodesic angle between consecutive rotations (robust magnitudes: :mod:`pipeline.models.video.priors`);
- ``weight_camera`` x the camera head's relative-pose error against ground truth (geodesic angle in
  radians + translation error in metres), when the head is on (``camera = predicted``); with
  ``camera = gt``, or ``predicted`` with ``camera_refine = icp`` (see :func:`clip_poses`), the world frame comes
  from the ground-truth poses instead of the chained head;
- ``weight_forecast`` x the best-of-G one-directional Chamfer (target points -> nearest surface of
  the guessed meshes, metres, smooth L1 as phase one) of the forecast from the (detached) context
  slots (with ``velocity_from = objects`` the guesses extrapolate each slot's object's gated velocity over the
  clip's context frames: the objects are tracked once per sequence before training, in the frame of its pose
  files, as the evaluation tracks them; :mod:`pipeline.models.video.object_motion`), and ``weight_confidence``
  x the confidence head's loss (``confidence_target``: cross-entropy against the winning guess, or the squared
  error of the logits against minus each guess's forecast Chamfer: :func:`confidence_loss`), and
  ``weight_single_guess`` x guess 0's Chamfer on every clip (weighted by ``single_guess_weighting``:
  :func:`single_guess_loss`; the one-guess forecast: best-of-1 = guess 0; with 0, best-of-1 = the most confident
  guess). ``fixed_guesses`` (default [0, 1]) makes the last guesses copy-last and the whole velocity, which learn
  nothing, and the default ``weight_forecast`` 0 then leaves guess 0 trained on every clip alone
  (``wta_trains_guess0: false``: the best-of-G term trains only guesses 1 ...; :func:`with_guess0_detached`); with
  ``forecast_training = grpo``, after
  ``grpo_warmup`` such steps, ``weight_forecast`` x GRPO's clipped policy-gradient loss over a group of
  ``grpo_group`` sampled guesses, with a KL term to the forecaster as it was at the end of the warm-up
  (:mod:`pipeline.train.grpo`; that frozen reference is part of the resume state).

Resumable (``checkpoints/phase2/state.pt``, :mod:`pipeline.train.loop`; its identity is the params and
the phase-one model's hash), deterministic from ``seed`` (clip draws from ``(seed, step, rank)``), device auto, and DDP-ready:
under ``torchrun`` each process takes its share of clips and gradients are averaged with
:meth:`pipeline.train.loop.TrainLoop.sync_gradients` before every step.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.geometry.rotations import geodesic_angle
from pipeline.io.synthia import FRAME_RATE_HZ
from pipeline.models.optim import Adam
from pipeline.models.slots import SlotModelConfig
from pipeline.models.slots.batch import Merge, make_batch, model_merge
from pipeline.models.slots.model import SlotParams
from pipeline.models.slots.losses import LossWeights, loss_weights, total_loss
from pipeline.models.video import VideoModelConfig, VideoSlotModel
from pipeline.models.video.forecaster import Forecaster, SlotTrack, best_of_k
from pipeline.models.video.model import forecast_chamfer, world_track
from pipeline.models.video.object_motion import SequenceObjects, gated, point_owners, track_objects, world_points
from pipeline.models.video.poses import chain, compose, invert
from pipeline.models.video.priors import motion_loss, prototype_change, rotation_smoothness, scale_smoothness
from pipeline.models.video.sequences import SequenceFrames
from pipeline.models.video.tracking import frame_order, matched_track
from pipeline.params.train import Phase1Params
from pipeline.params.video import Phase2Params
from pipeline.train import common
from pipeline.train.grpo import grpo_loss
from pipeline.train.loop import CurveSink, TrainLoop, WarmupCosine

SCHEDULES = ("constant", "increasing", "decreasing", "random")


def video_model_config(params: Phase2Params, slot_config: SlotModelConfig) -> VideoModelConfig:
    """The camera head's and forecaster's sizes from the ``video`` section and the phase-one model."""
    return VideoModelConfig(camera_head=params.camera == "predicted", feature_channels=slot_config.channels[-1],
                            hidden=params.hidden, time_features=params.time_features, guesses=params.guesses,
                            prototypes=slot_config.prototypes, velocity_frames=params.velocity_frames,
                            ego_motion=params.ego_motion, step_per_second=params.step_per_second,
                            max_step_m=params.max_step_m, fixed_guesses=tuple(params.fixed_guesses),
                            guess0_start_alpha=params.guess0_start_alpha,
                            fixed_slot_fallback=params.fixed_slot_fallback,
                            fixed_slot_fallback_mps=params.fixed_slot_fallback_mps,
                            fixed_slot_fallback_residual_m=params.fixed_slot_fallback_residual_m,
                            fixed_guess_velocity=tuple(params.fixed_guess_velocity),
                            confidence_detached=params.confidence_detached)


def context_gaps(rng: np.random.Generator, n: int, max_gap: int) -> list[int]:
    """``n`` gaps (frames) under a random rate schedule: constant, increasing, decreasing or random."""
    schedule = SCHEDULES[int(rng.integers(len(SCHEDULES)))]
    if schedule == "constant":
        return [int(rng.integers(1, max_gap + 1))] * n
    if schedule == "random":
        return [int(g) for g in rng.integers(1, max_gap + 1, n)]
    ramp = np.round(np.linspace(1, max_gap, n)).astype(int).tolist() if n > 1 else [1]
    return ramp if schedule == "increasing" else ramp[::-1]


def sample_clip(rng: np.random.Generator, length: int, params: Phase2Params) -> list[int] | None:
    """Frame positions [context..., target] inside a sequence of ``length`` usable frames, or None."""
    gaps = context_gaps(rng, params.context_frames - 1, params.max_gap)
    reverse = rng.random() < params.reverse_fraction
    delta = int(rng.integers(1, params.max_delta + 1))
    span = sum(gaps) + delta
    if span >= length:
        delta = max(1, length - 1 - sum(gaps))
        span = sum(gaps) + delta
        if span >= length:
            return None
    start = int(rng.integers(0, length - span))
    if reverse:
        target, first = start, start + delta
    else:
        first = start
        target = first + sum(gaps) + delta
    context = [first + int(s) for s in np.concatenate([[0], np.cumsum(gaps)])]
    return context + [target]


@dataclass
class EncodedSequence:
    """A sequence's frames encoded once by the frozen slot model (``finetune_slots = false``): slots of
    every usable frame (leading dim T, camera frame), the encoder's last feature maps (T, C, h, w) and, with
    ``velocity_from = objects``, the objects its slots cover (tracked in the frame of the sequence's pose files)."""

    slots: SlotParams
    fmap: torch.Tensor
    objects: SequenceObjects | None = None


@torch.no_grad()
def encode_sequences(model: VideoSlotModel, sequences: list[SequenceFrames], device: torch.device,
                     batch: int = 8, objects: Phase2Params | None = None) -> list[EncodedSequence]:
    """Slots and feature maps of every frame (eval mode: the encoder's running batch-norm statistics, as the
    evaluation sees them; all target points of each frame), and with ``objects`` (the ``video`` params, whose
    ``track_*`` settings the evaluation's tracks use too) the objects of every sequence."""
    was_training = model.slots.training
    model.slots.eval()
    out = []
    for seq in sequences:
        parts = [model.encode(make_batch(seq.records[i : i + batch], 1, None, device, model_merge(model.slots)))
                 for i in range(0, len(seq.records), batch)]
        slots = SlotParams(*(torch.cat([getattr(p, f.name) for p, _ in parts])
                             for f in dataclasses.fields(SlotParams)))
        out.append(EncodedSequence(slots, torch.cat([f for _, f in parts]),
                                   None if objects is None else sequence_objects(model, seq, slots, objects)))
    model.slots.train(was_training)
    return out


def sequence_objects(model: VideoSlotModel, seq: SequenceFrames, slots: SlotParams,
                     settings: Phase2Params) -> SequenceObjects:
    """The objects of a sequence's encoded ``slots`` (every frame), tracked in the world frame of its pose files."""
    if seq.r_wc is None:
        raise ValueError(f"{seq.name}: video.velocity_from = objects needs pose files (the objects' world frame)")
    faces = model.slots.faces.cpu()
    owners = [point_owners(r.points, slots.verts[i].detach().cpu(), faces) for i, r in enumerate(seq.records)]
    _, objects = track_objects(world_points([r.points for r in seq.records], seq.r_wc, seq.t_wc), owners, seq.time,
                               settings)
    return objects


@dataclass
class ClipBatch:
    """B clips of T = C + 1 frames (context in time order, then the target), flattened to B*T frames."""

    frames: dict[str, torch.Tensor]  # make_batch tensors, leading dim B*T (clip-major)
    time: torch.Tensor  # (B, T) seconds
    r_gt: torch.Tensor | None  # (B, T, 3, 3) world_from_camera, world = the clip's first frame
    t_gt: torch.Tensor | None  # (B, T, 3)
    slots: SlotParams | None = None  # frozen slot model: the frames' cached slots (leading dim B*T) ...
    fmap: torch.Tensor | None = None  # ... and feature maps (B*T, C, h, w); None: encode in the loss
    velocity: torch.Tensor | None = None  # (B, K, 3) m/s, clip world frame: each slot's object's (velocity_from)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.time.shape)


def clip_batch(sequences: list[SequenceFrames], picks: list[tuple[int, list[int]]], points_per_frame: int,
               rng: np.random.Generator | None, device: torch.device, merge: Merge,
               encoded: list[EncodedSequence] | None = None, gate: tuple[float, float] | None = None) -> ClipBatch:
    """Stack clips ``(sequence index, frame positions)`` into a :class:`ClipBatch` (with the frames' cached
    slots and feature maps when ``encoded``, the frozen slot model's, and its objects' gated velocities over the
    context frames when it has objects; ``gate`` = (``object_min_speed_mps``, ``object_max_residual_m``));
    ``merge``: the slot model's :func:`model_merge`."""
    records = [sequences[s].records[i] for s, idx in picks for i in idx]
    frames = make_batch(records, points_per_frame, rng, device, merge)
    slots = fmap = None
    if encoded is not None:
        slots = SlotParams(*(torch.cat([getattr(encoded[s].slots, f.name)[idx] for s, idx in picks])
                             for f in dataclasses.fields(SlotParams)))
        fmap = torch.cat([encoded[s].fmap[idx] for s, idx in picks])
    time = torch.tensor(np.array([sequences[s].time[idx] for s, idx in picks]), dtype=torch.float32, device=device)
    r_gt = t_gt = None
    if all(sequences[s].r_wc is not None for s, _ in picks):
        r, t = [], []
        for s, idx in picks:
            seq = sequences[s]
            r0, t0 = seq.r_wc[idx[0]], seq.t_wc[idx[0]]
            r.append(np.einsum("ji,tjk->tik", r0, seq.r_wc[idx]))
            t.append((seq.t_wc[idx] - t0) @ r0)
        r_gt = torch.tensor(np.array(r), dtype=torch.float32, device=device)
        t_gt = torch.tensor(np.array(t), dtype=torch.float32, device=device)
    velocity = None
    if encoded is not None and encoded[picks[0][0]].objects is not None:
        velocity = torch.tensor(np.array([clip_velocity(sequences[s], encoded[s].objects, idx, slots.centre.shape[1],
                                                        gate) for s, idx in picks]), dtype=torch.float32, device=device)
    return ClipBatch(frames, time, r_gt, t_gt, slots, fmap, velocity)


def clip_velocity(seq: SequenceFrames, objects: SequenceObjects, idx: list[int], slots: int,
                  gate: tuple[float, float] | None) -> np.ndarray:
    """(K, 3) m/s: the gated velocity of each slot's object over a clip's context frames ``idx[:-1]`` (the last is
    the target), turned from the pose files' world frame into the clip's (its first frame's camera)."""
    if gate is None:
        raise ValueError("clip_batch: sequences with objects need the velocity gate")
    velocity = gated(*objects.velocities(idx[:-1], slots), *gate)
    return velocity @ seq.r_wc[idx[0]]  # row vectors: r0^T v


def clip_poses(model: VideoSlotModel, clips: ClipBatch, fmap: torch.Tensor, camera: str, refine: str = "none"):
    """world_from_camera (B, T, 3, 3), (B, T, 3) of every clip frame (world = first clip frame), and
    the predicted relative poses (or None without the camera head: ``camera = gt``, or ``self_supervised``, whose
    sequences carry depth-odometry poses in place of the ground truth, :func:`pipeline.models.video.sequences.with_odometry`).

    With the head and ``refine = icp`` (``video.camera_refine``) the world frame is the ground truth's when the clips
    have it: evaluation places the slots with the head's poses refined by ICP, which stay within decimetres of the
    ground truth over 40 frames, while the head's own chained poses drift metres; training the forecaster in them
    would teach it a world that moves. The head still learns from its relative-pose loss."""
    b, t = clips.shape
    if camera != "predicted":
        if clips.r_gt is None:
            raise ValueError("video.camera = gt needs ground-truth pose files (CameraParams/<camera>/*.txt)")
        return clips.r_gt, clips.t_gt, None
    fmap = fmap.view((b, t) + fmap.shape[1:])
    r_rel, t_rel = model.relative_poses(fmap, clips.time)
    if refine == "icp" and clips.r_gt is not None:
        return clips.r_gt, clips.t_gt, (r_rel, t_rel)
    r_wc, t_wc = chain(r_rel, t_rel)
    return r_wc, t_wc, (r_rel, t_rel)


def relative_pose_error(r_rel: torch.Tensor, t_rel: torch.Tensor, r_gt: torch.Tensor, t_gt: torch.Tensor):
    """Mean geodesic angle (rad) and translation error (m) of predicted prev_from_cur (B, T-1, ...)
    against the ground-truth world_from_camera poses (B, T, ...)."""
    r_prev_inv, t_prev_inv = invert(r_gt[:, :-1], t_gt[:, :-1])
    r_true, t_true = compose(r_prev_inv, t_prev_inv, r_gt[:, 1:], t_gt[:, 1:])
    return geodesic_angle(r_rel, r_true).mean(), (t_rel - t_true).norm(dim=-1).mean()


def temporal_priors(track: SlotTrack, time: torch.Tensor, params: Phase2Params) -> tuple[torch.Tensor, dict]:
    """The weighted temporal priors of the time-sorted world track (module docstring) and their values."""
    b, t = time.shape
    order = torch.argsort(time, dim=1)
    track = SlotTrack(*(torch.gather(x, 1, order.view(b, t, *([1] * (x.dim() - 2))).expand_as(x))
                        for x in (track.centre, track.rotation, track.scale, track.weights)),
                      torch.gather(time, 1, order))
    proto = prototype_change(track.weights)
    motion = motion_loss(track.centre, track.time) if t >= 4 else torch.zeros((), device=time.device)
    scale = scale_smoothness(track.scale)
    rotation = rotation_smoothness(track.rotation)
    loss = (params.weight_prototype_change * proto + params.weight_motion * motion
            + params.weight_scale_smooth * scale + params.weight_rotation_smooth * rotation)
    return loss, {"prototype_change": proto.item(), "motion_m": motion.item(), "scale_smooth": scale.item(),
                  "rotation_smooth_rad": rotation.item()}


def clip_loss(model: VideoSlotModel, clips: ClipBatch, params: Phase2Params, weights: LossWeights,
              samples: int, generator: torch.Generator | None,
              reference: Forecaster | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted phase-two loss of one clip batch (see module docstring) and its terms for logging; with a
    ``reference`` forecaster the forecast term is GRPO's (:func:`pipeline.train.grpo.grpo_loss`), else best-of-k."""
    b, t = clips.shape
    frozen = clips.slots is not None  # cached slots of the frozen slot model: no depth loss, priors only logged
    slots, fmap = (clips.slots, clips.fmap) if frozen else model.encode(clips.frames)
    r_wc, t_wc, relative = clip_poses(model, clips, fmap, params.camera, params.camera_refine)
    track, perm = matched_track(world_track(slots, (b, t), r_wc, t_wc, clips.time), params.match_slots)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        loss, terms = temporal_priors(track, clips.time, params)
    if frozen:
        loss = torch.zeros((), device=clips.time.device)
    else:
        depth, phase1 = total_loss(model.slots, slots, clips.frames, weights, samples, generator)
        loss = loss + params.weight_depth * depth
        terms.update({"depth_loss": phase1["loss"], "chamfer_m": phase1["chamfer_m"],
                      "free_space_m": phase1["free_space_m"]})
    if relative is not None and clips.r_gt is not None:
        angle, shift = relative_pose_error(*relative, clips.r_gt, clips.t_gt)
        loss = loss + params.weight_camera * (angle + shift)
        terms.update({"camera_rot_deg": math.degrees(angle.item()), "camera_trans_m": shift.item()})
    context = track.frames(slice(0, t - 1)).detach()
    velocity = None if clips.velocity is None else frame_order(clips.velocity, perm, t - 2)  # last context frame
    delta = (clips.time[:, -1] - clips.time[:, -2]).detach()
    target_rows = torch.arange(b, device=clips.time.device) * t + (t - 1)
    r_target, t_target = r_wc[:, -1].detach(), t_wc[:, -1].detach()
    points, mask = clips.frames["points"][target_rows], clips.frames["mask"][target_rows]
    if reference is not None:  # GRPO over a group of sampled guesses (pipeline/train/grpo.py)
        score = lambda f: forecast_chamfer(model, f, r_target, t_target, points, mask)  # noqa: E731
        grpo, grpo_terms = grpo_loss(model.forecaster, reference, context, delta, score, params.grpo_group,
                                     params.grpo_clip, params.grpo_kl_weight, params.grpo_tolerance_m, generator,
                                     velocity)
        loss = loss + params.weight_forecast * grpo
        terms.update({**grpo_terms, "forecast_best_m": grpo_terms["grpo_best_sample_m"], "loss": loss.item()})
        return loss, terms
    forecast = model.forecaster(context, delta, velocity)
    per_guess = forecast_chamfer(model, forecast, r_target, t_target, points, mask)
    best, winner = best_of_k(per_guess if params.wta_trains_guess0 else with_guess0_detached(per_guess))
    confidence = confidence_loss(forecast.logits, per_guess.detach(), winner, params.confidence_target)
    loss = (loss + params.weight_forecast * best.mean() + params.weight_confidence * confidence
            + params.weight_single_guess * single_guess_loss(per_guess[:, 0], delta, params))
    terms.update({"forecast_best_m": best.mean().item(), "forecast_first_m": per_guess[:, 0].mean().item(),
                  "confidence_ce": confidence.item(), "loss": loss.item()})
    return loss, terms


def with_guess0_detached(per_guess: torch.Tensor) -> torch.Tensor:
    """Errors (B, G) with guess 0's column cut from the graph: it still wins where it is best, but the winner-takes-all
    term then trains no guess (``video.wta_trains_guess0: false``)."""
    return torch.cat([per_guess[:, :1].detach(), per_guess[:, 1:]], dim=1)


def single_guess_loss(errors: torch.Tensor, delta_s: torch.Tensor, params: Phase2Params) -> torch.Tensor:
    """Guess 0's loss over a batch from its forecast errors (B,) metres at target gaps ``delta_s`` (B,) seconds
    (signed).

    ``params.single_guess_weighting``: ``uniform``, the mean error; ``inverse_gap``, the mean of each error x (mean gap
    of the training targets, (1 + ``max_delta``) / 2 frames, / |Δ|): a forecast's error grows with its gap, so with
    the plain mean the long gaps set what guess 0 learns at every Δ; weighted, a 0.2 s clip counts as much as a 2 s
    one (|Δ| floored at 0.1 s)."""
    if params.single_guess_weighting == "uniform":
        return errors.mean()
    mean_gap_s = (1 + params.max_delta) / 2 / FRAME_RATE_HZ
    return (errors * (mean_gap_s / delta_s.abs().clamp_min(0.1))).mean()


def confidence_loss(logits: torch.Tensor, errors: torch.Tensor, winner: torch.Tensor, target: str) -> torch.Tensor:
    """The confidence head's loss for logits (B, G), the guesses' forecast errors (B, G) metres (detached) and the
    winning guess (B,): ``winner``: cross-entropy against the winner; ``error``: mean squared error of the logits
    against minus the errors, so a logit estimates minus the guess's expected error given the context and Δ and the
    most confident guess is the one expected closest (a guess that wins often but misses far when it loses is not)."""
    if target == "error":
        return torch.nn.functional.mse_loss(logits, -errors)
    return torch.nn.functional.cross_entropy(logits, winner)


def velocity_gate(params: Phase2Params) -> tuple[float, float]:
    """(``object_min_speed_mps``, ``object_max_residual_m``): :func:`pipeline.models.video.object_motion.gated`."""
    return params.object_min_speed_mps, params.object_max_residual_m


def draw_clips(sequences: list[SequenceFrames], n: int, params: Phase2Params,
               rng: np.random.Generator) -> list[tuple[int, list[int]]]:
    """``n`` clips from sequences chosen in proportion to their length (redraws clips that do not fit)."""
    lengths = np.array([len(s.records) for s in sequences], dtype=float)
    picks = []
    for _ in range(100 * n):
        if len(picks) == n:
            break
        s = int(rng.choice(len(sequences), p=lengths / lengths.sum()))
        clip = sample_clip(rng, len(sequences[s].records), params)
        if clip is not None:
            picks.append((s, clip))
    if len(picks) < n:
        raise ValueError(f"sequences too short for clips of {params.context_frames} context frames + a target "
                         f"(max_gap={params.max_gap}); use fewer video.context_frames")
    return picks


def phase1_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def build_model(phase1_path: Path, params: Phase2Params, device: torch.device) -> tuple[VideoSlotModel, Phase1Params]:
    """Video model with its slot model initialised from the phase-one checkpoint (announced if absent)."""
    payload = common.load_checkpoint(phase1_path)
    config = dict(payload["config"])
    config["channels"] = tuple(config["channels"])
    slot_config = SlotModelConfig(**config)
    p1 = Phase1Params.model_validate(payload["params"])
    model = VideoSlotModel(video_model_config(params, slot_config), slot_config, seed=params.seed)
    model.slots.load_state_dict(payload["state_dict"])
    return model.to(device), p1


def frozen_forecaster(model: VideoSlotModel, state: dict | None) -> Forecaster | None:
    """A frozen copy of the model's forecaster with weights ``state`` (GRPO's reference), or None."""
    if state is None:
        return None
    reference = copy.deepcopy(model.forecaster)
    reference.load_state_dict(state)
    reference.requires_grad_(False)
    return reference.eval()


def clip_groups(model: VideoSlotModel, mode: str) -> list[list[torch.nn.Parameter]]:
    """The parameter groups whose gradient norms are clipped each on its own (``video.grad_clip_groups``).

    ``global``: one group, every parameter (one norm: a large gradient anywhere shrinks every step).
    ``per_module``: the slot model, the camera head, the forecaster's confidence layer and the rest of the
    forecaster, so that a loss term that reaches only one of them no longer scales the others' steps.
    """
    if mode == "global":
        return [list(model.parameters())]
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        key = "forecaster.confidence" if name.startswith("forecaster.confidence.") else name.split(".", 1)[0]
        groups.setdefault(key, []).append(parameter)
    return list(groups.values())


def build_optimizer(model: VideoSlotModel, params: Phase2Params) -> Adam:
    """Adam over the camera head and forecaster (``head_lr``) and, with ``finetune_slots``, the slot model (``lr``)."""
    head_params = [p for n, p in model.named_parameters() if not n.startswith("slots.")]
    groups = [{"params": head_params, "lr": params.head_lr}]
    if params.finetune_slots:
        groups.insert(0, {"params": list(model.slots.parameters()), "lr": params.lr})
    return Adam(groups)


@torch.no_grad()
def validation_terms(model: VideoSlotModel, sequences: list[SequenceFrames], params: Phase2Params,
                     weights: LossWeights, samples: int, device: torch.device, clips: int = 8,
                     encoded: list[EncodedSequence] | None = None) -> dict[str, float]:
    """Mean loss terms on a fixed set of validation clips (eval mode; ``encoded``: the frozen slot model's cache)."""
    rng = np.random.default_rng(12345)
    picks = draw_clips(sequences, clips, params, rng)
    model.eval()
    totals: dict[str, float] = {}
    for i in range(0, len(picks), params.batch_size):
        chunk = picks[i : i + params.batch_size]
        batch = clip_batch(sequences, chunk, params.points_per_frame, rng, device, model_merge(model.slots), encoded,
                           velocity_gate(params))
        _, terms = clip_loss(model, batch, params, weights, samples, torch.Generator(device=device).manual_seed(i))
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v * len(chunk) / len(picks)
    model.train()
    return totals


def train_phase2(train: list[SequenceFrames], val: list[SequenceFrames], params: Phase2Params, phase1_path: Path,
                 out_model: Path, state_path: Path, run: CurveSink | None = None, device: str = "auto",
                 progress: bool = True, stop_after: int | None = None) -> dict:
    """Train from the phase-one checkpoint and write ``out_model``; returns a summary for the metrics.

    Resume state, curves and ``stop_after`` (an absolute step): :mod:`pipeline.train.loop` (a state made
    with other params or another phase-one model is ignored).
    """
    if not train:
        raise ValueError("no training sequence with at least 2 usable frames")
    info = common.init_distributed(device)
    common.seed_everything(params.seed)
    model, p1 = build_model(phase1_path, params, info.device)
    if params.camera == "gt" and any(s.r_wc is None for s in train):
        raise ValueError("video.camera = gt needs ground-truth pose files for every training sequence")
    encoded_train = encoded_val = None
    if not params.finetune_slots:  # frozen slot model: every frame encoded once
        model.slots.requires_grad_(False)
        objects = params if params.velocity_from == "objects" else None
        encoded_train, encoded_val = (encode_sequences(model, s, info.device, objects=objects) for s in (train, val))
    loop = TrainLoop("train phase 2", model, build_optimizer(model, params), steps=params.steps,
                     schedule=WarmupCosine(params.steps, warmup=min(20, params.steps // 10 + 1)), state_path=state_path,
                     identity=params.digest(phase1_digest(phase1_path)), checkpoint_every=params.checkpoint_every,
                     info=info, run=run, progress=progress)
    model.train()
    weights = loss_weights(p1)
    samples = p1.samples_per_slot if params.samples_per_slot <= 0 else params.samples_per_slot
    per_rank = max(params.batch_size // info.world_size, 1)
    clips_seen = 0
    terms: dict[str, float] = {}
    reference = frozen_forecaster(model, loop.extra.get("reference"))
    clipped = clip_groups(model, params.grad_clip_groups)  # parameter groups, formed once
    loop.extra_state = lambda: {} if reference is None else {"reference": reference.state_dict()}
    for step in loop.steps(stop_after):
        if params.forecast_training == "grpo" and step >= params.grpo_warmup and reference is None:
            reference = frozen_forecaster(model, model.forecaster.state_dict())  # the supervised forecaster
        rng = np.random.default_rng([params.seed, step, info.rank])
        clips = clip_batch(train, draw_clips(train, per_rank, params, rng), params.points_per_frame, rng, info.device,
                           model_merge(model.slots), encoded_train, velocity_gate(params))
        generator = torch.Generator(device=info.device).manual_seed(int(rng.integers(1 << 62)))
        loss, terms = clip_loss(model, clips, params, weights, samples, generator, reference)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.sync_gradients()  # the model is never DDP-wrapped: its forward is not a single call
        for group in clipped:
            torch.nn.utils.clip_grad_norm_(group, params.grad_clip)
        loop.optimizer.step()
        clips_seen += per_rank * info.world_size
        if info.is_main:
            loop.postfix(forecast=f"{terms['forecast_best_m']:.3f}")
            if loop.due(step, params.log_every):
                loop.log("train", step, terms)
            if val and loop.due(step, params.val_every):
                loop.log("val", step, validation_terms(model, val, params, weights, samples, info.device,
                                                       encoded=encoded_val))
    if loop.stopped:
        return {"steps": loop.stopped_at, "stopped_early": True}
    loop.finish(out_model, lambda: {
        "config": dataclasses.asdict(model.config), "slot_config": dataclasses.asdict(model.slots.config),
        "params": params.model_dump(), "phase1_params": p1.model_dump(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    return {**loop.summary(), "clips_seen": clips_seen, "clips_per_s": round(clips_seen / max(loop.seconds, 1e-9), 2),
            "train_sequences": len(train), "train_frames": sum(len(s.records) for s in train), "camera": params.camera,
            "forecast_training": params.forecast_training,
            "final_train": terms}


def load_video_model(path: Path, device: torch.device | str = "cpu") -> tuple[VideoSlotModel, Phase2Params, Phase1Params]:
    """Rebuild the video model from ``model.pt`` written by :func:`train_phase2` (weights_only load)."""
    payload = common.load_checkpoint(path, map_location=device)
    slot_config = dict(payload["slot_config"])
    slot_config["channels"] = tuple(slot_config["channels"])
    model = VideoSlotModel(VideoModelConfig(**payload["config"]), SlotModelConfig(**slot_config)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    params = Phase2Params.model_validate(payload["params"])
    p1 = Phase1Params.model_validate(payload["phase1_params"])
    return model, params, p1
