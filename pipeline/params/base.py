"""Base model of every params.yaml section and the small constrained types they share."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Seed = Annotated[int, Field(ge=0, lt=2**32)]  # numpy and scikit-learn seeds
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
Weight = Annotated[float, Field(ge=0.0)]
NonBlank = Annotated[str, Field(pattern=r"\S")]  # text with at least one non-space character
Source = NonBlank  # "random", a released name, a path or a hub id
PathText = NonBlank  # a file or folder path (e.g. a DVC dependency)
MaxPoints = Annotated[int, Field(ge=16)]  # points per frame after subsampling
Neighbours = Annotated[int, Field(ge=3)]  # k of a k-NN plane fit


class Section(BaseModel):
    """One section of params.yaml: unknown keys are errors, values are immutable, and types are strict
    (an int is accepted for a float; nothing else is converted). Subclasses declare no defaults: every
    value and its documentation live in params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def digest(self, extra: str = "") -> str:
        """16 hex digits identifying these values (plus ``extra``): part of a training run's resume identity."""
        text = json.dumps(self.model_dump(), sort_keys=True) + extra
        return hashlib.sha256(text.encode()).hexdigest()[:16]
