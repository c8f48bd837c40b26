"""Planned manoeuvres: labels checked against the camera poses (independently of the schedule), physical
limits of the drives, label coverage of the splits, pair labels and mirroring."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.camera import GL_FROM_CV
from pipeline.data.synthetic.generate import camera_pose
from pipeline.data.synthetic.manoeuvres import (LABELS, SUBSTEPS, Manoeuvre, integrate, mirror_manoeuvre,
                                                pair_manoeuvre, plan_agent_drive)
from pipeline.data.synthetic.scene import build_scene
from pipeline.io.synthia import FRAME_RATE_HZ

DT = 1.0 / FRAME_RATE_HZ
FULL_TOUR_FRAMES = 90  # 18 s: longer than the longest tour (see manoeuvres.rig_tour)


def camera_motion(scene):
    """Per consecutive frame pair of Stereo_Left/Omni_F: (heading change in the first camera's OpenCV
    axes, rad, + = towards +x_cv i.e. right; horizontal speed m/s; lateral step along x_cv, m)."""
    positions, yaws, _ = scene.rig_states()
    poses = np.array([camera_pose(scene, positions[f], float(yaws[f]), "Stereo_Left/Omni_F")
                      for f in range(scene.frames)])
    rot_cv = poses[:, :3, :3] @ GL_FROM_CV  # columns: camera x (right), y (down), z (forward) in the world
    fwd_next = np.einsum("tji,tj->ti", rot_cv[:-1], rot_cv[1:, :, 2])  # next forward axis in this camera's axes
    turn = np.arctan2(fwd_next[:, 0], fwd_next[:, 2])
    step = poses[1:, :3, 3] - poses[:-1, :3, 3]
    speed = np.linalg.norm(step[:, [0, 2]], axis=1) / DT
    lateral = np.einsum("tji,tj->ti", rot_cv[:-1], step)[:, 0]
    return turn, speed, lateral, rot_cv, poses


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_labels_agree_with_the_camera_poses(seed):
    scene = build_scene(seed, FULL_TOUR_FRAMES, phase=seed % 2)
    labels = scene.rig_states()[2]
    turn, speed, lateral, rot_cv, poses = camera_motion(scene)
    # pair (f, f + 1) inside one label run: both frames carry it, as does the frame after (pair fully inside)
    inside = np.array([labels[f] == labels[f + 1] and (f + 2 >= len(labels) or labels[f + 2] == labels[f])
                       for f in range(len(labels) - 1)])
    checked = set()
    for f in np.flatnonzero(inside):
        label = labels[f]
        if label == "left":
            assert turn[f] < -0.02, (f, turn[f])
        elif label == "right":
            assert turn[f] > 0.02, (f, turn[f])
        elif label == "stop":
            assert speed[f] < 0.05
        elif label == "straight":
            assert abs(turn[f]) < 1e-6 and abs(lateral[f]) < 1e-6 and speed[f] > 1.0
        elif label in ("accelerate", "decelerate") and f + 1 < len(speed) and inside[f + 1]:
            gain = speed[f + 1] - speed[f]
            assert (gain > 0.05) if label == "accelerate" else (gain < -0.05), (label, f, gain)
            assert abs(turn[f]) < 1e-6
        checked.add(label)
    for label in ("lane_change_left", "lane_change_right"):
        first = int(np.flatnonzero(labels == label)[0])
        last = first
        while last + 1 < len(labels) and labels[last + 1] == label:  # end of the first run
            last += 1
        shift = (poses[last, :3, 3] - poses[first, :3, 3]) @ rot_cv[first][:, 0]  # along the first camera's x
        assert (shift < -1.0) if label == "lane_change_left" else (shift > 1.0), (label, shift)
        checked.add(label)
    assert checked == set(LABELS)


CAR_LIMITS = (14.0, 1.0, 4.0, 5.0)  # speed m/s, |yaw rate| rad/s, |longitudinal|, |lateral| accel m/s^2
PEDESTRIAN_LIMITS = (2.5, 2.2, 3.0, 3.0)


@pytest.mark.parametrize("seed", [0, 5])
def test_drives_are_physically_plausible(seed):
    """Rig, cars and pedestrians stay within :data:`CAR_LIMITS` / :data:`PEDESTRIAN_LIMITS` (finite
    differences of the integrated positions and headings)."""
    scene = build_scene(seed, FULL_TOUR_FRAMES, phase=seed % 2)
    drives = [(scene.rig, CAR_LIMITS)] + [
        (o.motion.drive, CAR_LIMITS if o.class_name == "car" else PEDESTRIAN_LIMITS)
        for o in scene.objects if o.motion.kind == "manoeuvres"]
    assert len(drives) > 3
    dt = DT / SUBSTEPS
    for drive, (max_speed, max_rate, max_along, max_across) in drives:
        velocity = np.gradient(drive.xz, dt, axis=0)
        speed = np.linalg.norm(velocity, axis=1)
        accel = np.gradient(velocity, dt, axis=0)
        heading = np.stack([np.sin(drive.yaw), np.cos(drive.yaw)], axis=1)
        along = np.sum(accel * heading, axis=1)
        across = accel[:, 0] * heading[:, 1] - accel[:, 1] * heading[:, 0]
        yaw_rate = np.gradient(drive.yaw, dt)
        core = slice(2, -2)  # one-sided differences at the ends
        assert speed.max() <= max_speed
        assert np.abs(yaw_rate[core]).max() <= max_rate
        assert np.abs(along[core]).max() <= max_along
        assert np.abs(across[core]).max() <= max_across


def test_every_label_in_a_full_tour_and_in_two_consecutive_default_sequences():
    """A sequence of >= 18 s holds every label; at the default 8 s, the two halves of the tour alternate
    between consecutive sequences, so the last two (validation and test) together hold every label."""
    for seed in range(6):
        assert set(build_scene(seed, FULL_TOUR_FRAMES, phase=seed % 2).rig_states()[2]) == set(LABELS)
    from pipeline.data.synthetic.generate import rig_plan, sequence_seed
    from tests.conftest import SMALL

    for base_seed in (0, 1):
        config = SMALL.__class__(**{**SMALL.__dict__, "seed": base_seed, "sequences": 6, "frames": 40})
        labels = [build_scene(sequence_seed(config, i), 40, **rig_plan(base_seed, i)).rig_states()[2] for i in range(6)]
        for i in range(5):
            assert set(labels[i]) | set(labels[i + 1]) == set(LABELS), (base_seed, i)
        for sequence in labels:
            assert np.unique(sequence, return_counts=True)[1].min() >= 3  # each label present spans >= 3 frames


def test_pair_manoeuvre_majority_and_ties():
    labels = ["stop"] * 3 + ["accelerate"] * 4 + ["left"] * 2
    assert pair_manoeuvre(labels, 0, 5) == "stop"  # frames 0..4: stop x3, accelerate x2
    assert pair_manoeuvre(labels, 1, 6) == "accelerate"  # 1..5: stop x2, accelerate x3
    assert pair_manoeuvre(labels, 6, 1) == "accelerate"  # order does not matter
    assert pair_manoeuvre(labels, 1, 5) == "stop"  # 1..4: 2 vs 2, the earlier label wins
    assert pair_manoeuvre(labels, 8, 8) == "left"
    with pytest.raises(ValueError):
        pair_manoeuvre(labels, 0, 9)


def test_pair_manoeuvre_matches_brute_force_on_a_drive():
    scene = build_scene(2, 40, phase=1)
    labels = scene.rig_states()[2]
    for t in range(35):
        span = list(labels[t:t + 5])
        best = max(span.count(x) for x in span)
        assert span.count(pair_manoeuvre(labels, t, t + 5)) == best


def test_mirror_manoeuvre_swaps_left_and_right():
    assert [mirror_manoeuvre(x) for x in LABELS] == [
        "straight", "right", "left", "stop", "accelerate", "decelerate", "lane_change_right", "lane_change_left"]
    assert all(mirror_manoeuvre(mirror_manoeuvre(x)) == x for x in LABELS)
    with pytest.raises(ValueError):
        mirror_manoeuvre("reverse")


def test_mirrored_schedule_mirrors_the_path():
    """A schedule and its left-right mirror (labels via mirror_manoeuvre, signs flipped) give x-mirrored paths."""
    schedule = [Manoeuvre("accelerate", 1.5, 4.0), Manoeuvre("left", 1.4, 4.0, turn_rad=-0.7),
                Manoeuvre("lane_change_right", 2.0, 4.0, shift_m=3.0)]
    mirrored = [Manoeuvre(mirror_manoeuvre(m.label), m.duration, m.v_end, -m.turn_rad, -m.shift_m) for m in schedule]
    a, b = integrate(schedule, 0.0), integrate(mirrored, 0.0)
    assert np.allclose(a.xz[:, 0], -b.xz[:, 0]) and np.allclose(a.xz[:, 1], b.xz[:, 1])
    assert np.allclose(a.yaw, -b.yaw)


def test_agents_manoeuvre_too():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        seen |= {m.label for m in plan_agent_drive(rng, 10.0, "car", 5.0)}
        seen |= {m.label for m in plan_agent_drive(rng, 10.0, "pedestrian", 1.0)}
    assert seen == set(LABELS)
