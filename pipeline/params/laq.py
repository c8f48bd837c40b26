"""Model of the ``laq`` section: Concerto-LAQ, stage ``laq`` (documented in params.yaml)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from pipeline.params.base import Count, Fraction, NonNegative, Positive, Section, Seed, Weight

Depth = NonNegative  # transformer blocks, cells read (0 = the default of the field)
MODEL_KEYS = ("dim", "heads", "spatial_depth", "temporal_depth", "decoder_depth", "temporal_mode", "geometry_weight",
              "codebook_size", "code_seq_len", "read_cells", "quant_dim", "warp", "warp_sigma_m",
              "warp_gate", "scene_weight")


class LAQParams(Section):
    """``laq``: model sizes, schedule, quantizer and evaluation (see params.yaml)."""

    dim: Count
    heads: Count
    spatial_depth: Depth
    temporal_depth: Depth
    decoder_depth: Depth
    temporal_mode: Literal["joint", "per_token"]
    geometry_weight: Weight
    scene_weight: Weight
    mirror: Fraction
    reverse: Fraction
    offset_jitter: NonNegative
    codebook_size: Count
    code_seq_len: Count
    read_cells: Depth
    quant_dim: Count
    warp: bool
    warp_sigma_m: Positive
    warp_gate: bool
    frame_offset: Count
    steps: Count
    batch_size: Count
    lr: Positive
    grad_clip: Weight
    replace_every: Count
    replace_until: Fraction
    replace_threshold: Weight
    replace_noise: Weight
    replace_from: Literal["latents", "codes"]
    log_every: Count
    checkpoint_every: Count
    seed: Seed
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
    cpu_ranks: Count
    motion_bins: Annotated[int, Field(ge=2)]

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> LAQParams:
        if self.dim % self.heads:
            raise ValueError(f"dim = {self.dim} must be divisible by heads = {self.heads}")
        return self

    def model_kwargs(self) -> dict[str, Any]:
        """The keys that are also fields of ``pipeline.models.laq.LAQConfig``."""
        return {k: getattr(self, k) for k in MODEL_KEYS}
