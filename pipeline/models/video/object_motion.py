"""Velocities of the objects the slots belong to, from the object tracks (world frame, metres, seconds).

A slot's own centre is a poor source of velocity: a slot covers a part of an object and its share of the object
changes from frame to frame, and carried slots move to other objects (see
:mod:`pipeline.models.video.object_tracks`). On the development world (``data.seed=5``, all 8 sequences, every
window of 4 context frames; the forecast = the last frame's points moved, scored by the mean distance from the
target frame's points), moving each slot's points by the slot's own least-squares velocity was 41 % worse than
not moving them at Δ = 5 frames. The objects are steadier: the tracks group a frame's touching
slots into objects and follow them, and an object's velocity is the least-squares slope of its mean point over
the context frames (those where it has at least ``MIN_POINTS`` points) against their time stamps. The RMS
residual of that line tells a steady motion from a mean that wanders because the visible part of a parked car
changes as the camera drives by.

**Gate**: a velocity is kept only where the object moves at least ``min_speed_mps`` and the residual is at most
``max_residual_m`` (else zero: the object is treated as static). Chosen on the development world (the same
measure), against not moving at Δ = 5 / 10 frames: every object moved by its whole velocity, level / 20 % worse;
by half of it, 9 % / 6 % better; half of the gated velocity (1 m/s, 0.4 m), 11 % / 8 % better (0.1 m: 4 % / 3 %).
That a fraction of the velocity does best is for the forecaster to learn (its guesses scale it).

Every slot of an object gets the object's velocity. A slot that owns no point in the last context frame (an
alias, or one without points) has no object: zero velocity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from pipeline.geometry.mesh_owner import nearest_slot
from pipeline.models.video.object_tracks import line_fit, relabel, track_slots

MIN_POINTS = 5  # an object's mean point in a frame needs this many points
MIN_FRAMES = 3  # context frames with a mean an object needs for a velocity (two give no residual)


def point_owners(points: np.ndarray, verts: torch.Tensor | np.ndarray, faces: torch.Tensor) -> np.ndarray:
    """Slot owning each point (N,): the slot with the nearest surface (exact; an alias slot owns none)."""
    return nearest_slot(points, np.asarray(verts), faces)[1]


def world_points(points: list[np.ndarray], r_wc, t_wc) -> list[np.ndarray]:
    """Each frame's points (N_t, 3) moved from its camera frame to the world frame by ``r_wc`` (T, 3, 3), ``t_wc``
    (T, 3) (world_from_camera, metres; arrays or CPU tensors), in float64."""
    r, t = np.asarray(r_wc, dtype=np.float64), np.asarray(t_wc, dtype=np.float64)
    return [p @ r[i].T + t[i] for i, p in enumerate(points)]


@dataclass
class SequenceObjects:
    """Per frame of a sequence: each object track's mean point (world frame, metres; objects with at least
    ``MIN_POINTS`` points) and the track of each slot that owns points."""

    means: list[dict[int, np.ndarray]]
    slot_track: list[dict[int, int]]
    time: np.ndarray  # (T,) seconds

    @classmethod
    def of(cls, points_world: list[np.ndarray], point_slot: list[np.ndarray], slot_track: list[dict[int, int]],
           time) -> "SequenceObjects":
        """From per-frame world points (N_t, 3), their slots (N_t,) and :func:`object_tracks.track_slots`'s maps."""
        means = []
        for points, slot, tracks in zip(points_world, point_slot, slot_track, strict=True):
            (track_of_point,) = relabel([slot], [tracks])
            ids, inverse, counts = np.unique(track_of_point, return_inverse=True, return_counts=True)
            sums = np.zeros((len(ids), 3))
            np.add.at(sums, inverse, points)
            means.append({int(i): sums[j] / counts[j] for j, i in enumerate(ids) if counts[j] >= MIN_POINTS})
        return cls(means, slot_track, np.asarray(time, dtype=np.float64))

    def velocities(self, frames: list[int], slots: int) -> tuple[np.ndarray, np.ndarray]:
        """Per slot of the last of ``frames`` (context frame positions, increasing): its object's velocity (K, 3)
        m/s, fitted over ``frames``, and the fit's RMS residual (K,) metres (inf: no object or too few frames)."""
        velocity, residual = np.zeros((slots, 3)), np.full(slots, np.inf)
        fitted: dict[int, tuple[np.ndarray, float]] = {}
        for slot, track in self.slot_track[frames[-1]].items():
            if track not in fitted:
                seen = [f for f in frames if track in self.means[f]]
                if len(seen) < MIN_FRAMES:
                    continue
                fitted[track] = line_fit(self.time[seen], np.stack([self.means[f][track] for f in seen]))
            velocity[slot], residual[slot] = fitted[track]
        return velocity, residual


def gated(velocity: np.ndarray, residual: np.ndarray, min_speed_mps: float, max_residual_m: float) -> np.ndarray:
    """(K, 3) ``velocity`` where the speed is >= ``min_speed_mps`` and ``residual`` <= ``max_residual_m``, else 0."""
    keep = (np.linalg.norm(velocity, axis=-1) >= min_speed_mps) & (residual <= max_residual_m)
    return np.where(keep[:, None], velocity, 0.0)


class TrackSettings(Protocol):
    """The object trackers' settings (``video.track_*``; :func:`object_tracks.track_slots`)."""

    @property
    def track_gate_m(self) -> float: ...
    @property
    def track_memory_s(self) -> float: ...
    @property
    def track_touch_m(self) -> float: ...
    @property
    def track_established_m(self) -> float: ...
    @property
    def track_split_mps(self) -> float: ...
    @property
    def track_max_extent_m(self) -> float: ...


def track_objects(points_world: list[np.ndarray], point_slot: list[np.ndarray], time,
                  settings: TrackSettings) -> tuple[list[dict[int, int]], SequenceObjects]:
    """The object tracks of a sequence (per frame {slot: track id}) and its :class:`SequenceObjects`, from per-frame
    world points (N_t, 3) and their owning slots (N_t,)."""
    tracks = track_slots(points_world, point_slot, time, settings.track_gate_m, settings.track_memory_s,
                         settings.track_touch_m, settings.track_established_m, settings.track_split_mps,
                         settings.track_max_extent_m)
    return tracks, SequenceObjects.of(points_world, point_slot, tracks, time)
