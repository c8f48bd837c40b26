"""Configuration of the slot scene model (nanoGPT style: one dataclass)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlotModelConfig:
    """Sizes of the slot scene model.

    - ``slots`` K and ``prototypes`` P: each slot vector has 1 + 6 + P entries, decomposed as the
      plan says: ``scale = v[:1]``, ``transform = v[1:7]`` (x, y, z, yaw, pitch, roll),
      ``logits = v[7:7+P]``;
    - ``ico_level``: subdivision of the one true object, a fixed unit ico-sphere (level 2: 162
      vertices, 320 faces); prototypes are learned per-vertex offsets of it;
    - ``input_height`` x ``input_width``: depth-map size seen by the encoder;
    - ``channels``: widths of the ResNet stages (a stride-2 stem, then each stage halves the resolution);
    - ``head_gain``: scale of the slot head's last layer at init (small, so the model starts at
      its anchors and Adam does not saturate it);
    - ``max_log_scale``: the slot scale is ``anchor_radius * exp(max_log_scale * tanh(v0 / max_log_scale))``;
    - ``max_offset``: the slot centre is ``anchor + anchor_radius * max_offset * tanh(v[1:4])``;
    - ``prior_width``: width (log-extent units) of the anchor prior over prototypes (small = the
      nearest prototype only, large = an even blend); see :mod:`pipeline.models.slots.model`;
    - ``merge_gap_m``, ``merge_max_semi_axis_m``: k-means clusters closer than the gap form one object
      while object-sized (0 = off); see :mod:`pipeline.models.slots.grouping`;
    - ``merge_geometry``: what a merged group is. ``parts``: every slot keeps its own cluster and mesh
      (a part), the group is one object for segmentation (its points get the group's label);
      ``shared``: the group's clusters become one slot, the other members alias it (copy its vector
      and mesh, own no point).
    """

    slots: int = 8
    prototypes: int = 6
    ico_level: int = 2
    input_height: int = 96
    input_width: int = 160
    channels: tuple[int, ...] = (16, 32, 64, 96)
    hidden: int = 128
    head_gain: float = 0.1
    max_log_scale: float = 1.5
    max_offset: float = 1.0
    prior_width: float = 0.3
    merge_gap_m: float = 0.0
    merge_max_semi_axis_m: float = 3.0
    merge_geometry: str = "shared"  # checkpoints from before the parameter existed were trained shared

    @property
    def slot_dim(self) -> int:
        return 7 + self.prototypes
