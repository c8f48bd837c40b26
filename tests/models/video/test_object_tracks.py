"""Object tracks: world-frame association with a gate and a memory, against scenes whose identities are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from pipeline.eval.phase2_eval import identity_switches, object_tracks
from pipeline.models.video.object_motion import track_objects
from pipeline.models.video.object_tracks import (Track, apart_slots, detections, relabel, touching_objects,
                                                  track_slots)

DT = 0.2  # seconds between frames (5 Hz)


def blob(centre, n: int = 40, seed: int = 0) -> np.ndarray:
    """``n`` points within 0.3 m of ``centre`` whose mean is exactly ``centre``."""
    offsets = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 3))
    return np.asarray(centre, float) + offsets - offsets.mean(0)


def frame(objects: dict[int, tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Points and their slot for ``{slot: centre}``."""
    if not objects:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    points = np.concatenate([blob(c, seed=s) for s, c in objects.items()])
    slots = np.concatenate([np.full(40, s) for s in objects])
    return points, slots


def run(frames: list[dict], gate_m: float = 1.0, memory_s: float = 1.0) -> list[dict[int, int]]:
    points, slots = zip(*(frame(f) for f in frames))
    return track_slots(list(points), list(slots), np.arange(len(frames)) * DT, gate_m, memory_s)


def test_detections_are_the_mean_point_of_each_owning_slot():
    points = np.array([[0.0, 0, 0], [2, 0, 0], [10, 0, 0], [0, 4, 0]])
    slots, positions = detections(points, np.array([3, 3, 1, 3]))
    assert slots.tolist() == [1, 3]
    np.testing.assert_allclose(positions, [[10, 0, 0], [2 / 3, 4 / 3, 0]])


def test_swapped_slot_indices_keep_the_objects_ids():
    """Two parked cars whose slots swap at frame 3: the slot index changes, the track id does not."""
    a, b = (0.0, 0.0, 10.0), (4.0, 0.0, 12.0)
    maps = run([{0: a, 1: b}] * 3 + [{1: a, 0: b}] * 3)
    assert [m[0] for m in maps[:3]] == [m[1] for m in maps[3:]]  # car a
    assert [m[1] for m in maps[:3]] == [m[0] for m in maps[3:]]  # car b
    assert len({i for m in maps for i in m.values()}) == 2


def test_identity_switches_of_slot_indices_vanish_on_track_ids():
    a, b = (0.0, 0.0, 10.0), (4.0, 0.0, 12.0)
    frames = [{0: a, 1: b}] * 3 + [{1: a, 0: b}] * 3
    points, slots = zip(*(frame(f) for f in frames))
    instance = [np.repeat([1, 2], 40)] * 3 + [np.repeat([1, 2], 40)] * 3  # object a's points come first in every frame
    slots = [np.asarray(s) for s in slots]
    assert identity_switches(instance, slots) == (2, 2)
    labels = relabel(slots, track_slots(list(points), slots, np.arange(6) * DT, 1.0, 1.0))
    assert identity_switches(instance, labels) == (0, 2)


def test_an_object_hidden_shorter_than_the_memory_gets_its_id_back():
    """Hidden for 3 frames (0.6 s) and back on another slot: same id with 1 s of memory, a new one with 0.4 s."""
    car = (0.0, 0.0, 10.0)
    frames = [{2: car}] * 2 + [{}] * 3 + [{5: car}] * 2
    kept = run(frames, memory_s=1.0)
    assert kept[0][2] == kept[5][5] == kept[6][5]
    forgotten = run(frames, memory_s=0.4)
    assert forgotten[5][5] != forgotten[0][2]


def test_a_moving_object_is_found_where_its_velocity_takes_it():
    """0.8 m per frame, hidden 2 frames, back 2.4 m from where it was last seen (gate 1 m): the velocity finds it."""
    path = [(0.8 * t, 0.0, 10.0) for t in range(8)]
    frames = [{1: path[t]} for t in range(4)] + [{}, {}] + [{6: path[6]}, {6: path[7]}]
    maps = run(frames, gate_m=1.0, memory_s=1.0)
    assert maps[6][6] == maps[0][1]


