"""Object velocities from the object tracks: line fits against numpy, scenes with known motion, the gate, the
frame change of a training clip and the slot order of a matched context."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.config import ParamsError
from pipeline.models.video.forecaster import SlotTrack
from pipeline.models.video.object_motion import MIN_FRAMES, SequenceObjects, gated
from pipeline.models.video.object_tracks import line_fit
from pipeline.models.video.object_tracks import track_slots
from pipeline.models.video.tracking import frame_order, matched_track
from pipeline.train.phase2 import clip_velocity
from tests.conftest import repo_params
from tests.models.video.test_object_tracks import DT, blob

SPEED = 3.0  # m/s along x


def moving_scene(frames: int = 6):
    """A car in two touching slots (0 and 1) driving at ``SPEED`` along x and a parked car (slot 2) whose mean wobbles
    ±0.05 m; slot 3 owns no point. Returns world points, point slots and times."""
    wobble = np.array([0.05, -0.05] * frames)
    points, slots = [], []
    for t in range(frames):
        x = SPEED * DT * t
        points.append(np.concatenate([blob((x, 0.0, 10.0), seed=t), blob((x + 0.6, 0.0, 10.0), seed=10 + t),
                                      blob((8.0 + wobble[t], 0.0, 12.0), seed=20 + t)]))
        slots.append(np.repeat([0, 1, 2], 40))
    return points, slots, np.arange(frames) * DT


def scene_objects(frames: int = 6) -> SequenceObjects:
    points, slots, times = moving_scene(frames)
    return SequenceObjects.of(points, slots, track_slots(points, slots, times, 2.0, 2.0, touch_m=0.5), times)


def test_line_fit_matches_numpy_polyfit_and_its_residual():
    rng = np.random.default_rng(0)
    for _ in range(10):
        time = np.sort(rng.uniform(0, 2, 6))
        position = rng.normal(size=(6, 3)) + time[:, None] * rng.normal(size=3)
        slope, rms = line_fit(time, position)
        coef = np.polyfit(time, position, 1)  # (2, 3): slope, intercept
        np.testing.assert_allclose(slope, coef[0], atol=1e-10)
        fitted = coef[1] + time[:, None] * coef[0]
        assert rms == pytest.approx(np.sqrt(((position - fitted) ** 2).sum(1).mean()), abs=1e-10)


def test_the_slots_of_a_moving_car_get_its_velocity_and_a_parked_one_is_gated_off():
    objects = scene_objects()
    velocity, residual = objects.velocities([2, 3, 4, 5], slots=4)
    np.testing.assert_allclose(velocity[0], [SPEED, 0, 0], atol=1e-9)  # both parts of the car: the car's velocity
    np.testing.assert_allclose(velocity[1], [SPEED, 0, 0], atol=1e-9)
    assert residual[0] == pytest.approx(0.0, abs=1e-9)
    assert np.linalg.norm(velocity[2]) < 0.5 and 0.0 < residual[2] < 0.1  # the wobble: a small slope, a residual
    assert np.all(velocity[3] == 0) and residual[3] == np.inf  # no point: no object
    kept = gated(velocity, residual, min_speed_mps=1.0, max_residual_m=0.4)
    np.testing.assert_allclose(kept[:2], velocity[:2])
    assert np.all(kept[2:] == 0)
    assert np.all(gated(velocity, residual, 1.0, 1e-6)[2:] == 0)  # a wobbling residual above the limit: static


def test_too_few_context_frames_give_no_velocity():
    objects = scene_objects()
    velocity, residual = objects.velocities(list(range(MIN_FRAMES - 1)), slots=4)
    assert np.all(velocity == 0) and np.all(residual == np.inf)


def test_a_training_clip_gets_the_velocity_in_its_first_frames_camera_axes():
    """The clip's world is its first frame's camera: a velocity in the pose files' world turns by r0^T."""
    objects = scene_objects()
    r0 = Rotation.from_euler("Y", 90, degrees=True).as_matrix()
    seq = type("Seq", (), {"r_wc": np.repeat(r0[None], 6, axis=0)})()
    got = clip_velocity(seq, objects, [2, 3, 4, 5, 0], slots=4, gate=(1.0, 0.4))  # context 2..5, target 0
    np.testing.assert_allclose(got[0], r0.T @ np.array([SPEED, 0, 0]), atol=1e-9)
    np.testing.assert_allclose(got[2:], 0)


def test_velocities_follow_the_matched_slot_order():
    """Two slots that swap indices in the last frame: after matching, slot k keeps frame 0's object, and its velocity
    (given per slot index of the last frame) moves with it."""
    centre = torch.tensor([[[0.0, 0, 10], [5.0, 0, 10]], [[0.1, 0, 10], [5.1, 0, 10]], [[5.2, 0, 10], [0.2, 0, 10]]])
    track = SlotTrack(centre[None], torch.eye(3).expand(1, 3, 2, 3, 3), torch.ones(1, 3, 2), torch.ones(1, 3, 2, 1),
                      torch.arange(3.0)[None])
    matched, perm = matched_track(track)
    assert perm[0, 2].tolist() == [1, 0]
    by_index = torch.tensor([[[7.0, 0, 0], [1.0, 0, 0]]])  # last frame: index 0 is the far object, index 1 the near one
    ordered = frame_order(by_index, perm, 2)
    assert ordered[0, 0].tolist() == [1.0, 0, 0]  # slot 0 = the near object throughout
    assert torch.equal(frame_order(by_index, None, 2), by_index)
    assert torch.equal(matched.centre[0, 2, 0], centre[2, 1])


def test_objects_need_frozen_slots():
    with pytest.raises(ParamsError, match="velocity_from = objects needs video.finetune_slots = false"):
        repo_params("video", velocity_from="objects", finetune_slots=True)
