"""Configuration of the phase-two video model (nanoGPT style: one dataclass)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoModelConfig:
    """Sizes of the parts phase two adds on top of the phase-one slot model.

    - ``camera_head``: build the camera head (relative camera pose between two frames from the
      encoder's feature maps); without it the world frame comes from ground-truth poses;
    - ``feature_channels``: channels of the phase-one encoder's last feature map (its input);
    - ``hidden``: width of the camera head and the forecaster;
    - ``time_features``: sinusoidal frequencies of the time embedding (seconds, continuous);
    - ``guesses``: k forecasts per slot set (best-of-k);
    - ``prototypes``: P of the phase-one model (the forecaster reads the prototype weights);
    - ``max_step_m``: bound of the forecaster's per-guess position correction (metres; with ``step_per_second``
      metres per second of |Δ|, so the correction shrinks with the gap as the extrapolation does);
    - ``max_turn_rad``: bound of the forecaster's rotation correction (radians);
    - ``velocity_frames``: context frames of the least-squares velocity the guesses extrapolate;
    - ``ego_motion``: the forecaster also reads the camera's poses over the context.
    - ``step_per_second``: scale the position correction's bound by |Δ| in seconds (see ``max_step_m``);
    - ``fixed_guesses``: extrapolation fractions of the last ``len(fixed_guesses)`` guesses, which have no learned
      part (α fixed, no correction, no turn): e.g. (0.0, 1.0) makes them copy-last and the whole velocity;
    - ``guess0_start_alpha``: the extrapolation fraction guess 0 starts at when there are several guesses (the
      others start at 0 ... 1.5; a single guess starts at 1.0);
    - ``fixed_slot_fallback``: in a sample whose given velocity is zero for every slot (no object track passes the
      motion gate), the fixed guesses extrapolate the slots' own fitted velocity instead, so that a fixed fraction
      other than 0 does not repeat copy-last (no effect without fixed guesses or without a given velocity);
    - ``fixed_slot_fallback_mps``: with ``fixed_slot_fallback``, also slot by slot: a slot whose given velocity is
      zero (its object gated as still) but whose own fitted speed is at least this many m/s takes its own velocity in
      the fixed guesses (0 = off: only the whole-sample fallback above);
    - ``fixed_slot_fallback_residual_m``: with ``fixed_slot_fallback_mps`` > 0, such a slot must also move steadily:
      its own track over the whole context passes the object tracks' gate (that speed, and an RMS residual from its
      fitted line of at most this many metres), and it takes that line's velocity (0 = off: the speed alone, over
      ``velocity_frames``);
    - ``confidence_detached``: the confidence logits read the forecaster's slot tokens detached, so the confidence
      loss trains the confidence layer alone and never moves the shared trunk (and with it guess 0);
    - ``fixed_guess_velocity``: per fixed guess, the velocity its fraction scales: ``"velocity_from"`` (the one the
      learned guesses extrapolate, with ``fixed_slot_fallback``) or ``"slots"`` (the slots' own fitted velocity over
      ``velocity_frames``, as the speed-scaling baseline); empty = ``"velocity_from"`` for every fixed guess.
    """

    camera_head: bool = True
    feature_channels: int = 128
    hidden: int = 128
    time_features: int = 8
    guesses: int = 3
    prototypes: int = 6
    max_step_m: float = 5.0
    max_turn_rad: float = 0.5
    velocity_frames: int = 2
    ego_motion: bool = False
    step_per_second: bool = False
    fixed_guesses: tuple[float, ...] = ()
    guess0_start_alpha: float = 0.0
    fixed_slot_fallback: bool = False
    fixed_slot_fallback_mps: float = 0.0
    fixed_slot_fallback_residual_m: float = 0.0
    fixed_guess_velocity: tuple[str, ...] = ()
    confidence_detached: bool = False
