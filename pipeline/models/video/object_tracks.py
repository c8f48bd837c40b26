"""Object identities over a sequence: the objects the slots cover, associated frame to frame in the world frame.

Carried anchors (``pipeline/data/carried.py``) keep a slot on its cluster from one frame to the next, but a slot
index is not an object identity: an object that drops out of the target points for a few frames (occluded, beyond
``train.far_m``) loses its cluster to another object and comes back on another slot, and a merged group
(``pipeline/models/slots/grouping.py``) changes its parent slot when its clusters regroup. This tracker gives
every frame's objects a track id that survives both:

- **objects from slots**: slots whose points touch (two points of different slots closer than ``touch_m``) are
  one object; the connected groups of touching slots are the frame's objects. A slot covers a part of an object
  (a long car is cut into two or three slots, and the parts' shares of it change from frame to frame), so an
  identity per slot flips between the parts. With ``split_mps`` > 0, slots that belonged to two different tracks
  in the previous frame whose velocities (:meth:`Track.steady_velocity`) differ by more than ``split_mps`` are
  kept apart even when they touch: without it, a moving car that comes within ``touch_m`` of a parked one (or of a
  chain of touching slots that covers most of the frame) joins it, and the object's mean point, now mostly the
  static scene's, loses the car's motion. Touching pairs are joined nearest first, and a join that would put two
  such slots into one object is skipped (without kept-apart pairs: the connected groups). With ``max_extent_m``
  > 0, a join is also skipped when the joined object's bounding box would have a diagonal longer than that: the
  chained touch otherwise makes one object of a row of parked cars and facades, up to the whole frame;
- **detection**: an object that owns target points (aliases own none); its position is the mean of its points in
  the world frame (metres; the evaluation's world frame: the chained camera poses, no ground truth);
- **prediction**: a track's last position moved by its velocity (its last two detections, true time stamps;
  zero after one detection) to the frame's time;
- **association**: Hungarian matching of tracks to detections on distance, from the track's prediction or from
  its last position, whichever is nearer (when part of a static object comes into view or is hidden, its mean
  position jumps for a frame and the velocity from that jump overshoots); a pair farther apart than ``gate_m``
  stays unmatched, and every such pair costs the same (``BEYOND_GATE``), so the matching never trades a close pair
  for a far one that is then rejected (with raw distances it did: a far detection "took" an established track at a
  distance of 27 m because the far distances made that 1 cm cheaper overall, and the near object went to a newer
  track). An established track wins a close contest: its cost is the distance minus ``established_m``
  times the share of ``ESTABLISHED_DETECTIONS`` detections it has had (the gate still applies to the distance).
  Without it, two live tracks near one object (a new track born while the old one was briefly lost) took the
  object in turns, one switch per frame;
- **memory**: a track not detected for more than ``memory_s`` seconds ends; a detection left unmatched starts a
  new track.

Nothing is learned and no ground truth is read; the slots' own indices are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

STEADY_DETECTIONS = 4  # a track's velocity for keeping objects apart: line fit over its last detections (up to this)
ESTABLISHED_DETECTIONS = 10  # detections after which a track gets the whole ``established_m`` bonus (2 s at 5 FPS)
MIN_STEADY = 3  # detections a track needs for a steady velocity (two give one difference, no check on it)
BEYOND_GATE = 1e6  # association cost of a pair farther apart than the gate: one value for all, so never preferred


@dataclass
class Track:
    """One object's track: id, last detected position (3,) and velocity (3,) in the world frame (m, m/s),
    time of the last detection (s), number of detections so far, and the last ``STEADY_DETECTIONS`` detections'
    times (s) and positions (3,)."""

    id: int
    position: np.ndarray
    velocity: np.ndarray
    time: float
    detections: int = 1
    history: list[tuple[float, np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.history = [(self.time, self.position)]

    def predict(self, time: float) -> np.ndarray:
        return self.position + self.velocity * (time - self.time)

    def distance(self, positions: np.ndarray, time: float) -> np.ndarray:
        """(D,) metres from each of ``positions`` (D, 3) to the nearer of the prediction at ``time`` and the last
        position."""
        return np.minimum(np.linalg.norm(positions - self.predict(time), axis=-1),
                          np.linalg.norm(positions - self.position, axis=-1))

    def update(self, position: np.ndarray, time: float) -> None:
        self.velocity = (position - self.position) / max(time - self.time, 1e-6)
        self.position, self.time = position, time
        self.detections += 1
        self.history = [*self.history, (time, position)][-STEADY_DETECTIONS:]

    def steady_velocity(self) -> np.ndarray | None:
        """Velocity (3,) m/s, the least-squares slope over the last ``STEADY_DETECTIONS`` detections (less noisy than
        ``velocity``, which the last two give); None before ``MIN_STEADY`` detections."""
        if len(self.history) < MIN_STEADY:
            return None
        time, position = zip(*self.history)
        return line_fit(np.array(time), np.stack(position))[0]

    def established(self) -> float:
        """Share in [0, 1] of ``ESTABLISHED_DETECTIONS`` detections this track has had."""
        return min(self.detections, ESTABLISHED_DETECTIONS) / ESTABLISHED_DETECTIONS


def detections(points_world: np.ndarray, point_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slots owning points (D,) and their points' mean positions (D, 3): ``points_world`` (N, 3), ``point_slot`` (N,)."""
    slots, inverse = np.unique(point_slot, return_inverse=True)
    sums = np.zeros((len(slots), 3))
    np.add.at(sums, inverse, points_world)
    return slots, sums / np.bincount(inverse, minlength=len(slots))[:, None]


