"""Planned drives with manoeuvres: schedules, their integration into poses, and per-frame labels.

A drive is a list of :class:`Manoeuvre` segments, each a smooth control over ``duration`` seconds:

- speed ``v(u) = v_start + (v_end - v_start) * (3u^2 - 2u^3)`` with ``u = s / duration`` (smoothstep:
  the acceleration ``6u(1-u) dv / duration`` is continuous and 0 at both ends, peak ``1.5 dv / T``);
- heading rate (turns) ``omega(u) = peak * w(u)``, ``w`` a plateau with smoothstep ramps over the first
  and last quarter (``integral w du = 0.75``), so a turn of angle ``a`` has ``peak = a / (0.75 T)``;
- lateral lane offset (lane changes) ``l(u) = l_start + shift * (u - sin(2 pi u) / (2 pi))`` (a cycloid:
  the lateral acceleration ``2 pi shift / T^2 * sin(2 pi u)`` is 0 at both ends).

:func:`integrate` turns a schedule into a :class:`Drive` on a fine time grid (``SUBSTEPS`` per frame):
the lane-frame heading ``psi`` integrates the turn rate, the position integrates
``v fwd(psi) + l' right(psi)``, and the body yaw is ``psi + atan2(l', v)`` (the car points along its
velocity). World conventions as :mod:`pipeline.data.camera`: metres, x-z ground plane, yaw 0 faces +z,
yaw pi/2 faces +x, so in SYNTHIA's left-handed y-up world a *right* turn increases yaw and a *left*
turn decreases it; ``right(psi) = (cos psi, -sin psi)`` in (x, z), so a lane change to the right
increases the lane offset ``l``.

Labels (:data:`LABELS`): ``straight`` (constant speed, no turn), ``left`` / ``right`` (turning),
``stop`` (standing, speed 0), ``accelerate`` / ``decelerate`` (speed change, no turn),
``lane_change_left`` / ``lane_change_right``. A frame's label is that of the segment containing its time
(a frame on a boundary belongs to the segment that starts there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.io.synthia import FRAME_RATE_HZ

LABELS = ("straight", "left", "right", "stop", "accelerate", "decelerate", "lane_change_left", "lane_change_right")
MIRRORED = {"left": "right", "right": "left", "lane_change_left": "lane_change_right",
            "lane_change_right": "lane_change_left"}
SUBSTEPS = 40  # integration steps per frame (dt = 5 ms at 5 FPS)
LANE_WIDTH_M = 3.0


@dataclass(frozen=True)
class Manoeuvre:
    """One segment of a schedule: ``label`` for ``duration`` s, ending at speed ``v_end`` (m/s).

    ``turn_rad``: signed heading change (positive = right turn) for ``left``/``right``;
    ``shift_m``: signed lateral shift (positive = to the right) for lane changes.
    """

    label: str
    duration: float
    v_end: float
    turn_rad: float = 0.0
    shift_m: float = 0.0

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown manoeuvre {self.label!r}; expected one of {LABELS}")


@dataclass(frozen=True)
class Drive:
    """A schedule sampled on the fine grid ``times`` (T,) seconds from frame 0.

    ``xz`` (T, 2) position, ``yaw`` (T,) body heading (rad), ``road_yaw`` (T,) lane-frame heading,
    ``speed`` (T,) planned longitudinal speed (m/s), ``lane`` (T,) lateral offset from the start lane
    (metres, + right), ``segment`` (T,) index into ``schedule`` (the last one holds after it ends).
    """

    schedule: tuple[Manoeuvre, ...]
    times: np.ndarray
    xz: np.ndarray
    yaw: np.ndarray
    road_yaw: np.ndarray
    speed: np.ndarray
    lane: np.ndarray
    segment: np.ndarray

    def state(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) and yaw (...) at time(s) ``t`` (linear between grid samples, held after the end)."""
        t = np.asarray(t, dtype=np.float64)
        x = np.interp(t, self.times, self.xz[:, 0])
        z = np.interp(t, self.times, self.xz[:, 1])
        return np.stack([x, z], axis=-1), np.interp(t, self.times, self.yaw)

    def labels_at(self, t: np.ndarray | float) -> np.ndarray:
        """Planned manoeuvre label (object array of str) of the segment containing each time ``t``."""
        ends = np.cumsum([m.duration for m in self.schedule])
        index = np.minimum(np.searchsorted(ends, np.asarray(t, dtype=np.float64), side="right"), len(ends) - 1)
        return np.array([m.label for m in self.schedule], dtype=object)[index]

    def frame_labels(self, frames: int) -> np.ndarray:
        """Label of each of ``frames`` frames at :data:`FRAME_RATE_HZ`."""
        return self.labels_at(np.arange(frames) / FRAME_RATE_HZ)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    return u * u * (3.0 - 2.0 * u)


