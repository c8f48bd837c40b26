"""Forecasting slots at t + Δ from a context window, time as a continuous input; k guesses.

State of a slot in the world frame (:class:`SlotTrack`): centre (metres), rotation (3x3, proper),
scale (metres), prototype weights. The forecaster reads C context frames of K matched slots with
their time stamps and a target gap Δ (seconds from the last context frame; any real number,
negative = backwards), both through sinusoidal time embeddings (never a step index), and returns
G scene-level guesses:

    centre_g = c_last + α_g · v · Δ + max_step · tanh(d_g),   R_g = exp(max_turn · tanh(ω_g)) R_last

(``video.step_per_second``: ``max_step · |Δ| · tanh(d_g)``, the correction's bound in metres per second of the gap;
``video.fixed_guesses``: the last guesses have a fixed α_g and no correction or turn, e.g. copy-last (α = 0) and the
whole velocity (α = 1), so the k guesses always hold those hypotheses beside the learned ones;
``video.fixed_slot_fallback``: where the given velocity is zero for every slot, the fixed guesses use the slots' own;
``video.fixed_guess_velocity``: a fixed guess may always scale the slots' own velocity instead;
:meth:`Forecaster.guess_velocities`)

with v the least-squares velocity of the last ``velocity_frames`` context frames (true time stamps;
2 = the last two frames' difference), or a velocity given by the caller (``video.velocity_from: objects``: the
velocity of the slot's object, :mod:`pipeline.models.video.object_motion`), α_g and d_g, ω_g per
slot from the network, plus a confidence logit per guess. The last layer starts at zero and the
guesses start at extrapolation fractions α_g = 0 ... 1.5 (guess 0 = copy-last, a middle one =
constant velocity), so training starts at the two baselines and winner-takes-all training can
spread the guesses; with ``fixed_guesses`` the last guesses stay at their fractions. For GRPO
(``pipeline/train/grpo.py``) the same heads define a stochastic forecaster
(:mod:`pipeline.models.video.policy`): a guess's component is drawn from the confidences and its raw
outputs (α, d, ω) from a Gaussian around that component's with a learned std. Scale and prototype weights are carried from the last frame (an object keeps its
shape; this also stops a forecast from swelling to cover its uncertainty under a one-directional
Chamfer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.models.video.config import VideoModelConfig
from pipeline.models.video.poses import apply, axis_angle_to_matrix, invert, matrix_to_rot6d
from pipeline.models.video.time_embedding import TimeEmbedding

POS_SCALE_M = 5.0
POLICY_STD = 0.1  # initial std of the stochastic forecaster's raw outputs (α, pre-tanh step and turn)
WORLD_SCALE_M = 20.0


@dataclass
class SlotTrack:
    """World-frame slot states of B clips x T frames x K matched slots, and the camera that saw them."""

    centre: Tensor  # (B, T, K, 3) metres
    rotation: Tensor  # (B, T, K, 3, 3)
    scale: Tensor  # (B, T, K) metres
    weights: Tensor  # (B, T, K, P)
    time: Tensor  # (B, T) seconds
    camera_rotation: Tensor | None = None  # (B, T, 3, 3) world_from_camera of each frame (OpenCV camera axes)
    camera_centre: Tensor | None = None  # (B, T, 3) metres

    def _map(self, slots: Callable[[Tensor], Tensor], camera: Callable[[Tensor], Tensor]) -> "SlotTrack":
        """A track with ``slots`` applied to the per-slot tensors and the times, ``camera`` to the camera's."""
        has_camera = self.camera_rotation is not None
        return SlotTrack(*(slots(x) for x in (self.centre, self.rotation, self.scale, self.weights, self.time)),
                         *((camera(self.camera_rotation), camera(self.camera_centre)) if has_camera else ()))

    def frames(self, index) -> "SlotTrack":
        return self._map(lambda x: x[:, index], lambda x: x[:, index])

    def detach(self) -> "SlotTrack":
        return self._map(Tensor.detach, Tensor.detach)

    def rebased(self, r_wf: Tensor, t_wf: Tensor) -> "SlotTrack":
        """The same slots (and camera) in frame F, given world_from_F (B, 3, 3), (B, 3): centres R^T (c - t),
        rotations R^T R_slot.

        The forecaster reads absolute centres, rotations and velocities, so it sees its clips in the frame it was
        trained in: the clip's first camera (:func:`pipeline.train.phase2.clip_batch`)."""
        r_fw, t_fw = invert(r_wf, t_wf)
        camera = () if self.camera_rotation is None else (
            r_fw[:, None] @ self.camera_rotation, apply(r_fw, t_fw, self.camera_centre))
        return SlotTrack(apply(r_fw[:, None], t_fw[:, None], self.centre), r_fw[:, None, None] @ self.rotation,
                         self.scale, self.weights, self.time, *camera)