def line_fit(time: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares line through positions (n, 3) at times (n,): slope (3,) per second, RMS residual (metres)."""
    dt = time - time.mean()
    dx = position - position.mean(0)
    slope = (dt[:, None] * dx).sum(0) / max(float(dt @ dt), 1e-12)
    return slope, float(np.sqrt(((dx - dt[:, None] * slope) ** 2).sum(1).mean()))


def touching_objects(points: np.ndarray, point_slot: np.ndarray, touch_m: float,
                     apart: np.ndarray | None = None, max_extent_m: float = 0.0) -> np.ndarray:
    """Per point (N,), its object: the smallest slot index of the group of slots connected to its slot by
    touching (some point of one within ``touch_m`` metres of some point of the other, chained: a touches b,
    b touches c -> one object). ``points`` (N, 3) metres (any frame: distances only), ``point_slot`` (N,);
    ``touch_m`` <= 0: every slot is its own object.

    ``apart`` (S, S) bool over the sorted distinct slots of ``point_slot``, symmetric: pairs that must not end up in
    one object. Touching pairs are joined in order of their closest points' distance, and a join that would put
    such a pair together is skipped (None: no such pair), as is one whose object's axis-aligned bounding box would
    have a diagonal longer than ``max_extent_m`` metres (0: no bound). Neither: the connected groups."""
    slots, inverse = np.unique(point_slot, return_inverse=True)
    if touch_m <= 0 or len(slots) < 2:
        return np.asarray(point_slot).copy()
    members = [points[inverse == i] for i in range(len(slots))]
    touching = []  # (distance of the closest points, i, j), i < j
    for i in range(len(slots) - 1):
        tree = cKDTree(members[i])
        for j in range(i + 1, len(slots)):
            distance, _ = tree.query(members[j], distance_upper_bound=touch_m)  # inf beyond the bound
            if np.any(distance <= touch_m):
                touching.append((float(distance.min()), i, j))
    group = np.arange(len(slots))  # each slot's group: the smallest slot position in it
    low = np.stack([m.min(0) for m in members])  # (S, 3) bounding box of each group, kept at its smallest position
    high = np.stack([m.max(0) for m in members])
    for _, i, j in sorted(touching):
        a, b = group[i], group[j]
        if a == b or (apart is not None and apart[np.ix_(group == a, group == b)].any()):
            continue
        box_low, box_high = np.minimum(low[a], low[b]), np.maximum(high[a], high[b])
        if max_extent_m > 0 and np.linalg.norm(box_high - box_low) > max_extent_m:
            continue
        kept, gone = min(a, b), max(a, b)
        group[group == gone] = kept
        low[kept], high[kept] = box_low, box_high
    return slots[group][inverse]


def apart_slots(slots: np.ndarray, previous: dict[int, int], tracks: dict[int, Track], split_mps: float) -> np.ndarray:
    """(S, S) bool over ``slots`` (sorted): pairs whose previous-frame tracks (``previous``: {slot: track id} of the
    previous frame; ``tracks``: the live tracks by id) differ and have steady velocities more than ``split_mps``
    m/s apart."""
    velocity = []
    for slot in slots.tolist():
        track = tracks.get(previous.get(slot, -1))
        steady = track.steady_velocity() if track is not None else None
        velocity.append((track.id, steady) if steady is not None else None)
    apart = np.zeros((len(slots), len(slots)), dtype=bool)
    for i, a in enumerate(velocity):
        for j, b in enumerate(velocity[:i]):
            if a is not None and b is not None and a[0] != b[0]:
                apart[i, j] = apart[j, i] = np.linalg.norm(a[1] - b[1]) > split_mps
    return apart


def track_slots(points_world: list[np.ndarray], point_slot: list[np.ndarray], times: np.ndarray,
                gate_m: float, memory_s: float, touch_m: float = 0.0,
                established_m: float = 0.0, split_mps: float = 0.0,
                max_extent_m: float = 0.0) -> list[dict[int, int]]:
    """Per frame, {slot: track id} for the slots that own points; the slots of one object (touching slots,
    :func:`touching_objects`) share its track id (module docstring).

    Args:
        points_world: per frame (N_t, 3) target points in the world frame (metres).
        point_slot: per frame (N_t,) the slot owning each point.
        times: (T,) seconds, increasing.
        gate_m: largest distance (m) between a track (its prediction or last position) and a detection it takes.
        memory_s: seconds a track survives without a detection.
        touch_m: slots with points closer than this (m) are one object; 0: one object per slot.
        established_m: metres of association cost an established track saves (module docstring); 0: none.
        split_mps: touching slots whose previous tracks' velocities differ by more than this (m/s) stay apart
            (module docstring); 0: off.
        max_extent_m: largest bounding-box diagonal (m) of an object joined from touching slots; 0: no bound.
    """
    tracks: list[Track] = []
    out: list[dict[int, int]] = []
    next_id = 0  # ids are never reused, ended tracks included
    for points, slot, time in zip(points_world, point_slot, np.asarray(times, dtype=float), strict=True):
        tracks = [t for t in tracks if time - t.time <= memory_s]
        apart = None
        if split_mps > 0 and out:
            apart = apart_slots(np.unique(slot), out[-1], {t.id: t for t in tracks}, split_mps)
        objects = touching_objects(points, slot, touch_m, apart, max_extent_m)
        found, positions = detections(points, objects)
        taken: dict[int, int] = {}
        if len(tracks) and len(found):
            distance = np.stack([t.distance(positions, time) for t in tracks])
            bonus = established_m * np.array([t.established() for t in tracks])
            cost = np.where(distance <= gate_m, distance - bonus[:, None], BEYOND_GATE)
            for i, j in zip(*linear_sum_assignment(cost), strict=True):
                if distance[i, j] <= gate_m:
                    tracks[i].update(positions[j], time)
                    taken[j] = tracks[i].id
        for j in range(len(found)):
            if j not in taken:
                tracks.append(Track(next_id, positions[j], np.zeros(3), time))
                taken[j] = next_id
                next_id += 1
        object_track = {int(found[j]): taken[j] for j in range(len(found))}
        owners, first = np.unique(slot, return_index=True)
        out.append({int(s): object_track[int(objects[i])] for s, i in zip(owners, first, strict=True)})
    return out


def relabel(point_slot: list[np.ndarray], tracks: list[dict[int, int]]) -> list[np.ndarray]:
    """Per frame (N_t,) the track id of each point's slot, from :func:`track_slots`'s ``tracks``."""
    out = []
    for slot_to_track, slot in zip(tracks, point_slot, strict=True):
        slots = np.array(sorted(slot_to_track), dtype=np.int64)
        ids = np.array([slot_to_track[s] for s in slots.tolist()], dtype=np.int64)
        out.append(ids[np.searchsorted(slots, slot)])
    return out
