"""Model of the ``drives`` section: cheap drives for the concerto -> laq branch, stage ``drives`` (documented in
params.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.params.base import Count, MaxPoints, Neighbours, NonNegative, Positive, Section, Seed

SmallSide = Annotated[int, Field(ge=16, multiple_of=2)]


class DrivesParams(Section):
    """``drives``: how many cheap drives, how long, at what image size and point count; held-out drives."""

    seed: Seed
    sequences: Count
    frames: Count
    height: SmallSide
    width: SmallSide
    max_points: MaxPoints
    pixel_sampling: Literal["per_frame", "per_drive"]
    far_m: Positive
    normal_neighbours: Neighbours
    val_sequences: Count
    test_sequences: Count
    extra_val_sequences: NonNegative

    @property
    def rendered(self) -> int:
        """Drives rendered: ``sequences`` (the by-name split) and the ``extra_val_sequences`` after them."""
        return self.sequences + self.extra_val_sequences

    @model_validator(mode="after")
    def _training_drives_left(self) -> DrivesParams:
        if self.val_sequences + self.test_sequences >= self.sequences:
            raise ValueError(f"val_sequences + test_sequences = {self.val_sequences + self.test_sequences} leave no "
                             f"training drive of sequences = {self.sequences}")
        return self
