"""Model of the ``video`` section: phase two, stage ``train_phase2`` (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.params.base import Count, Fraction, Positive, Section, Seed, Weight

Frames = Annotated[int, Field(ge=2)]  # a velocity needs two frames


class Phase2Params(Section):
    """``video``: phase-two model, clip sampling, optimisation, loss weights and evaluation (see params.yaml)."""

    camera: Literal["predicted", "gt", "self_supervised"]
    camera_refine: Literal["none", "icp"]
    camera_prior_rotation_deg: Positive
    camera_prior_translation_m: Positive
    guesses: Count
    hidden: Count
    velocity_frames: Frames
    ego_motion: bool
    step_per_second: bool
    fixed_guesses: list[float]
    guess0_start_alpha: float
    fixed_slot_fallback: bool
    fixed_slot_fallback_mps: Annotated[float, Field(ge=0)]
    fixed_slot_fallback_residual_m: Annotated[float, Field(ge=0)]
    fixed_guess_velocity: list[Literal["velocity_from", "slots"]]
    max_step_m: Positive
    velocity_from: Literal["slots", "objects"]
    object_min_speed_mps: Annotated[float, Field(ge=0)]
    object_max_residual_m: Positive
    time_features: Count
    context_frames: Frames
    max_gap: Count
    max_delta: Count
    reverse_fraction: Fraction
    finetune_slots: bool
    steps: Count
    batch_size: Count
    lr: Positive
    head_lr: Positive
    grad_clip: Positive
    grad_clip_groups: Literal["global", "per_module"]
    points_per_frame: Count
    samples_per_slot: Count
    weight_depth: Weight
    weight_prototype_change: Weight
    weight_motion: Weight
    weight_scale_smooth: Weight
    weight_rotation_smooth: Weight
    weight_camera: Weight
    weight_forecast: Weight
    wta_trains_guess0: bool
    weight_confidence: Weight
    confidence_detached: bool
    confidence_target: Literal["winner", "error"]
    weight_single_guess: Weight
    single_guess_weighting: Literal["uniform", "inverse_gap"]
    forecast_training: Literal["best_of_k", "grpo"]
    grpo_group: Annotated[int, Field(ge=2)]  # advantages need a group
    grpo_clip: Positive
    grpo_kl_weight: Weight
    grpo_tolerance_m: Positive
    grpo_warmup: Annotated[int, Field(ge=0)]
    match_slots: bool
    eval_clip_frames: Frames
    track_gate_m: Positive
    track_memory_s: Annotated[float, Field(ge=0)]
    track_touch_m: Annotated[float, Field(ge=0)]
    track_established_m: Annotated[float, Field(ge=0)]
    track_split_mps: Annotated[float, Field(ge=0)]
    track_max_extent_m: Annotated[float, Field(ge=0)]
    eval_context_frames: Frames
    log_every: Count
    val_every: Count
    checkpoint_every: Count
    seed: Seed

    @model_validator(mode="after")
    def _fixed_guesses_leave_a_learned_one(self) -> "Phase2Params":
        if len(self.fixed_guesses) >= self.guesses:
            raise ValueError(f"video.fixed_guesses has {len(self.fixed_guesses)} entries: at most video.guesses - 1 = "
                             f"{self.guesses - 1} (guess 0 is the learned one-guess forecast)")
        if self.fixed_guess_velocity and len(self.fixed_guess_velocity) != len(self.fixed_guesses):
            raise ValueError(f"video.fixed_guess_velocity has {len(self.fixed_guess_velocity)} entries: one per "
                             f"video.fixed_guesses entry ({len(self.fixed_guesses)}), or [] for velocity_from in all")
        if self.fixed_guesses and self.forecast_training == "grpo":
            raise ValueError("video.fixed_guesses needs video.forecast_training = best_of_k (GRPO samples its "
                             "guesses): set video.fixed_guesses=[] and video.weight_forecast > 0 for GRPO")
        if self.forecast_training == "grpo" and self.weight_forecast == 0:
            raise ValueError("video.forecast_training = grpo needs video.weight_forecast > 0 "
                             "(the weight of GRPO's loss)")
        if self.forecast_training == "best_of_k" and self.weight_forecast == 0 and self.weight_single_guess == 0:
            raise ValueError("video.weight_forecast and video.weight_single_guess are both 0: "
                             "the forecaster learns nothing")
        return self

    @model_validator(mode="after")
    def _objects_need_frozen_slots(self) -> "Phase2Params":
        if self.velocity_from == "objects" and self.finetune_slots:
            raise ValueError("video.velocity_from = objects needs video.finetune_slots = false (the objects come from "
                             "the slots encoded once before training)")
        return self