def test_a_detection_beyond_the_gate_starts_a_new_track_and_ids_are_never_reused():
    maps = run([{0: (0.0, 0.0, 10.0)}, {0: (3.0, 0.0, 10.0)}, {}, {}, {}, {}, {}, {0: (0.0, 0.0, 10.0)}],
               gate_m=1.0, memory_s=0.5)
    ids = [maps[0][0], maps[1][0], maps[7][0]]
    assert len(set(ids)) == 3


def test_labels_follow_the_slot_of_every_point():
    points, slots = frame({4: (0.0, 0.0, 5.0), 7: (5.0, 0.0, 5.0)})
    (labels,) = relabel([slots], track_slots([points], [slots], np.zeros(1), 1.0, 1.0))
    assert labels.tolist() == [0] * 40 + [1] * 40


def brute_force_objects(points: np.ndarray, slot: np.ndarray, touch_m: float) -> np.ndarray:
    """Reference for touching_objects: all point pairs' distances, then the smallest slot reachable by touching."""
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    labels = np.unique(slot)
    touch = {(a, b) for a in labels for b in labels
             if a == b or np.any(distance[np.ix_(slot == a, slot == b)] <= touch_m)}
    group = {a: a for a in labels}
    changed = True
    while changed:  # propagate the smallest label along touching pairs until nothing moves
        changed = False
        for a, b in touch:
            low = min(group[a], group[b])
            if group[a] != low or group[b] != low:
                group[a] = group[b] = low
                changed = True
    return np.array([group[s] for s in slot])


def test_touching_objects_match_all_pairs_distances():
    rng = np.random.default_rng(3)
    for trial in range(20):
        points = rng.uniform(0, 6, (60, 3))
        slot = rng.integers(10, 17, 60)
        touch_m = rng.uniform(0.3, 1.5)
        np.testing.assert_array_equal(touching_objects(points, slot, touch_m),
                                      brute_force_objects(points, slot, touch_m), err_msg=f"trial {trial}")


def test_touching_is_chained_and_zero_keeps_one_object_per_slot():
    """Blobs of slots 5, 2, 9 in a row, centres 0.8 m apart, and slot 4's 8 m away: with a 1 m touch, 5 - 2 and 2 - 9
    touch, 5 and 9 do not (checked below), and all three are one object named 2; a 0 m touch groups nothing."""
    points = np.concatenate([blob((0.0, 0, 10)), blob((0.8, 0, 10), seed=1), blob((1.6, 0, 10), seed=2),
                             blob((8.0, 0, 10), seed=3)])
    slot = np.repeat([5, 2, 9, 4], 40)
    objects = touching_objects(points, slot, 1.0)
    assert objects.tolist() == [2] * 120 + [4] * 40
    # 5 and 9 are farther apart than 1 m: they are one object only through 2
    assert np.min(np.linalg.norm(points[:40, None] - points[None, 80:120], axis=-1)) > 1.0
    np.testing.assert_array_equal(touching_objects(points, slot, 0.0), slot)


