"""Model of the ``train`` section: phase one, stage ``train_phase1`` (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.params.base import Count, Positive, Section, Seed, Weight

InputSide = Annotated[int, Field(gt=0, multiple_of=32)]


class Phase1Params(Section):
    """``train``: phase-one model, data selection, optimisation and loss weights (see params.yaml)."""

    slots: Count
    prototypes: Count
    ico_level: Annotated[int, Field(ge=0)]
    input_height: InputSide
    input_width: InputSide
    points: Literal["things", "all"]
    far_m: Positive
    min_points: Count
    points_per_frame: Count
    steps: Count
    batch_size: Count
    lr: Positive
    prototype_lr: Positive
    grad_clip: Positive
    weight_free_space: Weight
    weight_reverse: Weight
    weight_compact: Weight
    weight_scale: Weight
    weight_distill: Weight
    refine_steps_train: Annotated[int, Field(ge=0)]
    refine_steps_eval: Annotated[int, Field(ge=0)]
    refine_lr: Positive
    refine_objective: Literal["chamfer", "loss"]
    refine_stretch: bool
    refine_parts: bool
    weight_smoothness: Weight
    weight_usage: Weight
    free_margin_m: Weight
    free_cap_m: Positive
    samples_per_slot: Count
    log_every: Count
    val_every: Count
    checkpoint_every: Count
    seed: Seed
    prototype_init: Literal["shapes", "random"]
    prototype_cluster_weight: Literal["points", "anchors"]
    prior_width: Positive
    val_frames: Annotated[int, Field(ge=0)]
    select_tolerance_m: Weight
    merge_gap_m: Weight
    merge_max_semi_axis_m: Positive
    merge_geometry: Literal["parts", "shared"]

    @model_validator(mode="after")
    def _enough_points_per_slot(self) -> Phase1Params:
        if self.min_points < self.slots:
            raise ValueError(f"min_points = {self.min_points} must be >= slots = {self.slots}")
        return self
