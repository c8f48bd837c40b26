"""Object identities over a sequence: the objects the slots cover, associated frame to frame in the world frame.

Carried anchors (``pipeline/data/carried.py``) keep a slot on its cluster from one frame to the next, but a slot
index is not an object identity: an object that drops out of the target points for a few frames (occluded, beyond
``train.far_m``) loses its cluster to another object and comes back on another slot, and a merged group
(``pipeline/models/slots/grouping.py``) changes its parent slot when its clusters regroup. This tracker gives
every frame's objects a track id that survives both:

- **detection**: a slot that owns target points (aliases own none); its position is the mean of its points in
  the world frame (metres; the evaluation's world frame: the chained camera poses, no ground truth);
- **prediction**: a track's last position moved by its velocity (its last two detections, true time stamps;
  zero after one detection) to the frame's time;
- **association**: Hungarian matching of predictions to detections on distance; a pair farther apart than
  ``gate_m`` stays unmatched;
- **memory**: a track not detected for more than ``memory_s`` seconds ends; a detection left unmatched starts a
  new track.

Nothing is learned and no ground truth is read; the slots' own indices are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Track:
    """One object's track: id, last detected position (3,) and velocity (3,) in the world frame (m, m/s),
    time of the last detection (s)."""

    id: int
    position: np.ndarray
    velocity: np.ndarray
    time: float

    def predict(self, time: float) -> np.ndarray:
        return self.position + self.velocity * (time - self.time)

    def update(self, position: np.ndarray, time: float) -> None:
        self.velocity = (position - self.position) / max(time - self.time, 1e-6)
        self.position, self.time = position, time


def detections(points_world: np.ndarray, point_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slots owning points (D,) and their points' mean positions (D, 3): ``points_world`` (N, 3), ``point_slot`` (N,)."""
    slots, inverse = np.unique(point_slot, return_inverse=True)
    sums = np.zeros((len(slots), 3))
    np.add.at(sums, inverse, points_world)
    return slots, sums / np.bincount(inverse, minlength=len(slots))[:, None]


def track_slots(points_world: list[np.ndarray], point_slot: list[np.ndarray], times: np.ndarray,
                gate_m: float, memory_s: float) -> list[dict[int, int]]:
    """Per frame, {slot: track id} for the slots that own points (module docstring).

    Args:
        points_world: per frame (N_t, 3) target points in the world frame (metres).
        point_slot: per frame (N_t,) the slot owning each point.
        times: (T,) seconds, increasing.
        gate_m: largest distance (m) between a track's prediction and a detection it takes.
        memory_s: seconds a track survives without a detection.
    """
    tracks: list[Track] = []
    out: list[dict[int, int]] = []
    next_id = 0  # ids are never reused, ended tracks included
    for points, slot, time in zip(points_world, point_slot, np.asarray(times, dtype=float), strict=True):
        tracks = [t for t in tracks if time - t.time <= memory_s]
        slots, positions = detections(points, slot)
        taken: dict[int, int] = {}
        if len(tracks) and len(slots):
            predicted = np.stack([t.predict(time) for t in tracks])
            cost = np.linalg.norm(predicted[:, None] - positions[None], axis=-1)
            for i, j in zip(*linear_sum_assignment(cost), strict=True):
                if cost[i, j] <= gate_m:
                    tracks[i].update(positions[j], time)
                    taken[j] = tracks[i].id
        for j in range(len(slots)):
            if j not in taken:
                tracks.append(Track(next_id, positions[j], np.zeros(3), time))
                taken[j] = next_id
                next_id += 1
        out.append({int(slots[j]): taken[j] for j in range(len(slots))})
    return out


def relabel(point_slot: list[np.ndarray], tracks: list[dict[int, int]]) -> list[np.ndarray]:
    """Per frame (N_t,) the track id of each point's slot, from :func:`track_slots`'s ``tracks``."""
    out = []
    for slot_to_track, slot in zip(tracks, point_slot, strict=True):
        slots = np.array(sorted(slot_to_track), dtype=np.int64)
        ids = np.array([slot_to_track[s] for s in slots.tolist()], dtype=np.int64)
        out.append(ids[np.searchsorted(slots, slot)])
    return out
