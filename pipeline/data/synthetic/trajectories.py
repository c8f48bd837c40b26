"""Known motions of objects (ground truth for evaluation): standing still, or a planned drive.

All motions live in the horizontal x-z plane of the SYNTHIA world (metres, y up); yaw 0 faces +z
and yaw pi/2 faces +x (see :mod:`pipeline.data.camera`). Time ``t`` is in seconds from frame 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.synthetic.manoeuvres import Drive

MOTION_KINDS = ("static", "manoeuvres")


@dataclass(frozen=True)
class StaticMotion:
    """Stays at ``start`` (x, z) facing ``yaw0`` (rad)."""

    start: tuple[float, float]
    yaw0: float
    kind: str = "static"

    def state(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) as (x, z) and yaw (...) at time(s) ``t``."""
        t = np.asarray(t, dtype=np.float64)
        pos = np.stack([np.full_like(t, self.start[0]), np.full_like(t, self.start[1])], axis=-1)
        return pos, np.full_like(t, self.yaw0)

    def label(self, t: float) -> str:
        return "none"


@dataclass(frozen=True)
class ScheduledMotion:
    """Follows a planned :class:`~pipeline.data.synthetic.manoeuvres.Drive` (straight, turns, stops, ...)."""

    drive: Drive
    kind: str = "manoeuvres"

    def state(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) as (x, z) and yaw (...) at time(s) ``t``."""
        return self.drive.state(t)

    def label(self, t: float) -> str:
        """Planned manoeuvre at time ``t`` (see :data:`pipeline.data.synthetic.manoeuvres.LABELS`)."""
        return str(self.drive.labels_at(t))


Motion = StaticMotion | ScheduledMotion
