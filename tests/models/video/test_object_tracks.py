"""Object tracks: world-frame association with a gate and a memory, against scenes whose identities are known."""

from __future__ import annotations

import numpy as np

from pipeline.eval.phase2_eval import identity_switches
from pipeline.models.video.object_tracks import detections, relabel, track_slots

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
