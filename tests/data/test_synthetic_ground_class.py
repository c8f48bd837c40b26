"""Ground classes and box meshes of the synthetic renderer against brute-force references.

``GroundLookup.classify`` (a KD-tree nearest road sample, then the lateral distance and arc length on that
sample's road) must agree with a per-point brute force over every sample, also for points exactly on the
class thresholds; ``box_mesh`` (static meshes computed once) must equal the analytic corners at any time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.data.synthetic.render import box_mesh
from pipeline.data.synthetic.scene import CLASS_ID, LANE_WIDTH_M, ROAD_HALF_WIDTH, SIDEWALK_OUTER, GroundLookup, build_scene
from pipeline.data.synthetic.trajectories import StaticMotion


def brute_force_classes(points: np.ndarray, tangents: np.ndarray, arc: np.ndarray, xz: np.ndarray) -> np.ndarray:
    """One point at a time: the nearest sample by an exhaustive search, then the class rules in plain Python."""
    out = []
    for x, z in xz:
        i = int(np.argmin((points[:, 0] - x) ** 2 + (points[:, 1] - z) ** 2))
        ox, oz = x - points[i, 0], z - points[i, 1]
        tx, tz = tangents[i]
        lateral = abs(ox * tz - oz * tx)
        along = arc[i] + (ox * tx + oz * tz)
        if (lateral < 0.12 or abs(lateral - LANE_WIDTH_M) < 0.08) and along % 6.0 < 3.0:
            out.append(CLASS_ID["lanemarking"])
        elif lateral < ROAD_HALF_WIDTH:
            out.append(CLASS_ID["road"])
        elif lateral < SIDEWALK_OUTER:
            out.append(CLASS_ID["sidewalk"])
        else:
            out.append(CLASS_ID["vegetation"])
    return np.array(out, dtype=np.uint16)


@pytest.mark.parametrize("seed", [3, 11])
def test_scene_ground_classes_match_brute_force(seed):
    scene = build_scene(seed, frames=10)
    lookup = scene._ground_lookup
    points = np.stack([lookup.x, lookup.z], axis=1)
    tangents = np.stack([lookup.tangent_x, lookup.tangent_z], axis=1)
    rng = np.random.default_rng(seed)
    near = points[rng.integers(0, len(points), 1500)] + rng.uniform(-13, 13, (1500, 2))  # every class, near roads
    far = rng.uniform(points.min(0) - 300, points.max(0) + 300, (300, 2))  # also beyond the roads' ends
    xz = np.concatenate([near, far])
    classes = scene.ground_class(xz)
    assert classes.dtype == np.uint16
    np.testing.assert_array_equal(classes, brute_force_classes(points, tangents, lookup.arc, xz))
    assert set(np.unique(classes)) == {CLASS_ID[c] for c in ("road", "sidewalk", "vegetation", "lanemarking")}


def test_ground_classes_exactly_at_the_thresholds():
    """A straight road along +z (samples every 0.25 m): points abreast of a sample, at and just inside each
    lateral threshold, and at the start and end of a 3 m dash."""
    n = 200
    points = np.stack([np.zeros(n), np.arange(n) * 0.25], axis=1)
    tangents = np.tile([0.0, 1.0], (n, 1))
    arc = np.arange(n) * 0.25
    lookup = GroundLookup(points, tangents, arc)
    inside = np.nextafter
    laterals = [ROAD_HALF_WIDTH, inside(ROAD_HALF_WIDTH, 0), SIDEWALK_OUTER, inside(SIDEWALK_OUTER, 0), 0.12,
                inside(0.12, 0), LANE_WIDTH_M + 0.08, LANE_WIDTH_M - 0.08, LANE_WIDTH_M, 0.0]
    xz = np.array([(side * lateral, z) for lateral in laterals for side in (-1, 1) for z in (1.0, 3.0, 6.0, 8.75)])
    classes = lookup.classify(xz)
    np.testing.assert_array_equal(classes, brute_force_classes(points, tangents, arc, xz))
    by_point = {(x, z): int(c) for (x, z), c in zip(xz, classes, strict=True)}
    assert by_point[(ROAD_HALF_WIDTH, 1.0)] == CLASS_ID["sidewalk"]  # on the kerb: no longer road
    assert by_point[(inside(ROAD_HALF_WIDTH, 0), 1.0)] == CLASS_ID["road"]
    assert by_point[(SIDEWALK_OUTER, 1.0)] == CLASS_ID["vegetation"]
    assert by_point[(0.0, 1.0)] == by_point[(0.0, 6.0)] == CLASS_ID["lanemarking"]  # dashes start at 0, 6, ...
    assert by_point[(0.0, 3.0)] == CLASS_ID["road"]  # ... and end at 3 m


def test_box_mesh_matches_the_rotated_corners_at_any_time():
    scene = build_scene(5, frames=10)
    static = [o for o in scene.objects if isinstance(o.motion, StaticMotion)]
    moving = [o for o in scene.objects if not isinstance(o.motion, StaticMotion)]
    assert static and moving
    for obj in static[:5] + moving[:3]:
        for t in (0.0, 1.3):
            verts, faces = box_mesh(obj, t)
            (x, z), yaw = obj.motion.state(t)
            c, s = math.cos(float(yaw)), math.sin(float(yaw))
            expected = []
            for part in obj.parts:
                for i in (-0.5, 0.5):
                    for j in (-0.5, 0.5):
                        for k in (-0.5, 0.5):
                            lx, ly, lz = (part.centre[d] + f * part.size[d] for d, f in enumerate((i, j, k)))
                            expected.append((x + lx * c + lz * s, obj.base_height + ly, z - lx * s + lz * c))
            np.testing.assert_allclose(verts, np.array(expected), atol=1e-4)
            assert verts.dtype == np.float32 and faces.dtype == np.uint32
            assert faces.shape == (12 * len(obj.parts), 3) and faces.max() == 8 * len(obj.parts) - 1
            # every box closed: each edge of a part's 12 triangles is shared by exactly two triangles
            edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
            assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()
