"""Continuous time as a model input: sinusoidal features of a signed gap in seconds.

Time is not a step index: the forecaster gets the gap ``dt`` (seconds, any real number, negative =
into the past) between a context frame or the target and the last context frame. The features are
``sin(2π dt / T_i)`` and ``cos(2π dt / T_i)`` for F periods ``T_i`` spaced geometrically between
``min_period_s`` and ``max_period_s``, plus ``dt / max_period_s`` itself (so gaps longer than the
largest period are not aliased). ``sin`` is odd and ``cos`` even, so a reversed gap has a distinct,
mirrored embedding. A learned linear layer maps the features to the model width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_time(dt: Tensor, features: int, min_period_s: float = 0.2, max_period_s: float = 20.0) -> Tensor:
    """(...,) gaps in seconds -> (..., 2 * features + 1) features [sin..., cos..., dt / max_period]."""
    if features < 1:
        raise ValueError(f"time_features must be >= 1, got {features}")
    periods = torch.logspace(math.log10(min_period_s), math.log10(max_period_s), features, device=dt.device,
                             dtype=dt.dtype)
    phase = 2 * math.pi * dt.unsqueeze(-1) / periods
    return torch.cat([torch.sin(phase), torch.cos(phase), dt.unsqueeze(-1) / max_period_s], dim=-1)


class TimeEmbedding(nn.Module):
    """Signed gap (..., ) seconds -> (..., dim) learned projection of :func:`sinusoidal_time`."""

    def __init__(self, features: int, dim: int):
        super().__init__()
        self.features = features
        self.proj = nn.Linear(2 * features + 1, dim)

    def forward(self, dt: Tensor) -> Tensor:
        return self.proj(sinusoidal_time(dt, self.features))