def test_slots_kept_apart_are_joined_nearest_first_and_never_together():
    """Slots 5, 2, 9 in a row (closest points about 0.5 m then 0.2 m apart: touching with 1 m) and 5 / 9 kept apart:
    2 - 9 join first (nearer), then joining 5 would put 5 with 9, so 5 stays alone; 2 / 9 kept apart instead:
    5 - 2 join, 9 stays alone; nothing kept apart: one object (the connected groups)."""
    points = np.concatenate([blob((0.0, 0, 10)), blob((1.1, 0, 10), seed=1), blob((1.9, 0, 10), seed=2)])
    slot = np.repeat([5, 2, 9], 40)  # sorted distinct slots: 2, 5, 9
    gap = [np.min(np.linalg.norm(points[a:a + 40, None] - points[None, b:b + 40], axis=-1)) for a, b in ((0, 40), (40, 80))]
    assert gap[1] < gap[0] <= 1.0  # 2 - 9 are nearer than 5 - 2; 5 - 9 only through 2
    apart_5_9 = np.zeros((3, 3), dtype=bool)
    apart_5_9[1, 2] = apart_5_9[2, 1] = True
    assert touching_objects(points, slot, 1.0, apart_5_9).tolist() == [5] * 40 + [2] * 80
    apart_2_9 = np.zeros((3, 3), dtype=bool)
    apart_2_9[0, 2] = apart_2_9[2, 0] = True
    assert touching_objects(points, slot, 1.0, apart_2_9).tolist() == [2] * 80 + [9] * 40
    np.testing.assert_array_equal(touching_objects(points, slot, 1.0, np.zeros((3, 3), dtype=bool)),
                                  touching_objects(points, slot, 1.0))


def bar(x0: float, x1: float) -> np.ndarray:
    """Points every 0.1 m along x from ``x0`` to ``x1`` (metres) at y = +-0.1, z = 10: a box 0.2 m high."""
    x = np.linspace(x0, x1, int(round((x1 - x0) / 0.1)) + 1)
    return np.concatenate([np.column_stack([x, np.full_like(x, y), np.full_like(x, 10.0)]) for y in (-0.1, 0.1)])


def test_a_bound_on_the_extent_stops_the_chain_of_touching_slots():
    """Three cars in a row, x in [0, 2], [2.5, 4.5], [5.2, 7.2] (gaps 0.5 and 0.7 m: all touch at 1 m, one object).
    Bound 5 m: 0 - 1 join first (box diagonal 4.5 m), 1 - 2 would make 7.2 m, skipped; bound 4 m: nothing joins."""
    points = np.concatenate([bar(0.0, 2.0), bar(2.5, 4.5), bar(5.2, 7.2)])
    slot = np.repeat([0, 1, 2], len(bar(0.0, 2.0)))
    n = len(bar(0.0, 2.0))
    assert touching_objects(points, slot, 1.0).tolist() == [0] * 3 * n
    assert touching_objects(points, slot, 1.0, max_extent_m=5.0).tolist() == [0] * 2 * n + [2] * n
    np.testing.assert_array_equal(touching_objects(points, slot, 1.0, max_extent_m=4.0), slot)
    assert touching_objects(points, slot, 1.0, max_extent_m=7.3).tolist() == [0] * 3 * n


def test_the_tracker_passes_the_extent_bound_on():
    """The same row over two frames: with a 5 m bound the third car keeps an id of its own."""
    points = np.concatenate([bar(0.0, 2.0), bar(2.5, 4.5), bar(5.2, 7.2)])
    slot = np.repeat([0, 1, 2], len(bar(0.0, 2.0)))
    params = SimpleNamespace(track_gate_m=2.0, track_memory_s=2.0, track_touch_m=1.0, track_established_m=0.0,
                             track_split_mps=0.0, track_max_extent_m=5.0)
    tracks, _ = track_objects([points, points], [slot, slot], np.array([0.0, DT]), params)
    assert all(m[0] == m[1] != m[2] for m in tracks)


