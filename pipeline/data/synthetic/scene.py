"""Procedural street scenes for the offline SYNTHIA-SEQS look-alike.

A scene is a road that follows the camera rig's drive (forward, turns, stops), with sidewalks,
lane markings, buildings along both sides, poles, parked and moving cars and pedestrians. Every
object is a set of boxes with a closed-form motion (:mod:`trajectories`), so the ground truth of
every frame (object poses, sizes, classes, camera poses) is exact.

World: SYNTHIA style, metres, y up, the ground plane at y = 0 (see :mod:`pipeline.data.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from pipeline.data.camera import heading_vector, right_vector
from pipeline.data.synthetic.trajectories import PlanarMotion, RigSegment, integrate_rig
from pipeline.io.synthia import FRAME_RATE_HZ

ROAD_HALF_WIDTH = 5.0
SIDEWALK_OUTER = 8.0
LANE_OFFSET = 1.8
PARKING_OFFSET = 3.9
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
    motion: PlanarMotion
    base_height: float = 0.0  # y of the reference point
    colour: tuple[int, int, int] = (128, 128, 128)

    @property
    def class_id(self) -> int:
        return CLASS_ID[self.class_name]

    @property
    def size(self) -> np.ndarray:
        """Full extents (x width, y height, z length) of the union of the parts, metres."""
        lo = np.min([np.subtract(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
        hi = np.max([np.add(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
        return hi - lo

    @property
    def local_centre(self) -> np.ndarray:
        """Centre of the bounding box in the local frame."""
        lo = np.min([np.subtract(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
        hi = np.max([np.add(p.centre, np.divide(p.size, 2)) for p in self.parts], axis=0)
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
    """A full sequence: rig drive, road centreline, static and dynamic objects."""

    seed: int
    frames: int
    rig_height: float
    rig_pitch: float
    rig_segments: list[RigSegment]
    objects: list[SceneObject] = field(default_factory=list)
    centreline: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (N, 2) x, z every 0.25 m

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.frames) / FRAME_RATE_HZ

    def rig_states(self):
        """(positions (T, 2), yaws (T,), modes (T,)) of the rig at each frame."""
        return integrate_rig(self.rig_segments, self.times)

    def ground_class(self, xz: np.ndarray) -> np.ndarray:
        """Class id of ground points (N, 2): road, dashed centre lane marking, sidewalk or vegetation."""
        line = self.centreline
        _, idx = cKDTree(line).query(xz, workers=1)
        tangent = line[np.minimum(idx + 1, len(line) - 1)] - line[np.maximum(idx - 1, 0)]
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        offset = xz - line[idx]
        along = idx * 0.25 + np.sum(offset * tangent, axis=1)
        dist = np.abs(offset[:, 0] * tangent[:, 1] - offset[:, 1] * tangent[:, 0])  # lateral distance
        classes = np.full(len(xz), CLASS_ID["vegetation"], dtype=np.uint16)
        classes[dist < SIDEWALK_OUTER] = CLASS_ID["sidewalk"]
        classes[dist < ROAD_HALF_WIDTH] = CLASS_ID["road"]
        dashes = (dist < 0.12) & ((along % 6.0) < 3.0)
        classes[dashes] = CLASS_ID["lanemarking"]
        return classes


def _rig_drive(rng: np.random.Generator, duration: float) -> list[RigSegment]:
    """Random drive: forward / turn / stop segments covering ``duration`` seconds."""
    segments, total = [], 0.0
    while total < duration:
        mode = rng.choice(["forward", "turn", "stop"], p=[0.5, 0.3, 0.2]) if segments else "forward"
        length = float(rng.uniform(2.0, 5.0))
        if mode == "forward":
            seg = RigSegment("forward", length, float(rng.uniform(4.0, 8.0)))
        elif mode == "turn":
            seg = RigSegment("turn", length, float(rng.uniform(3.0, 5.0)), float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.18)))
        else:
            seg = RigSegment("stop", min(length, 2.0), 0.0)
        segments.append(seg)
        total += seg.duration
    return segments


def _centreline(segments: list[RigSegment], duration: float) -> np.ndarray:
    """Road centreline (N, 2) every 0.25 m along the rig path, extended 120 m ahead and 40 m behind."""
    fine_t = np.linspace(0, duration, max(int(duration * 200), 2))
    pos, yaw, _ = integrate_rig(segments, fine_t)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pos, axis=0), axis=1) > 1e-6])
    pos, yaw = pos[keep], yaw[keep]
    behind = pos[0][None] - np.outer(np.arange(160, 0, -1) * 0.25, [math.sin(yaw[0]), math.cos(yaw[0])])
    ahead = pos[-1][None] + np.outer(np.arange(1, 481) * 0.25, [math.sin(yaw[-1]), math.cos(yaw[-1])])
    dense = np.concatenate([behind, pos, ahead])
    # resample at 0.25 m arc length
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    samples = np.arange(0, arc[-1], 0.25)
    return np.stack([np.interp(samples, arc, dense[:, 0]), np.interp(samples, arc, dense[:, 1])], axis=1)


def _frame_at(centreline: np.ndarray, index: int) -> tuple[np.ndarray, float]:
    """Point (x, z) and heading yaw of the centreline at sample ``index``."""
    a = centreline[max(index - 4, 0)]
    b = centreline[min(index + 4, len(centreline) - 1)]
    return centreline[index], math.atan2(b[0] - a[0], b[1] - a[1])


def _offset(point: np.ndarray, yaw: float, lateral: float) -> tuple[float, float]:
    right = right_vector(yaw)
    return float(point[0] + lateral * right[0]), float(point[1] + lateral * right[2])


def _car(object_id: int, instance_id: int, motion: PlanarMotion, rng: np.random.Generator) -> SceneObject:
    width, length = rng.uniform(1.7, 2.0), rng.uniform(3.9, 4.8)
    body_h, cabin_h = rng.uniform(0.9, 1.1), rng.uniform(0.5, 0.7)
    parts = (
        BoxPart((0.0, 0.25 + body_h / 2, 0.0), (width, body_h, length)),
        BoxPart((0.0, 0.25 + body_h + cabin_h / 2, -0.2), (width * 0.9, cabin_h, length * 0.5)),
    )
    colour = tuple(int(c) for c in rng.integers(30, 230, size=3))
    return SceneObject(object_id, "car", instance_id, parts, motion, colour=colour)


def _pedestrian(object_id: int, instance_id: int, motion: PlanarMotion, rng: np.random.Generator) -> SceneObject:
    height = rng.uniform(1.6, 1.9)
    parts = (BoxPart((0.0, height * 0.45, 0.0), (0.5, height * 0.9, 0.35)),
             BoxPart((0.0, height * 0.95, 0.0), (0.25, height * 0.1, 0.25)))
    colour = tuple(int(c) for c in rng.integers(40, 200, size=3))
    return SceneObject(object_id, "pedestrian", instance_id, parts, motion, colour=colour)


def build_scene(seed: int, frames: int) -> Scene:
    """A deterministic random street scene for ``frames`` frames at 5 FPS."""
    rng = np.random.default_rng(seed)
    duration = frames / FRAME_RATE_HZ
    segments = _rig_drive(rng, duration)
    scene = Scene(seed=seed, frames=frames, rig_height=float(rng.uniform(1.6, 2.6)),
                  rig_pitch=float(-math.radians(rng.uniform(2.0, 8.0))), rig_segments=segments)
    line = _centreline(segments, duration)
    scene.centreline = line
    tree = cKDTree(line)
    objects: list[SceneObject] = []
    next_id, next_instance = 1, 1

    def add(obj: SceneObject) -> None:
        nonlocal next_id
        objects.append(obj)
        next_id += 1

    # Buildings: boxes along both sides, rejected where they would intrude on road or sidewalk.
    for side in (-1, 1):
        index = 0
        while index < len(line):
            width = rng.uniform(8, 20)
            point, yaw = _frame_at(line, index)
            depth, height = rng.uniform(8, 15), rng.uniform(6, 30)
            lateral = side * (SIDEWALK_OUTER + 1.0 + depth / 2 + rng.uniform(0, 4))
            centre = _offset(point, yaw, lateral)
            corners = [
                (centre[0] + dx * right_vector(yaw)[0] + dz * heading_vector(yaw)[0],
                 centre[1] + dx * right_vector(yaw)[2] + dz * heading_vector(yaw)[2])
                for dx in np.linspace(-depth / 2, depth / 2, 4) for dz in np.linspace(-width / 2, width / 2, 6)
            ]
            if tree.query(np.array(corners))[0].min() > SIDEWALK_OUTER + 0.5:
                part = BoxPart((0.0, height / 2, 0.0), (depth, height, width))
                tone = int(rng.integers(90, 200))
                colour = (tone, int(tone * rng.uniform(0.7, 1.0)), int(tone * rng.uniform(0.6, 0.9)))
                add(SceneObject(next_id, "building", 0, (part,), PlanarMotion("static", centre, yaw), colour=colour))
            index += int((width + rng.uniform(2, 8)) / 0.25)
    # Poles on the sidewalk.
    for index in range(int(rng.uniform(10, 30) / 0.25), len(line), int(rng.uniform(60, 100) / 0.25)):
        point, yaw = _frame_at(line, index)
        side = rng.choice([-1, 1])
        pos = _offset(point, yaw, side * (ROAD_HALF_WIDTH + 0.8))
        height = rng.uniform(3.0, 6.0)
        part = BoxPart((0.0, height / 2, 0.0), (0.3, height, 0.3))
        add(SceneObject(next_id, "pole", 0, (part,), PlanarMotion("static", pos, yaw), colour=(150, 150, 140)))

    # Dynamic things near the rig's path, mostly ahead of it.
    start_index = int(tree.query(np.zeros(2))[1])
    span = int(min(len(line) - start_index - 1, 70 / 0.25))

    def ahead_point(lo_m: float, hi_m: float):
        index = start_index + int(rng.uniform(lo_m, min(hi_m, span * 0.25)) / 0.25)
        return _frame_at(line, min(index, len(line) - 1))

    for _ in range(int(rng.integers(3, 7))):  # parked cars
        point, yaw = ahead_point(6, 70)
        pos = _offset(point, yaw, rng.choice([-1, 1]) * PARKING_OFFSET)
        add(_car(next_id, next_instance, PlanarMotion("static", pos, yaw), rng))
        next_instance += 1
    for kind in rng.permutation(["straight", "parabolic", "turning", "straight"])[: int(rng.integers(2, 5))]:
        point, yaw = ahead_point(10, 60)
        lane = rng.choice([-1, 1])
        heading = yaw if lane > 0 else yaw + math.pi  # right lane drives along the road, left lane against
        pos = _offset(point, yaw, lane * LANE_OFFSET)
        speed = float(rng.uniform(3.0, 9.0))
        if kind == "parabolic":
            along, lateral = rng.uniform(-1.0, 1.5), rng.choice([-1, 1]) * rng.uniform(0.3, 0.8)
            accel = along * heading_vector(heading) + lateral * right_vector(heading)
            motion = PlanarMotion("parabolic", pos, heading, speed, accel=(float(accel[0]), float(accel[2])))
        elif kind == "turning":
            motion = PlanarMotion("turning", pos, heading, speed, yaw_rate=float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.3)))
        else:
            motion = PlanarMotion("straight", pos, heading, speed)
        add(_car(next_id, next_instance, motion, rng))
        next_instance += 1
    for _ in range(int(rng.integers(2, 6))):  # pedestrians: walk along the sidewalk, cross, or stand
        point, yaw = ahead_point(5, 45)
        mode = rng.choice(["along", "cross", "stand"], p=[0.5, 0.3, 0.2])
        if mode == "cross":
            side = rng.choice([-1, 1])
            pos = _offset(point, yaw, side * (ROAD_HALF_WIDTH + 1.0))
            motion = PlanarMotion("straight", pos, yaw - side * math.pi / 2, float(rng.uniform(1.0, 1.6)))
        else:
            pos = _offset(point, yaw, rng.choice([-1, 1]) * (ROAD_HALF_WIDTH + rng.uniform(1.2, 2.6)))
            heading = yaw + (0 if rng.random() < 0.5 else math.pi)
            motion = PlanarMotion("static" if mode == "stand" else "straight", pos, heading, float(rng.uniform(0.8, 1.6)))
        add(_pedestrian(next_id, next_instance, motion, rng))
        next_instance += 1
    scene.objects = objects
    return scene