def _plateau(u: np.ndarray) -> np.ndarray:
    """Turn-rate shape on [0, 1]: smoothstep up over [0, 1/4], 1, smoothstep down over [3/4, 1]."""
    return np.minimum(_smoothstep(np.clip(4.0 * u, 0, 1)), _smoothstep(np.clip(4.0 * (1.0 - u), 0, 1)))


def integrate(schedule: list[Manoeuvre], v0: float, start_xz=(0.0, 0.0), yaw0: float = 0.0,
              duration: float | None = None) -> Drive:
    """Integrate ``schedule`` from speed ``v0`` at ``start_xz`` facing ``yaw0`` (midpoint rule on the grid).

    The grid spans ``duration`` seconds (default: the schedule's length); past the schedule's end the
    last segment's end state holds (stopped, or straight on at its end speed).
    """
    total = float(sum(m.duration for m in schedule))
    span = total if duration is None else float(duration)
    dt = 1.0 / (FRAME_RATE_HZ * SUBSTEPS)
    n = int(round(span / dt)) + 1
    times = np.arange(n) * dt
    ends = np.cumsum([m.duration for m in schedule])
    starts = ends - np.array([m.duration for m in schedule])
    segment = np.minimum(np.searchsorted(ends, times, side="right"), len(schedule) - 1)
    speed, rate, lane, lateral_speed = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    v, lane_start = float(v0), 0.0
    for i, m in enumerate(schedule):
        mask = segment == i
        u = np.clip((times[mask] - starts[i]) / m.duration, 0.0, 1.0)
        speed[mask] = v + (m.v_end - v) * _smoothstep(u)
        rate[mask] = m.turn_rad / (0.75 * m.duration) * _plateau(u)
        lane[mask] = lane_start + m.shift_m * (u - np.sin(2 * np.pi * u) / (2 * np.pi))
        lateral_speed[mask] = m.shift_m / m.duration * (1.0 - np.cos(2 * np.pi * u)) * (u < 1.0)
        v, lane_start = m.v_end, lane_start + m.shift_m
    # midpoint rule between grid samples
    mid_speed, mid_rate = (speed[1:] + speed[:-1]) / 2, (rate[1:] + rate[:-1]) / 2
    road_yaw = yaw0 + np.concatenate([[0.0], np.cumsum(mid_rate * dt)])
    mid_yaw = (road_yaw[1:] + road_yaw[:-1]) / 2
    d_lane = np.diff(lane)
    step_x = mid_speed * dt * np.sin(mid_yaw) + d_lane * np.cos(mid_yaw)
    step_z = mid_speed * dt * np.cos(mid_yaw) - d_lane * np.sin(mid_yaw)
    xz = np.stack([start_xz[0] + np.concatenate([[0.0], np.cumsum(step_x)]),
                   start_xz[1] + np.concatenate([[0.0], np.cumsum(step_z)])], axis=1)
    yaw = road_yaw + np.arctan2(lateral_speed, np.maximum(speed, 1e-3))
    return Drive(tuple(schedule), times, xz, yaw, road_yaw, speed, lane, segment)


def pair_manoeuvre(labels, t0: int, t1: int) -> str:
    """Label of the frame pair (``t0``, ``t1``): the one covering most of the interval between them.

    ``labels`` holds one label per frame, frame ``f`` covering [f, f + 1); the pair covers the frame
    intervals ``t0 .. t1 - 1`` (ordered either way; a pair of one frame is that frame's label). Ties go to
    the label that comes first in time.
    """
    lo, hi = min(t0, t1), max(t0, t1)
    if not 0 <= lo <= hi < len(labels):
        raise ValueError(f"frames {t0}, {t1} outside 0..{len(labels) - 1}")
    span = [str(x) for x in labels[lo:max(hi, lo + 1)]]
    counts = {label: span.count(label) for label in dict.fromkeys(span)}  # insertion order = time order
    return max(counts, key=counts.__getitem__)