@dataclass
class Forecast:
    """G guesses of the K slots at the target time: centre (B, G, K, 3), rotation (B, G, K, 3, 3);
    scale (B, K) and weights (B, K, P) shared by the guesses; confidence logits (B, G)."""

    centre: Tensor
    rotation: Tensor
    scale: Tensor
    weights: Tensor
    logits: Tensor


def relative_to_last(centre: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor]:
    """Poses over the context frames (dim 1) relative to the last frame's: centres (B, C, ..., 3) minus the last,
    in units of ``POS_SCALE_M``, and the 6D form (B, C, ..., 6) of R_last^T R for rotations (B, C, ..., 3, 3)."""
    rel_pos = (centre - centre[:, -1:]) / POS_SCALE_M
    rel_rot = matrix_to_rot6d(rotation[:, -1:].transpose(-1, -2) @ rotation)
    return rel_pos, rel_rot


def best_of_k(errors: Tensor) -> tuple[Tensor, Tensor]:
    """Winner-takes-all over guesses: errors (B, G) -> (min error (B,), winning guess (B,)).

    Only the winning guess of each sample receives gradient (the min is taken per sample)."""
    return errors.min(dim=1)


def last_velocity(context: SlotTrack) -> Tensor:
    """(B, K, 3) m/s from the last two context frames (zero with one frame)."""
    if context.centre.shape[1] < 2:
        return torch.zeros_like(context.centre[:, -1])
    dt = (context.time[:, -1] - context.time[:, -2]).clamp_min(1e-6)
    return (context.centre[:, -1] - context.centre[:, -2]) / dt.view(-1, 1, 1)


def fitted_velocity(context: SlotTrack, frames: int) -> Tensor:
    """(B, K, 3) m/s: slope of the least-squares line through the last ``frames`` context centres against their
    true time stamps (2 frames: :func:`last_velocity`; more frames average out the slots' frame-to-frame jitter)."""
    n = min(frames, context.centre.shape[1])
    if n <= 2:
        return last_velocity(context)
    return centred_line(context, n)[0]


