"""Known, closed-form motions of objects and of the camera rig (ground truth for evaluation).

All motions live in the horizontal x-z plane of the SYNTHIA world (metres, y up); yaw 0 faces +z
and yaw pi/2 faces +x (see :mod:`pipeline.data.camera`). Time ``t`` is in seconds from frame 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MOTION_KINDS = ("static", "straight", "parabolic", "turning")


@dataclass(frozen=True)
class PlanarMotion:
    """Ground-plane motion of an object's reference point.

    - ``static``: stays at ``start`` facing ``yaw0``.
    - ``straight``: constant velocity ``speed`` along ``yaw0``.
    - ``parabolic``: constant acceleration ``accel`` (world x, z) from velocity ``speed`` along ``yaw0``;
      the path is a parabola (acceleration not parallel to the start velocity); heading follows velocity.
    - ``turning``: constant speed on a circle with yaw rate ``yaw_rate`` (rad/s).
    """

    kind: str
    start: tuple[float, float]  # (x, z) at t = 0
    yaw0: float
    speed: float = 0.0
    accel: tuple[float, float] = (0.0, 0.0)
    yaw_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in MOTION_KINDS:
            raise ValueError(f"unknown motion kind {self.kind!r}; expected one of {MOTION_KINDS}")

    def state(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) as (x, z) and yaw (...) at time(s) ``t``."""
        t = np.asarray(t, dtype=np.float64)
        x0, z0 = self.start
        fx, fz = math.sin(self.yaw0), math.cos(self.yaw0)
        if self.kind == "static" or self.speed == 0.0 and self.kind != "parabolic":
            pos = np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=-1)
            return pos, np.full_like(t, self.yaw0)
        if self.kind == "straight":
            pos = np.stack([x0 + fx * self.speed * t, z0 + fz * self.speed * t], axis=-1)
            return pos, np.full_like(t, self.yaw0)
        if self.kind == "parabolic":
            ax, az = self.accel
            vx, vz = fx * self.speed + ax * t, fz * self.speed + az * t
            pos = np.stack([x0 + fx * self.speed * t + 0.5 * ax * t**2, z0 + fz * self.speed * t + 0.5 * az * t**2], -1)
            return pos, np.arctan2(vx, vz)
        # turning: heading yaw(t) = yaw0 + w t; position is the integral of speed * heading_vector(yaw)
        w = self.yaw_rate
        if abs(w) < 1e-9:
            return PlanarMotion("straight", self.start, self.yaw0, self.speed).state(t)
        yaw = self.yaw0 + w * t
        r = self.speed / w
        pos = np.stack([x0 + r * (np.cos(self.yaw0) - np.cos(yaw)), z0 + r * (np.sin(yaw) - np.sin(self.yaw0))], -1)
        return pos, yaw


@dataclass(frozen=True)
class RigSegment:
    """One piece of the camera rig's drive: ``mode`` in {forward, turn, stop} for ``duration`` s."""

    mode: str
    duration: float
    speed: float
    yaw_rate: float = 0.0


def integrate_rig(segments: list[RigSegment], times: np.ndarray, start=(0.0, 0.0), yaw0: float = 0.0):
    """Rig position (T, 2) as (x, z), yaw (T,) and mode (T,) at ``times`` (seconds, ascending).

    Each segment is a closed-form straight or circular piece, chained end to end; after the last
    segment the rig keeps its final state.
    """
    positions, yaws, modes = [], [], []
    seg_start_t, pos, yaw = 0.0, np.array(start, dtype=np.float64), float(yaw0)
    pieces = []
    for seg in segments:
        kind = "turning" if seg.mode == "turn" else ("static" if seg.mode == "stop" else "straight")
        motion = PlanarMotion(kind, (float(pos[0]), float(pos[1])), yaw, seg.speed, yaw_rate=seg.yaw_rate)
        pieces.append((seg_start_t, seg.duration, motion, seg.mode))
        end_pos, end_yaw = motion.state(seg.duration)
        pos, yaw, seg_start_t = end_pos, float(end_yaw), seg_start_t + seg.duration
    for t in times:
        for start_t, duration, motion, mode in pieces:
            if t <= start_t + duration or (start_t, duration, motion, mode) == pieces[-1]:
                local = min(t - start_t, duration)
                p, y = motion.state(local)
                break
        positions.append(p)
        yaws.append(float(y))
        modes.append(mode)
    return np.array(positions), np.array(yaws), np.array(modes)
