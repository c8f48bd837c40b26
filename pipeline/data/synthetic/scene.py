"""Procedural street scenes for the offline SYNTHIA-SEQS look-alike.

A scene is a road that follows the camera rig's planned drive (stops, speed changes, lane changes,
turns at intersections: :mod:`manoeuvres`), with cross streets at every turn, sidewalks, lane
markings, buildings along the roads, poles, parked cars, and cars and pedestrians that manoeuvre
too. Every object is a set of boxes with a known motion (:mod:`trajectories`), so the ground truth of
every frame (object poses, sizes, classes, camera poses, manoeuvres) is exact.

Road cross-section (metres from the centre line, right-hand traffic, the same on both sides): lanes
centred at 1.5 (inner) and 4.5 (outer), a parking strip at 6.8, the kerb at ``ROAD_HALF_WIDTH`` and
the sidewalk up to ``SIDEWALK_OUTER``.

World: SYNTHIA style, metres, y up, the ground plane at y = 0 (see :mod:`pipeline.data.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from pipeline.data.camera import heading_vector, right_vector
from pipeline.data.synthetic.manoeuvres import LANE_WIDTH_M, Drive, integrate, plan_agent_drive, plan_rig_drive
from pipeline.data.synthetic.trajectories import Motion, ScheduledMotion, StaticMotion
from pipeline.io.synthia import FRAME_RATE_HZ

ROAD_HALF_WIDTH = 7.8
SIDEWALK_OUTER = 10.8
LANES = (1.5, 4.5)
PARKING_OFFSET = 6.8
CLEARANCE_M = 4.0  # moving agents keep at least this distance from the rig in every frame
CLASS_ID = {"building": 2, "road": 3, "sidewalk": 4, "vegetation": 6, "pole": 7, "car": 8, "pedestrian": 10,
            "lanemarking": 12}


@dataclass(frozen=True)
class BoxPart:
    """An axis-aligned box in the object's local frame: x right, y up, z forward (metres).

    ``centre`` is relative to the object's ground reference point.
    """

    centre: tuple[float, float, float]
    size: tuple[float, float, float]


@dataclass(frozen=True)
class SceneObject:
    """An object: boxes in its local frame, a class, and a planar motion of its reference point."""

    object_id: int
    class_name: str
    instance_id: int  # GT/LABELS G value: unique for dynamic classes, 0 for static ones
    parts: tuple[BoxPart, ...]
    motion: Motion
    base_height: float = 0.0  # y of the reference point
    colour: tuple[int, int, int] = (128, 128, 128)

    @property
    def class_id(self) -> int:
        return CLASS_ID[self.class_name]

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest corner (3,) of the union of the parts in the local frame (computed once)."""
        lo = np.min([np.subtract(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
        hi = np.max([np.add(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
        return lo, hi

    @property
    def size(self) -> np.ndarray:
        """Full extents (x width, y height, z length) of the union of the parts, metres."""
        lo, hi = self._bounds
        return hi - lo

    @property
    def local_centre(self) -> np.ndarray:
        """Centre of the bounding box in the local frame."""
        lo, hi = self._bounds
        return (lo + hi) / 2

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """World position (3,) of the bounding-box centre and yaw (rad) at time ``t``."""
        (x, z), yaw = self.motion.state(t)
        ref = np.array([x, self.base_height, z])
        local = self.local_centre
        centre = ref + local[0] * right_vector(yaw) + local[1] * np.array([0, 1.0, 0]) + local[2] * heading_vector(yaw)
        return centre, float(yaw)


@dataclass
class Scene:
    """A full sequence: the rig's planned drive, the road network, static and dynamic objects.

    ``rig_lane`` is the rig's lane offset at frame 0 (metres right of the road centre); ``roads`` are
    centrelines (N_i, 2) as (x, z) every 0.25 m, the first one being the road the rig drives on
    (``centreline``) and the others the cross streets of its intersections.
    """

    seed: int
    frames: int
    rig_height: float
    rig_pitch: float
    rig: Drive
    rig_lane: float = 1.5
    objects: list[SceneObject] = field(default_factory=list)
    roads: list[np.ndarray] = field(default_factory=list)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.frames) / FRAME_RATE_HZ

    @property
    def centreline(self) -> np.ndarray:
        return self.roads[0]

    def rig_states(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions (T, 2) as (x, z), yaws (T,), manoeuvre labels (T,)) of the rig at each frame."""
        positions, yaws = self.rig.state(self.times)
        return positions, yaws, self.rig.frame_labels(self.frames)

    @cached_property
    def _ground_lookup(self) -> GroundLookup:
        """Every road sample (its point, unit tangent and arc length) and a KD-tree over them."""
        points, tangents, along = [], [], []
        for line in self.roads:
            tangent = line[np.minimum(np.arange(len(line)) + 1, len(line) - 1)] - line[np.maximum(np.arange(len(line)) - 1, 0)]
            tangents.append(tangent / np.linalg.norm(tangent, axis=1, keepdims=True))
            points.append(line)
            along.append(np.arange(len(line)) * 0.25)
        return GroundLookup(np.concatenate(points), np.concatenate(tangents), np.concatenate(along))

    def ground_class(self, xz: np.ndarray) -> np.ndarray:
        """Class id (N,) uint16 of ground points (N, 2) as (x, z) metres: road, dashed centre and lane lines,
        sidewalk or vegetation (see :meth:`GroundLookup.classify`)."""
        return self._ground_lookup.classify(xz)


class GroundLookup:
    """Road samples for classifying ground points by the nearest sample's road (every road's centreline
    sampled every 0.25 m of arc length).

    ``points`` (S, 2) as (x, z) metres, ``tangents`` (S, 2) unit tangents, ``arc`` (S,) arc length along the
    sample's own road (metres).
    """

    def __init__(self, points: np.ndarray, tangents: np.ndarray, arc: np.ndarray):
        self.tree = cKDTree(points)
        # One contiguous column each: gathering 1-D columns is much faster than gathering rows of (S, 2).
        self.x, self.z = np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
        self.tangent_x, self.tangent_z = np.ascontiguousarray(tangents[:, 0]), np.ascontiguousarray(tangents[:, 1])
        self.arc = arc

    def classify(self, xz: np.ndarray) -> np.ndarray:
        """Class id (N,) uint16 of ground points ``xz`` (N, 2) (x, z metres), by the nearest sample (KD-tree):
        the lateral distance ``|offset x tangent|`` from that sample's centreline picks road (< ``ROAD_HALF_WIDTH``),
        sidewalk (< ``SIDEWALK_OUTER``) or vegetation; road points within 0.12 m of the centre line or 0.08 m of a
        lane line (``LANE_WIDTH_M``) are lane markings where the arc length ``arc + offset . tangent`` modulo 6 m
        is below 3 m (3 m dashes, 3 m gaps)."""
        _, idx = self.tree.query(xz, workers=1)
        tangent_x, tangent_z = self.tangent_x[idx], self.tangent_z[idx]
        offset_x, offset_z = xz[:, 0] - self.x[idx], xz[:, 1] - self.z[idx]
        dist = np.abs(offset_x * tangent_z - offset_z * tangent_x)  # lateral distance
        classes = np.where(dist < ROAD_HALF_WIDTH, np.uint16(CLASS_ID["road"]),
                           np.where(dist < SIDEWALK_OUTER, np.uint16(CLASS_ID["sidewalk"]), np.uint16(CLASS_ID["vegetation"])))
        # Arc length only where a dash can be: near the centre line or a lane line.
        lined = np.flatnonzero((dist < 0.12) | (np.abs(dist - LANE_WIDTH_M) < 0.08))
        along = self.arc[idx[lined]] + (offset_x[lined] * tangent_x[lined] + offset_z[lined] * tangent_z[lined])
        classes[lined[(along % 6.0) < 3.0]] = CLASS_ID["lanemarking"]
        return classes


def _resample(dense: np.ndarray) -> np.ndarray:
    """A polyline (N, 2) resampled every 0.25 m of arc length."""
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    samples = np.arange(0, arc[-1], 0.25)
    return np.stack([np.interp(samples, arc, dense[:, 0]), np.interp(samples, arc, dense[:, 1])], axis=1)


def _ray(point: np.ndarray, yaw: float, start_m: float, stop_m: float) -> np.ndarray:
    """Points (N, 2) from ``point`` along heading ``yaw`` at distances start_m..stop_m every 0.25 m."""
    steps = np.arange(start_m, stop_m, 0.25 if stop_m > start_m else -0.25)
    return point[None] + np.outer(steps, [math.sin(yaw), math.cos(yaw)])


def _road_centre(drive: Drive, start_lane: float) -> np.ndarray:
    """Road-centre point (T, 2) abreast of the rig at every grid time: the rig's position minus its
    lane offset along the lane frame's right vector."""
    lane = start_lane + drive.lane
    return drive.xz - lane[:, None] * np.stack([np.cos(drive.road_yaw), -np.sin(drive.road_yaw)], axis=1)


def _roads(drive: Drive, start_lane: float, duration: float) -> list[np.ndarray]:
    """The rig's road (40 m behind, the drive, 120 m ahead) and, at every turn the rig begins before
    ``duration``, the straight continuation of the old road and the backward extension of the new one
    (100 m each), so that each turn happens at an intersection."""
    centre = _road_centre(drive, start_lane)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(centre, axis=0), axis=1) > 1e-6])
    pos, yaw = centre[keep], drive.road_yaw[keep]
    main = _resample(np.concatenate([_ray(pos[0], float(yaw[0]), -40.0, 0.0), pos,
                                     _ray(pos[-1], float(yaw[-1]), 0.25, 120.0)]))
    roads = [main]
    seg_start = 0.0
    for m in drive.schedule:
        if m.label in ("left", "right") and seg_start < duration:
            i0 = int(np.searchsorted(drive.times, seg_start))
            i1 = min(int(np.searchsorted(drive.times, seg_start + m.duration)), len(drive.times) - 1)
            roads.append(_ray(centre[i0], float(drive.road_yaw[i0]), 0.0, 100.0))
            roads.append(_ray(centre[i1], float(drive.road_yaw[i1]), 0.0, -100.0))
        seg_start += m.duration
    return roads


def _frame_at(centreline: np.ndarray, index: int) -> tuple[np.ndarray, float]:
    """Point (x, z) and heading yaw of the centreline at sample ``index``."""
    a = centreline[max(index - 4, 0)]
    b = centreline[min(index + 4, len(centreline) - 1)]
    return centreline[index], math.atan2(b[0] - a[0], b[1] - a[1])


def _offset(point: np.ndarray, yaw: float, lateral: float) -> tuple[float, float]:
    right = right_vector(yaw)
    return float(point[0] + lateral * right[0]), float(point[1] + lateral * right[2])


def _car(object_id: int, instance_id: int, motion: Motion, rng: np.random.Generator) -> SceneObject:
    width, length = rng.uniform(1.7, 2.0), rng.uniform(3.9, 4.8)
    body_h, cabin_h = rng.uniform(0.9, 1.1), rng.uniform(0.5, 0.7)
    parts = (
        BoxPart((0.0, 0.25 + body_h / 2, 0.0), (width, body_h, length)),
        BoxPart((0.0, 0.25 + body_h + cabin_h / 2, -0.2), (width * 0.9, cabin_h, length * 0.5)),
    )
    colour = tuple(int(c) for c in rng.integers(30, 230, size=3))
    return SceneObject(object_id, "car", instance_id, parts, motion, colour=colour)


def _pedestrian(object_id: int, instance_id: int, motion: Motion, rng: np.random.Generator) -> SceneObject:
    height = rng.uniform(1.6, 1.9)
    parts = (BoxPart((0.0, height * 0.45, 0.0), (0.5, height * 0.9, 0.35)),
             BoxPart((0.0, height * 0.95, 0.0), (0.25, height * 0.1, 0.25)))
    colour = tuple(int(c) for c in rng.integers(40, 200, size=3))
    return SceneObject(object_id, "pedestrian", instance_id, parts, motion, colour=colour)


def _agent_motion(rng: np.random.Generator, kind: str, pos: tuple[float, float], heading: float, v0: float,
                  duration: float, lane_index: int = 0) -> ScheduledMotion:
    """A manoeuvring car or pedestrian starting at ``pos`` facing ``heading`` at speed ``v0``."""
    schedule = plan_agent_drive(rng, duration, kind, v0, lane_index)
    return ScheduledMotion(integrate(schedule, v0, pos, heading, duration=duration))


def _clear_of_rig(motion, rig_xz: np.ndarray, times: np.ndarray) -> bool:
    """True if the agent stays at least :data:`CLEARANCE_M` from the rig at every frame time."""
    xz, _ = motion.state(times)
    return bool(np.min(np.linalg.norm(xz - rig_xz, axis=1)) >= CLEARANCE_M)


def build_scene(seed: int, frames: int, phase: int = 0, turn: int = 0) -> Scene:
    """A deterministic random street scene for ``frames`` frames at 5 FPS.

    ``phase`` picks where the rig's tour starts and ``turn`` the direction of its first turn (+1 right,
    -1 left, 0 random; :func:`manoeuvres.plan_rig_drive`): the generator alternates both between
    consecutive sequences.
    """
    rng = np.random.default_rng(seed)
    duration = frames / FRAME_RATE_HZ
    schedule, v0, start_lane = plan_rig_drive(rng, duration, phase, turn)
    drive = integrate(schedule, v0, (start_lane, 0.0), 0.0, duration=max(duration, sum(m.duration for m in schedule)))
    scene = Scene(seed=seed, frames=frames, rig_height=float(rng.uniform(1.6, 2.6)),
                  rig_pitch=float(-math.radians(rng.uniform(2.0, 8.0))), rig=drive, rig_lane=start_lane)
    scene.roads = _roads(drive, start_lane, duration)
    line = scene.centreline
    tree = cKDTree(np.concatenate(scene.roads))
    objects: list[SceneObject] = []
    next_id, next_instance = 1, 1

    def add(obj: SceneObject) -> None:
        nonlocal next_id
        objects.append(obj)
        next_id += 1

    # Buildings: boxes along both sides of every road, rejected where they would intrude on a road or sidewalk.
    for road in scene.roads:
        for side in (-1, 1):
            index = 0
            while index < len(road):
                width = rng.uniform(8, 20)
                point, yaw = _frame_at(road, index)
                depth, height = rng.uniform(8, 15), rng.uniform(6, 30)
                lateral = side * (SIDEWALK_OUTER + 1.0 + depth / 2 + rng.uniform(0, 4))
                centre = _offset(point, yaw, lateral)
                right, ahead = right_vector(yaw), heading_vector(yaw)
                corners = [(centre[0] + dx * right[0] + dz * ahead[0], centre[1] + dx * right[2] + dz * ahead[2])
                           for dx in np.linspace(-depth / 2, depth / 2, 4) for dz in np.linspace(-width / 2, width / 2, 6)]
                if tree.query(np.array(corners))[0].min() > SIDEWALK_OUTER + 0.5:
                    part = BoxPart((0.0, height / 2, 0.0), (depth, height, width))
                    tone = int(rng.integers(90, 200))
                    colour = (tone, int(tone * rng.uniform(0.7, 1.0)), int(tone * rng.uniform(0.6, 0.9)))
                    add(SceneObject(next_id, "building", 0, (part,), StaticMotion(centre, yaw), colour=colour))
                index += int((width + rng.uniform(2, 8)) / 0.25)
    # Poles on the sidewalk.
    for index in range(int(rng.uniform(10, 30) / 0.25), len(line), int(rng.uniform(60, 100) / 0.25)):
        point, yaw = _frame_at(line, index)
        side = rng.choice([-1, 1])
        pos = _offset(point, yaw, side * (ROAD_HALF_WIDTH + 0.8))
        height = rng.uniform(3.0, 6.0)
        part = BoxPart((0.0, height / 2, 0.0), (0.3, height, 0.3))
        add(SceneObject(next_id, "pole", 0, (part,), StaticMotion(pos, yaw), colour=(150, 150, 140)))

    # Dynamic things near the rig's path, mostly ahead of it; moving ones keep clear of the rig.
    rig_xz, _ = drive.state(scene.times)
    start_index = int(cKDTree(line).query(np.array([0.0, 0.0]))[1])
    span = int(min(len(line) - start_index - 1, 70 / 0.25))
    agent_time = duration + 1.0

    def ahead_point(lo_m: float, hi_m: float):
        index = start_index + int(rng.uniform(lo_m, min(hi_m, span * 0.25)) / 0.25)
        return _frame_at(line, min(index, len(line) - 1))

    for _ in range(int(rng.integers(3, 7))):  # parked cars
        point, yaw = ahead_point(6, 70)
        pos = _offset(point, yaw, rng.choice([-1, 1]) * PARKING_OFFSET)
        add(_car(next_id, next_instance, StaticMotion(pos, yaw), rng))
        next_instance += 1
    for _ in range(int(rng.integers(2, 5))):  # moving cars: either direction, either lane
        for _attempt in range(5):
            point, yaw = ahead_point(10, 60)
            direction, lane_index = int(rng.choice([-1, 1])), int(rng.integers(0, 2))
            heading = yaw if direction > 0 else yaw + math.pi  # right-hand traffic
            pos = _offset(point, yaw, direction * LANES[lane_index])
            motion = _agent_motion(rng, "car", pos, heading, float(rng.uniform(3.0, 9.0)), agent_time, lane_index)
            if _clear_of_rig(motion, rig_xz, scene.times):
                add(_car(next_id, next_instance, motion, rng))
                next_instance += 1
                break
    for _ in range(int(rng.integers(2, 6))):  # pedestrians: walk along the sidewalk, cross, or stand
        for _attempt in range(5):
            point, yaw = ahead_point(5, 45)
            mode = rng.choice(["along", "cross", "stand"], p=[0.5, 0.3, 0.2])
            if mode == "cross":
                side = rng.choice([-1, 1])
                pos = _offset(point, yaw, side * (ROAD_HALF_WIDTH + 1.0))
                heading, v0 = yaw - side * math.pi / 2, float(rng.uniform(1.0, 1.6))
            else:
                pos = _offset(point, yaw, rng.choice([-1, 1]) * (ROAD_HALF_WIDTH + rng.uniform(1.2, 2.6)))
                heading = yaw + (0 if rng.random() < 0.5 else math.pi)
                v0 = 0.0 if mode == "stand" else float(rng.uniform(0.8, 1.6))
            motion = _agent_motion(rng, "pedestrian", pos, heading, v0, agent_time)
            if _clear_of_rig(motion, rig_xz, scene.times):
                add(_pedestrian(next_id, next_instance, motion, rng))
                next_instance += 1
                break
    scene.objects = objects
    return scene