def test_kept_apart_slots_are_those_of_two_tracks_moving_differently():
    """Slots 1 and 2 were on a static track, slot 3 on one moving at 5 m/s, slot 4 on one seen once, slot 6 on none:
    only the pairs of the moving track's slot with the static track's are kept apart at 2 m/s (4 m/s apart at 6)."""
    static, moving = Track(0, np.zeros(3), np.zeros(3), 0.0), Track(1, np.zeros(3), np.zeros(3), 0.0)
    for t in (0.2, 0.4, 0.6):
        static.update(np.array([0.01 * (t > 0.3), 0.0, 0.0]), t)  # a centimetre of noise: not a motion
        moving.update(np.array([5.0 * t, 0.0, 0.0]), t)
    np.testing.assert_allclose(moving.steady_velocity(), [5.0, 0.0, 0.0])
    tracks = {0: static, 1: moving, 2: Track(2, np.ones(3), np.zeros(3), 0.6)}
    slots = np.array([1, 2, 3, 4, 6])
    apart = apart_slots(slots, {1: 0, 2: 0, 3: 1, 4: 2}, tracks, 2.0)
    expected = np.zeros((5, 5), dtype=bool)
    expected[2, :2] = expected[:2, 2] = True
    np.testing.assert_array_equal(apart, expected)
    assert not apart_slots(slots, {1: 0, 2: 0, 3: 1, 4: 2}, tracks, 6.0).any()


