"""Phase two: slots with identity over time, camera vector, motion priors, forecasting at t + Δ."""

from pipeline.models.video.config import VideoModelConfig
from pipeline.models.video.model import VideoSlotModel

__all__ = ["VideoModelConfig", "VideoSlotModel"]