def mirror_manoeuvre(label: str) -> str:
    """The label of the left-right mirrored motion (left <-> right, lane changes swap; others unchanged)."""
    if label not in LABELS:
        raise ValueError(f"unknown manoeuvre {label!r}; expected one of {LABELS}")
    return MIRRORED.get(label, label)


# --- planners -------------------------------------------------------------------------------------

ACCEL_MPS2 = (3.0, 3.5)  # peak longitudinal acceleration / deceleration of the rig's speed changes
TURN_SPEED_MPS = (3.5, 4.5)  # speed through turns
CRUISE_GAIN_MPS = (2.5, 3.0)  # cruise (lane change) speed above the turning speed


def _speed_change(rng: np.random.Generator, v_from: float, v_to: float, accel=ACCEL_MPS2) -> Manoeuvre:
    """Smoothstep speed change at a peak acceleration drawn from ``accel`` (m/s^2), at least 0.6 s."""
    peak = float(rng.uniform(*accel))
    duration = round(1.5 * abs(v_to - v_from) / peak, 2)
    return Manoeuvre("accelerate" if v_to > v_from else "decelerate", max(duration, 0.6), v_to)


def _turn(rng: np.random.Generator, direction: int, v: float) -> Manoeuvre:
    """A turn at an (oblique) intersection: 35-45 degrees at a peak rate of 0.6-0.7 rad/s."""
    angle = math.radians(rng.uniform(35.0, 45.0))
    duration = round(angle / (0.75 * rng.uniform(0.6, 0.7)), 2)
    return Manoeuvre("right" if direction > 0 else "left", duration, v, turn_rad=direction * angle)


def _lane_change(rng: np.random.Generator, direction: int, v: float) -> Manoeuvre:
    """One lane (3 m) in 2.0-2.2 s: peak lateral acceleration 2 pi 3 / T^2 <= 4.7 m/s^2."""
    return Manoeuvre("lane_change_right" if direction > 0 else "lane_change_left", round(float(rng.uniform(2.0, 2.2)), 2),
                     v, shift_m=direction * LANE_WIDTH_M)


def rig_tour(rng: np.random.Generator, turn_dir: int = 0) -> list[Manoeuvre]:
    """One cyclic city tour (14-19 s) holding every label once or twice, starting and ending at rest.

    First half (at most 7.9 s): stop -> accelerate to turning speed -> turn A -> straight -> accelerate to
    cruise. Second half (turn B starts within 6.7 s of it): lane change a -> straight -> lane change b
    (back) -> decelerate -> turn B (opposite of A) -> decelerate to rest. So an 8 s window from either
    half's start holds stop, accelerate, turn A, straight, or both lane changes, straight, decelerate,
    turn B: together every label (see :func:`plan_rig_drive`). ``turn_dir`` fixes turn A (+1 right,
    -1 left; 0 = random).
    """
    drawn, lane_dir = int(rng.choice([-1, 1])), int(rng.choice([-1, 1]))
    turn_dir = turn_dir or drawn
    v_turn = float(rng.uniform(*TURN_SPEED_MPS))
    v_cruise = v_turn + float(rng.uniform(*CRUISE_GAIN_MPS))
    v_turn2 = v_cruise - float(rng.uniform(*CRUISE_GAIN_MPS))
    return [
        Manoeuvre("stop", round(float(rng.uniform(1.0, 1.4)), 2), 0.0),
        _speed_change(rng, 0.0, v_turn),
        _turn(rng, turn_dir, v_turn),
        Manoeuvre("straight", round(float(rng.uniform(0.6, 1.0)), 2), v_turn),
        _speed_change(rng, v_turn, v_cruise),
        _lane_change(rng, lane_dir, v_cruise),
        Manoeuvre("straight", round(float(rng.uniform(0.6, 0.8)), 2), v_cruise),
        _lane_change(rng, -lane_dir, v_cruise),
        _speed_change(rng, v_cruise, v_turn2),
        _turn(rng, -turn_dir, v_turn2),
        _speed_change(rng, v_turn2, 0.0),
    ]