def test_a_moving_car_passing_a_parked_one_keeps_its_own_track_and_velocity():
    """A car at 5 m/s passes 0.8 m beside a parked one (touching for a few frames with a 1 m touch): grouped by touch
    alone, the two share one id while they touch and the moving car's object stops at the parked car's place; kept
    apart at 2 m/s, the moving car keeps one id, never the parked car's, and its object's velocity stays 5 m/s."""
    parked, frames = (0.0, 0.0, 10.0), []
    for t in range(14):
        frames.append({0: parked, 1: (-6.0 + 5.0 * DT * t, 0.0, 10.8)})
    points, slots = zip(*(frame(f) for f in frames))
    times = np.arange(len(frames)) * DT
    touch = track_slots(list(points), list(slots), times, 2.0, 2.0, touch_m=1.0)
    split = track_slots(list(points), list(slots), times, 2.0, 2.0, touch_m=1.0, split_mps=2.0)
    assert any(m[0] == m[1] for m in touch)  # merged while touching
    assert len({m[1] for m in split}) == 1 and all(m[0] != m[1] for m in split)
    params = SimpleNamespace(track_gate_m=2.0, track_memory_s=2.0, track_touch_m=1.0, track_established_m=0.0,
                             track_split_mps=2.0, track_max_extent_m=0.0)
    _, objects = track_objects(list(points), list(slots), times, params)
    for last in range(3, len(frames)):
        velocity, residual = objects.velocities(list(range(last - 3, last + 1)), 2)
        np.testing.assert_allclose(velocity[1], [5.0, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(velocity[0], 0.0, atol=1e-6)


def test_the_parts_of_one_car_keep_one_id_while_their_shares_swap():
    """A car cut into two slots whose shares of it alternate (the matched slot of the GT instance flips every frame:
    a switch per frame on slot indices) and a second car 6 m away: with touching parts grouped, each car keeps one id
    and nothing switches."""
    front, rear, other = (0.0, 0.0, 10.0), (0.5, 0.0, 10.0), (6.0, 0.0, 10.0)
    points, slots, instances = [], [], []
    for t in range(6):
        big, small = (60, 20) if t % 2 == 0 else (20, 60)
        points.append(np.concatenate([blob(front, big, seed=t), blob(rear, small, seed=10 + t), blob(other, seed=20 + t)]))
        slots.append(np.repeat([0, 1, 2], [big, small, 40]))
        instances.append(np.repeat([1, 1, 2], [big, small, 40]))
    times = np.arange(6) * DT
    per_slot = relabel(slots, track_slots(points, slots, times, 1.0, 1.0))
    grouped = relabel(slots, track_slots(points, slots, times, 1.0, 1.0, touch_m=0.5))
    assert identity_switches(instances, per_slot) == (5, 2)
    assert identity_switches(instances, grouped) == (0, 2)
    assert all(len(set(g[i == 1].tolist())) == 1 and set(g[i == 1]) != set(g[i == 2]) for g, i in zip(grouped, instances))


def test_a_static_object_whose_mean_jumps_for_one_frame_keeps_its_id():
    """Part of a parked car comes into view for one frame (its mean moves 0.9 m) and is hidden again: the velocity of
    that jump predicts 1.8 m, beyond the 1 m gate, but the last position is 0.9 m away, so the id stays."""
    frames = [{0: (0.0, 0.0, 10.0)}] * 3 + [{0: (0.9, 0.0, 10.0)}] + [{0: (0.0, 0.0, 10.0)}] * 2
    maps = run(frames, gate_m=1.0, memory_s=1.0)
    assert len({m[0] for m in maps}) == 1


def test_an_established_track_wins_a_close_contest_against_a_newer_one():
    """A parked car seen for 10 frames (track A) is hidden for a frame while another object shows 2.5 m away (beyond
    the 2 m gate: track B is born); then the car's mean shows 1.3 m from A and 1.2 m from B. Nearest-wins hands the car
    to B (a switch); with a 1 m bonus for an established track, A keeps it (cost 1.3 - 1.0 against 1.2 - 0.1)."""
    frames = [{0: (0.0, 0.0, 10.0)}] * 10 + [{1: (2.5, 0.0, 10.0)}] + [{0: (1.3, 0.0, 10.0)}] * 2
    points, slots = zip(*(frame(f) for f in frames))
    times = np.arange(len(frames)) * DT
    for established_m, keeps in ((0.0, False), (1.0, True)):
        maps = track_slots(list(points), list(slots), times, 2.0, 2.0, established_m=established_m)
        assert maps[10][1] != maps[9][0]  # the other object is a new track either way
        assert (maps[11][0] == maps[9][0]) == keeps, established_m
        assert maps[12][0] == maps[11][0]


def test_the_evaluation_groups_with_the_touch_distance_of_its_params():
    """``phase2_eval.object_tracks`` moves the points to the world frame and passes ``track_touch_m`` on: two slots
    0.5 m apart are one id with a 1 m touch, two ids with 0."""
    points, slots = frame({0: (0.0, 0.0, 10.0), 1: (0.5, 0.0, 10.0)})
    seq = SimpleNamespace(records=[SimpleNamespace(points=points)], time=np.zeros(1))
    pose = torch.eye(3)[None], torch.tensor([[5.0, 0.0, 0.0]])
    for touch_m, ids in ((1.0, 1), (0.0, 2)):
        params = SimpleNamespace(track_gate_m=1.0, track_memory_s=1.0, track_touch_m=touch_m, track_established_m=0.0,
                                 track_split_mps=0.0, track_max_extent_m=0.0)
        (tracks,), _ = object_tracks(seq, [slots], *pose, params)
        assert len(set(tracks.values())) == ids


def test_a_far_detection_does_not_take_a_track_from_the_near_object():
    """A parked car seen for 10 frames (track A, at x = 0); then a second object shows 3.5 m away (beyond the 2 m gate:
    track B). Next frame the car's mean shows at x = 2.0 (2.0 m from A: cost 2.0 - 1.0; 1.5 m from B: 1.5 - 0.1) and a
    far object at x = -30. Costed by raw distance, handing A to the far object (rejected by the gate afterwards) and the
    car to B is cheaper (29.0 + 1.4 against 1.0 + 33.4); with one cost for every pair beyond the gate A keeps the car."""
    frames = [{0: (0.0, 0.0, 10.0)}] * 10 + [{0: (0.0, 0.0, 10.0), 1: (3.5, 0.0, 10.0)}]
    frames += [{0: (2.0, 0.0, 10.0), 2: (-30.0, 0.0, 10.0)}]
    points, slots = zip(*(frame(f) for f in frames))
    maps = track_slots(list(points), list(slots), np.arange(len(frames)) * DT, 2.0, 2.0, established_m=1.0)
    track_a, track_b = maps[10][0], maps[10][1]
    assert track_a == maps[0][0] and track_b != track_a
    assert maps[11][0] == track_a
    assert maps[11][2] not in (track_a, track_b)  # the far object starts its own track