def centred_line(context: SlotTrack, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares line through the last ``n`` context centres against their true time stamps: slope (B, K, 3)
    m/s, the centred times (B, n, 1, 1) seconds and the centred centres (B, n, K, 3) metres."""
    time = context.time[:, -n:]
    dt = (time - time.mean(dim=1, keepdim=True)).view(-1, n, 1, 1)
    centre = context.centre[:, -n:]
    dx = centre - centre.mean(dim=1, keepdim=True)
    return (dt * dx).sum(1) / (dt * dt).sum(1).clamp_min(1e-12), dt, dx


def steady_line(context: SlotTrack, min_speed_mps: float, max_residual_m: float) -> tuple[Tensor, Tensor]:
    """Each slot's own track over the whole context as the object tracks' motion gate reads an object's mean
    (:func:`pipeline.models.video.object_tracks.line_fit`): the least-squares velocity (B, K, 3) m/s and whether it
    passes (B, K, 1) bool: speed >= ``min_speed_mps`` and RMS distance (metres) of the centres from the fitted line
    <= ``max_residual_m``. Fewer than 3 context frames give no residual: nothing passes."""
    n = context.centre.shape[1]
    if n < 3:
        velocity = fitted_velocity(context, n)
        return velocity, torch.zeros_like(velocity[..., :1], dtype=torch.bool)
    velocity, dt, dx = centred_line(context, n)
    residual = (dx - dt * velocity.unsqueeze(1)).square().sum(-1).mean(1).sqrt().unsqueeze(-1)  # (B, K, 1)
    passes = (velocity.norm(dim=-1, keepdim=True) >= min_speed_mps) & (residual <= max_residual_m)
    return velocity, passes


def copy_last(context: SlotTrack) -> Forecast:
    """Baseline: the last context frame's slots, unchanged in the world frame (one guess)."""
    last = context.frames(-1)
    return Forecast(last.centre[:, None], last.rotation[:, None], last.scale, last.weights,
                    torch.zeros(last.centre.shape[0], 1, device=last.centre.device))


def constant_velocity(context: SlotTrack, delta_s: Tensor, velocity: Tensor | None = None) -> Forecast:
    """Baseline: last centres moved by ``velocity`` (B, K, 3) m/s for ``delta_s`` (B,) seconds; by default the last
    two frames' velocity."""
    out = copy_last(context)
    velocity = last_velocity(context) if velocity is None else velocity
    out.centre = out.centre + (velocity * delta_s.view(-1, 1, 1))[:, None]
    return out


class Forecaster(nn.Module):
    def __init__(self, config: VideoModelConfig):
        super().__init__()
        h, g = config.hidden, config.guesses
        self.config = config
        self.context_time = TimeEmbedding(config.time_features, h)
        self.target_time = TimeEmbedding(config.time_features, h)
        self.frame_mlp = nn.Sequential(nn.Linear(3 + 6 + 1, h), nn.ReLU(), nn.Linear(h, h))
        self.slot_in = nn.Linear(3 + 1 + 6 + config.prototypes + 3, h)
        self.mix = nn.Sequential(nn.ReLU(), nn.Linear(3 * h, h))
        self.interact = nn.TransformerEncoderLayer(h, nhead=4, dim_feedforward=2 * h, dropout=0.0, batch_first=True,
                                                   norm_first=True)
        if config.ego_motion:  # the camera's poses over the context (where it goes: which slots leave the view)
            self.ego_frame = nn.Sequential(nn.Linear(3 + 6, h), nn.ReLU(), nn.Linear(h, h))
            self.ego_out = nn.Linear(2 * h + 3 + 6, h)
        self.head = nn.Linear(h, g * 7)
        self.confidence = nn.Linear(h, g)
        # GRPO's stochastic forecaster: learned std of the Gaussian around each guess's raw outputs
        # (:mod:`pipeline.models.video.policy`; unused, without gradient, by best-of-k training)
        self.log_std = nn.Parameter(torch.full((7,), math.log(POLICY_STD)))
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            if g > 1:  # guess 0 at guess0_start_alpha (0.0 by default, linspace's own first value), the rest up to 1.5
                fractions = torch.linspace(0.0, 1.5, g)
                fractions[0] = config.guess0_start_alpha
            else:  # a single guess starts as constant velocity
                fractions = torch.ones(1)
            self.head.bias.view(g, 7)[:, 0] = fractions
            self.confidence.weight.zero_()
            self.confidence.bias.zero_()
            if config.ego_motion:  # starts as the forecaster without it
                self.ego_out.weight.zero_()
                self.ego_out.bias.zero_()

    def velocity(self, context: SlotTrack, velocity: Tensor | None) -> Tensor:
        """(B, K, 3) m/s the guesses extrapolate: ``velocity`` if given, else the slots' own fitted velocity."""
        return fitted_velocity(context, self.config.velocity_frames) if velocity is None else velocity

    def heads(self, context: SlotTrack, delta_s: Tensor, velocity: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw per-guess outputs (B, G, K, 7) [α, step pre-tanh (3), turn pre-tanh (3)] and confidence
        logits (B, G) for a context (B, C, K, ...) and target gaps ``delta_s`` (B,) seconds after its last frame;
        ``velocity`` (B, K, 3) m/s in the context's world frame: see :meth:`velocity`."""
        last = context.frames(-1)
        b, c, k, _ = context.centre.shape
        rel_time = context.time - last.time.unsqueeze(1)  # (B, C) <= 0
        rel_pos, rel_rot = relative_to_last(context.centre, context.rotation)
        rel_scale = torch.log(context.scale / last.scale.unsqueeze(1)).unsqueeze(-1)
        per_frame = self.frame_mlp(torch.cat([rel_pos, rel_rot, rel_scale], dim=-1))
        per_frame = per_frame + self.context_time(rel_time).unsqueeze(2)
        history = torch.cat([per_frame.mean(1), per_frame.amax(1)], dim=-1)  # (B, K, 2h)
        velocity = self.velocity(context, velocity)
        absolute = torch.cat([last.centre / WORLD_SCALE_M, torch.log(last.scale).unsqueeze(-1),
                              matrix_to_rot6d(last.rotation), last.weights, velocity / POS_SCALE_M], dim=-1)
        token = self.mix(torch.cat([history, self.slot_in(absolute)], dim=-1)) + self.target_time(delta_s).unsqueeze(1)
        if self.config.ego_motion:
            token = token + self.ego(context, rel_time).unsqueeze(1)
        token = self.interact(token)  # (B, K, h)
        raw = self.head(token).view(b, k, self.config.guesses, 7).transpose(1, 2)  # (B, G, K, 7)
        pooled = token.mean(1)
        return raw, self.confidence(pooled.detach() if self.config.confidence_detached else pooled)

    def ego(self, context: SlotTrack, rel_time: Tensor) -> Tensor:
        """(B, h) feature of the camera's poses over the context (``video.ego_motion``): each frame's camera centre
        and rotation relative to the last frame's, with its time (B, C) <= 0, pooled over frames, and the last
        pose itself in the world frame (the context's first camera, where the forecaster sees its clips)."""
        if context.camera_rotation is None:
            raise ValueError("video.ego_motion: the forecaster needs the context's camera poses (SlotTrack.camera_*)")
        last_r, last_c = context.camera_rotation[:, -1], context.camera_centre[:, -1]
        rel_pos, rel_rot = relative_to_last(context.camera_centre, context.camera_rotation)
        per_frame = self.ego_frame(torch.cat([rel_pos, rel_rot], dim=-1)) + self.context_time(rel_time)
        pooled = torch.cat([per_frame.mean(1), per_frame.amax(1), last_c / WORLD_SCALE_M, matrix_to_rot6d(last_r)],
                           dim=-1)
        return self.ego_out(pooled)

    def decode(self, context: SlotTrack, delta_s: Tensor, raw: Tensor, logits: Tensor,
               velocity: Tensor | None = None) -> Forecast:
        """Guesses from raw outputs (B, S, K, 7) (the heads' or sampled ones; any number S of guesses)."""
        last = context.frames(-1)
        velocity = self.velocity(context, velocity)
        raw = self.with_fixed_guesses(raw)
        alpha, step, turn = raw[..., :1], raw[..., 1:4], raw[..., 4:7]
        bound = self.config.max_step_m * (delta_s.abs().view(-1, 1, 1, 1) if self.config.step_per_second else 1.0)
        per_guess = self.guess_velocities(context, velocity, raw.shape[1])  # (B, S or 1, K, 3)
        centre = (last.centre.unsqueeze(1) + alpha * (per_guess * delta_s.view(-1, 1, 1, 1))
                  + bound * torch.tanh(step))
        rotation = axis_angle_to_matrix(self.config.max_turn_rad * torch.tanh(turn)) @ last.rotation.unsqueeze(1)
        return Forecast(centre, rotation, last.scale, last.weights, logits)

    def guess_velocities(self, context: SlotTrack, velocity: Tensor, guesses: int) -> Tensor:
        """Velocity (B, 1, K, 3) m/s every guess extrapolates, or (B, ``guesses``, K, 3) when a fixed guess takes
        another: with ``config.fixed_slot_fallback``, in a sample whose ``velocity`` is zero for every slot (no object
        moves), the fixed guesses take the slots' own fitted velocity (``velocity_frames``), and with
        ``config.fixed_slot_fallback_mps`` > 0 so does every slot whose ``velocity`` is zero while its own fitted speed
        reaches that bound; with ``config.fixed_slot_fallback_residual_m`` > 0 as well, such a slot's own track over
        the whole context must pass the objects' gate instead (:func:`steady_line`: that speed, that residual), and it
        takes that line's velocity. A fixed guess whose ``config.fixed_guess_velocity`` entry is ``"slots"`` always
        takes the slots' own. The learned guesses keep ``velocity``."""
        fixed = len(self.config.fixed_guesses)
        sources = self.config.fixed_guess_velocity or ("velocity_from",) * fixed
        if not fixed or (not self.config.fixed_slot_fallback and "slots" not in sources):
            return velocity.unsqueeze(1)
        own = fitted_velocity(context, self.config.velocity_frames)
        if self.config.fixed_slot_fallback:
            gated = (velocity == 0).all(dim=-1, keepdim=True)  # (B, K, 1)
            still = gated.all(dim=1, keepdim=True)  # (B, 1, 1): no object moves in the sample
            shared = velocity
            if self.config.fixed_slot_fallback_mps > 0:  # ... or this slot's object is gated but the slot moves
                if self.config.fixed_slot_fallback_residual_m > 0:
                    line, moves = steady_line(context, self.config.fixed_slot_fallback_mps,
                                              self.config.fixed_slot_fallback_residual_m)
                    shared = torch.where(gated & moves, line, velocity)
                else:
                    still = still | (gated & (own.norm(dim=-1, keepdim=True) >= self.config.fixed_slot_fallback_mps))
            shared = torch.where(still, own, shared)
        else:
            shared = velocity
        per_fixed = [own if source == "slots" else shared for source in sources]
        return torch.stack([velocity] * (guesses - fixed) + per_fixed, dim=1)

    def with_fixed_guesses(self, raw: Tensor) -> Tensor:
        """Raw outputs (B, G, K, 7) with the last ``len(config.fixed_guesses)`` guesses replaced by their fixed
        fraction α and zero correction and turn (``tanh(0) = 0``, a zero rotation): no gradient reaches them."""
        fixed = self.config.fixed_guesses
        if not fixed:
            return raw
        if raw.shape[1] != self.config.guesses:
            raise ValueError(f"video.fixed_guesses needs the model's {self.config.guesses} guesses, got {raw.shape[1]} "
                             f"(sampled guesses, e.g. GRPO, cannot hold fixed ones)")
        pinned = torch.zeros(raw.shape[0], len(fixed), *raw.shape[2:], dtype=raw.dtype, device=raw.device)
        pinned[..., 0] = torch.tensor(fixed, dtype=raw.dtype, device=raw.device).view(1, -1, 1)
        return torch.cat([raw[:, :raw.shape[1] - len(fixed)], pinned], dim=1)

    def forward(self, context: SlotTrack, delta_s: Tensor, velocity: Tensor | None = None) -> Forecast:
        """Context (B, C, K, ...), target gaps ``delta_s`` (B,) seconds after the last context frame and optionally
        the velocity (B, K, 3) to extrapolate (:meth:`velocity`)."""
        return self.decode(context, delta_s, *self.heads(context, delta_s, velocity), velocity)