SECOND_HALF = 5


def plan_rig_drive(rng: np.random.Generator, duration: float, phase: int,
                   turn: int = 0) -> tuple[list[Manoeuvre], float, float]:
    """The camera rig's schedule for ``duration`` seconds: (schedule, start speed, start lane offset).

    Tours (:func:`rig_tour`) are chained until ``duration`` is covered, each one's first turn opposite to
    the previous turn (so any two consecutive turns go both ways). ``phase`` 0 starts at a tour's
    beginning (standing), phase 1 at its second half (cruising into lane change a), so two consecutive
    sequences of half a tour (the default 8 s) together see every label. The start lane offset is
    relative to the road centre (m, + right): the rig starts in the lane that lets lane change a happen
    (right-hand traffic: lanes at 1.5 m and 4.5 m right of the centre). ``turn`` (+1 right, -1 left,
    0 random) is the direction of the drive's first turn; alternating it together with ``phase`` makes
    consecutive 8 s sequences turn both ways.
    """
    first = rig_tour(rng, -turn if phase % 2 else turn)
    schedule = first[SECOND_HALF:] if phase % 2 else list(first)
    while sum(m.duration for m in schedule) < duration:  # the next tour first turns opposite to the last turn
        schedule += rig_tour(rng, -int(np.sign(next(m.turn_rad for m in reversed(schedule) if m.turn_rad))))
    v0 = first[SECOND_HALF - 1].v_end if phase % 2 else 0.0
    lane_a = first[SECOND_HALF].shift_m
    start_lane = 1.5 if lane_a > 0 else 4.5  # change right from the inner lane, left from the outer one
    return schedule, v0, start_lane


def plan_agent_drive(rng: np.random.Generator, duration: float, kind: str, v0: float,
                     lane_index: int = 0) -> list[Manoeuvre]:
    """Random schedule of another road user for ``duration`` s from speed ``v0``.

    Cars change speed, stop, turn and change between the inner (``lane_index`` 0) and outer (1) lane of
    their side (to the outer lane is a change to the right); pedestrians walk, speed up, slow down,
    stand and turn by 30-90 degrees in 1.2 s (speeds 0-2 m/s, speed changes within 1 s).
    """
    schedule, total, v = [], 0.0, v0
    while total < duration:
        if kind == "pedestrian":
            choice = rng.choice(["straight", "speed", "stop", "turn"], p=[0.4, 0.25, 0.15, 0.2])
            if choice == "stop" and v > 0:
                m = Manoeuvre("decelerate", 1.0, 0.0)
            elif choice == "stop":
                m = Manoeuvre("stop", round(float(rng.uniform(0.8, 2.0)), 2), 0.0)
            elif choice == "speed" or v == 0:
                target = float(rng.uniform(0.8, 1.8))
                m = Manoeuvre("accelerate" if target > v else "decelerate", 1.0, target)
            elif choice == "turn":
                sign = int(rng.choice([-1, 1]))
                m = Manoeuvre("right" if sign > 0 else "left", 1.2, v, turn_rad=sign * math.radians(rng.uniform(30, 90)))
            else:
                m = Manoeuvre("straight", round(float(rng.uniform(0.8, 2.0)), 2), v)
        else:
            choice = rng.choice(["straight", "speed", "stop", "lane", "turn"], p=[0.3, 0.25, 0.15, 0.15, 0.15])
            if choice == "stop" and v > 0:
                m = _speed_change(rng, v, 0.0, (2.0, 3.0))
            elif choice == "stop":
                m = Manoeuvre("stop", round(float(rng.uniform(0.8, 2.0)), 2), 0.0)
            elif choice == "speed" or v < 3.0:
                m = _speed_change(rng, v, float(rng.uniform(3.0, 9.0)), (2.0, 3.0))
            elif choice == "lane":
                m = _lane_change(rng, 1 - 2 * lane_index, v)
                lane_index = 1 - lane_index
            elif choice == "turn" and v <= 6.0:
                m = _turn(rng, int(rng.choice([-1, 1])), v)
            else:
                m = Manoeuvre("straight", round(float(rng.uniform(0.8, 2.0)), 2), v)
        schedule.append(m)
        total += m.duration
        v = m.v_end
    return schedule
