"""Depth map -> K object slots built from learned deformations of one ico-sphere (phase one)."""

from pipeline.models.slots.config import SlotModelConfig
from pipeline.models.slots.model import SlotParams, SlotSceneModel

__all__ = ["SlotModelConfig", "SlotParams", "SlotSceneModel"]
