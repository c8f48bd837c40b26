"""Forecasting baselines on analytic tracks, best-of-k, the forecaster's start, poses and carried anchors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.data.camera import cv_to_world, look_pose, relative_gt_poses
from pipeline.models.video.config import VideoModelConfig
from pipeline.models.video.forecaster import (
    Forecaster,
    SlotTrack,
    best_of_k,
    constant_velocity,
    copy_last,
    fitted_velocity,
    last_velocity,
    steady_line,
)
from pipeline.models.video.object_tracks import line_fit
from pipeline.models.video.poses import apply, axis_angle_to_matrix, chain, invert, rot6d_to_matrix
from pipeline.data.carried import track_anchors
from pipeline.models.video.tracking import match_chain, reorder


def cv_track(times: torch.Tensor, k: int = 3, seed: int = 0) -> tuple[SlotTrack, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0, v = torch.randn(k, 3, generator=g) * 5, torch.randn(k, 3, generator=g)
    centre = x0 + v * times.view(-1, 1, 1)  # (T, K, 3)
    t = len(times)
    track = SlotTrack(centre[None], torch.eye(3).expand(1, t, k, 3, 3), torch.ones(1, t, k),
                      torch.full((1, t, k, 2), 0.5), times[None])
    return track, x0, v


def test_constant_velocity_baseline_is_exact_on_constant_velocity_tracks():
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])  # uneven context gaps
    track, x0, v = cv_track(times)
    for delta in (0.2, 1.0, 2.35, -0.5):
        guess = constant_velocity(track, torch.tensor([delta]))
        truth = x0 + v * (0.9 + delta)
        assert torch.allclose(guess.centre[0, 0], truth, atol=1e-4)
    assert torch.allclose(copy_last(track).centre[0, 0], track.centre[0, -1])
    assert torch.allclose(last_velocity(track)[0], v, atol=1e-4)


def test_fitted_velocity_matches_numpy_least_squares_on_noisy_uneven_tracks():
    """Exact on a constant-velocity track with uneven gaps; on a noisy one, the slope of np.polyfit(deg=1) over
    the last N frames; N = 2 is the last two frames' difference."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9, 1.5])
    track, _, v = cv_track(times)
    assert torch.allclose(fitted_velocity(track, 5)[0], v, atol=1e-4)
    noisy = SlotTrack(track.centre + 0.3 * torch.randn(track.centre.shape, generator=torch.Generator().manual_seed(1)),
                      track.rotation, track.scale, track.weights, track.time)
    for n in (3, 4, 5):
        x = noisy.centre[0, -n:].double().numpy()  # (n, K, 3)
        slope = np.polyfit(times[-n:].double().numpy(), x.reshape(n, -1), 1)[0].reshape(x.shape[1:])
        assert np.allclose(fitted_velocity(noisy, n)[0].numpy(), slope, atol=1e-4)
    assert torch.equal(fitted_velocity(noisy, 2), last_velocity(noisy))


def test_best_of_k_takes_the_minimum_and_trains_only_the_winner():
    errors = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.4, 0.3]], requires_grad=True)
    best, winner = best_of_k(errors)
    assert torch.equal(best, errors.detach()[[0, 1], [1, 0]]) and winner.tolist() == [1, 0]
    best.sum().backward()
    assert errors.grad.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_forecaster_starts_at_copy_last_and_constant_velocity():
    times = torch.tensor([0.0, 0.2, 0.4, 0.6])
    track, x0, v = cv_track(times, k=4)
    model = Forecaster(VideoModelConfig(guesses=3, prototypes=2, hidden=32, time_features=4))
    out = model(track, torch.tensor([1.5]))
    assert out.centre.shape == (1, 3, 4, 3) and out.logits.shape == (1, 3)
    assert torch.allclose(out.centre[0, 0], track.centre[0, -1], atol=1e-5)  # guess 0: copy last
    assert torch.allclose(out.centre[0, 1], x0 + v * (0.6 + 0.75 * 1.5), atol=1e-4)  # 0.75 of the CV step
    assert torch.allclose(out.centre[0, 2], x0 + v * (0.6 + 1.5 * 1.5), atol=1e-4)
    # reversed and fractional gaps are valid inputs
    assert torch.isfinite(model(track, torch.tensor([-0.37])).centre).all()


def test_rebased_track_is_the_same_slots_seen_from_another_frame():
    rng = np.random.default_rng(3)
    rot = Rotation.random(2 * 3 * 4, random_state=4).as_matrix().reshape(2, 3, 4, 3, 3)
    track = SlotTrack(torch.tensor(rng.normal(size=(2, 3, 4, 3)) * 20, dtype=torch.float64),
                      torch.tensor(rot), torch.ones(2, 3, 4, dtype=torch.float64),
                      torch.ones(2, 3, 4, 2, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64),
                      torch.tensor(rot[:, :, 0]), torch.tensor(rng.normal(size=(2, 3, 3)) * 20))
    r_wf = Rotation.random(2, random_state=5).as_matrix()  # world_from_F
    t_wf = rng.normal(size=(2, 3)) * 50
    out = track.rebased(torch.tensor(r_wf), torch.tensor(t_wf))
    for b in range(2):
        expected = (track.centre[b].numpy() - t_wf[b]) @ r_wf[b]  # rows: R^T (c - t)
        assert np.allclose(out.centre[b].numpy(), expected)
        assert np.allclose(out.rotation[b].numpy(), np.einsum("ji,tkjl->tkil", r_wf[b], rot[b]))
        assert np.allclose(out.camera_centre[b].numpy(), (track.camera_centre[b].numpy() - t_wf[b]) @ r_wf[b])
        assert np.allclose(out.camera_rotation[b].numpy(), np.einsum("ji,tjl->til", r_wf[b], rot[b, :, 0]))
    # world_from_F applied to the rebased slots gives the original ones back
    back = out.centre @ torch.tensor(r_wf)[:, None].transpose(-1, -2) + torch.tensor(t_wf)[:, None, None]
    assert torch.allclose(back, track.centre)


def test_ego_motion_starts_as_the_forecaster_without_it_and_needs_the_camera():
    times = torch.tensor([0.0, 0.2, 0.4, 0.6])
    track, _, _ = cv_track(times, k=4)
    camera_rotation = torch.from_numpy(Rotation.random(4, random_state=2).as_matrix()).float()[None]
    with_camera = SlotTrack(track.centre, track.rotation, track.scale, track.weights, track.time, camera_rotation,
                            torch.arange(12.0).view(1, 4, 3))
    config = VideoModelConfig(guesses=3, prototypes=2, hidden=32, time_features=4)
    torch.manual_seed(0)
    plain = Forecaster(config)
    torch.manual_seed(0)
    ego = Forecaster(VideoModelConfig(**{**config.__dict__, "ego_motion": True}))
    ego.load_state_dict(plain.state_dict(), strict=False)
    delta = torch.tensor([1.0])
    assert torch.equal(ego(with_camera, delta).centre, plain(with_camera, delta).centre)  # zero-initialised output
    ego.head.weight.data.normal_()  # once the heads read the token, the camera's poses change the forecast
    ego.ego_out.weight.data.normal_()
    moved = with_camera.rebased(torch.eye(3)[None], torch.zeros(1, 3))
    moved.camera_centre = moved.camera_centre + torch.tensor([0.0, 0.0, 5.0])
    assert not torch.allclose(ego(with_camera, delta).centre, ego(moved, delta).centre)
    with pytest.raises(ValueError, match="ego_motion"):
        ego(track, delta)


def test_rotation_helpers_against_scipy():
    v = torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 1e-9]], dtype=torch.float64)
    assert torch.allclose(axis_angle_to_matrix(v), torch.tensor(Rotation.from_rotvec(v.numpy()).as_matrix()), atol=1e-9)
    r = torch.tensor(Rotation.random(5, random_state=1).as_matrix(), dtype=torch.float64)
    assert torch.allclose(rot6d_to_matrix(torch.cat([r[..., :, 0], r[..., :, 1]], -1)), r, atol=1e-9)


def test_relative_gt_poses_are_proper_and_map_points_like_the_synthia_poses():
    poses = np.stack([look_pose(np.array([1.0, 1.5, 2.0]), 0.1, 0.02), look_pose(np.array([3.0, 1.5, 6.0]), 0.5, 0.02)])
    r, t = relative_gt_poses(poses)
    assert np.allclose(np.linalg.det(r), 1.0)
    p_cv = np.array([[0.5, -0.2, 7.0]])
    # a point of camera 1, seen from camera 0's cv frame, equals world -> camera-0 of the SYNTHIA pose
    world = cv_to_world(p_cv, poses[1])
    r0 = poses[0][:3, :3] @ np.diag([1.0, -1.0, -1.0])
    expected = (world - poses[0][:3, 3]) @ r0
    assert np.allclose(p_cv @ r[1].T + t[1], expected)
    rel_r = torch.tensor(r[1:][None], dtype=torch.float64)
    rel_t = torch.tensor(t[1:][None], dtype=torch.float64)
    cr, ct = chain(rel_r, rel_t)
    assert torch.allclose(cr[0, 1], torch.tensor(r[1])) and torch.allclose(ct[0, 1], torch.tensor(t[1]))
    ir, it = invert(cr[0, 1], ct[0, 1])
    assert torch.allclose(apply(ir, it, apply(cr[0, 1], ct[0, 1], torch.tensor(p_cv))), torch.tensor(p_cv))


def test_carried_anchors_keep_identity_when_depth_order_flips():
    rng = np.random.default_rng(0)
    times = np.arange(8) * 0.2
    points, truth = [], []
    for t in times:  # blob A drives away (z 8 -> 15 m), blob B comes closer (z 14 -> 7 m)
        a = rng.normal([-2.0, 0, 8 + 5 * t], 0.3, (60, 3))
        b = rng.normal([2.0, 0, 14 - 5 * t], 0.3, (60, 3))
        points.append(np.concatenate([a, b]))
        truth.append(np.repeat([0, 1], 60))
    anchors = track_anchors(points, times, k=2, seed=0)
    first = anchors[0].label[truth[0] == 0][0]
    for a, lab in zip(anchors, truth, strict=True):
        assert np.all(a.label[lab == 0] == first) and np.all(a.label[lab == 1] == 1 - first)


def test_match_chain_undoes_a_permutation():
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 1, 5, 3, generator=g) * 10 + torch.linspace(0, 0.3, 4).view(1, 4, 1, 1)
    weights = torch.softmax(torch.randn(1, 1, 5, 3, generator=g), -1).expand(1, 4, 5, 3)
    perms = torch.stack([torch.arange(5), torch.tensor([2, 0, 1, 4, 3]), torch.tensor([4, 3, 2, 1, 0]),
                         torch.tensor([1, 2, 3, 4, 0])])[None]
    inverse = torch.argsort(perms, dim=-1)
    shuffled = reorder(centre, inverse)
    found = match_chain(shuffled[0], reorder(weights, inverse)[0])[None]
    assert torch.equal(reorder(shuffled, found), centre)


def test_step_per_second_bounds_the_correction_by_the_gap():
    """The same raw outputs (α = 0, step pre-tanh 0.5) move a slot by max_step · tanh(0.5) whatever Δ, or by
    max_step · |Δ| · tanh(0.5) with ``step_per_second`` (forwards and backwards in time)."""
    times = torch.tensor([0.0, 0.2, 0.4, 0.6])
    track, _, _ = cv_track(times, k=4)
    raw = torch.zeros(1, 1, 4, 7)
    raw[..., 1:4] = 0.5
    logits = torch.zeros(1, 1)
    for per_second in (False, True):
        model = Forecaster(VideoModelConfig(guesses=1, prototypes=2, hidden=16, time_features=4, max_step_m=5.0,
                                            step_per_second=per_second))
        for delta in (0.2, 2.0, -0.4):
            out = model.decode(track, torch.tensor([delta]), raw, logits)
            moved = out.centre[0, 0] - track.centre[0, -1]
            expected = 5.0 * (abs(delta) if per_second else 1.0) * math.tanh(0.5)
            assert torch.allclose(moved, torch.full_like(moved, expected), atol=1e-5)


def test_fixed_guesses_are_copy_last_and_the_whole_velocity_whatever_the_weights():
    """With ``fixed_guesses`` (0.0, 1.0) the last two guesses equal the copy-last and constant-velocity baselines
    bit for bit (centres and rotations), for randomised head weights and a given velocity; guess 0 stays learned
    (it moves when the head does) and no gradient reaches the fixed guesses' head outputs."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])
    track, _, _ = cv_track(times, k=4)
    velocity = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(3))
    model = Forecaster(VideoModelConfig(guesses=3, prototypes=2, hidden=16, time_features=4,
                                        fixed_guesses=(0.0, 1.0)))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    delta = torch.tensor([1.4])
    out = model(track, delta, velocity)
    assert torch.equal(out.centre[0, 1], copy_last(track).centre[0, 0])
    assert torch.equal(out.centre[0, 2], constant_velocity(track, delta, velocity).centre[0, 0])
    assert torch.equal(out.rotation[0, 1:], track.rotation[0, -1].expand(2, 4, 3, 3))
    assert not torch.allclose(out.centre[0, 0], out.centre[0, 1])
    raw, _ = model.heads(track, delta, velocity)
    raw.retain_grad()
    model.decode(track, delta, raw, torch.zeros(1, 3), velocity).centre.sum().backward()
    assert raw.grad[0, 1:].abs().max() == 0 and raw.grad[0, 0].abs().max() > 0


def test_fixed_slot_fallback_extrapolates_the_slots_only_where_no_object_moves():
    """``fixed_slot_fallback``: in a sample whose given velocity is zero for every slot, the whole-velocity fixed guess
    lands where the slots' own constant velocity does (analytic on a constant-velocity track: x0 + v (t_last + Δ));
    in a sample with one moving object it keeps the given velocity (zero for the others, as without the option);
    guess 0 and the copy-last guess are those of the model without the option, bit for bit."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])
    one, x0, v = cv_track(times, k=4)
    track = SlotTrack(*(x.expand(2, *x.shape[1:]) for x in (one.centre, one.rotation, one.scale, one.weights,
                                                              one.time)))
    given = torch.zeros(2, 4, 3)
    given[1, 2] = torch.tensor([1.0, 0.0, -2.0])  # sample 1: one object moves
    delta = torch.tensor([1.4, 1.4])
    config = dict(guesses=3, prototypes=2, hidden=16, time_features=4, fixed_guesses=(0.0, 1.0), velocity_frames=3)
    plain = Forecaster(VideoModelConfig(**config))
    fallback = Forecaster(VideoModelConfig(**config, fixed_slot_fallback=True))
    with torch.no_grad():
        for model in (plain, fallback):
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ours, reference = fallback(track, delta, given), plain(track, delta, given)
    torch.testing.assert_close(ours.centre[0, 2], x0 + v * (0.9 + 1.4))
    assert torch.equal(ours.centre[1, 2], constant_velocity(track, delta, given).centre[1, 0])
    assert torch.equal(ours.centre[:, :2], reference.centre[:, :2])
    assert torch.equal(reference.centre[0, 2], reference.centre[0, 1])  # without it: a second copy-last


def test_fixed_slot_fallback_mps_extrapolates_each_gated_slot_that_moves():
    """``fixed_slot_fallback_mps``: in a sample where one object moves, every other slot (gated: zero given velocity)
    whose own speed reaches the bound lands where its constant velocity does, the slower ones stay where they were
    (copy-last), the moving object keeps its given velocity; a sample with no moving object falls back whole, as
    before; guesses 0 and 1 are bit for bit those of the model without the bound."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])
    one, x0, v = cv_track(times, k=6, seed=3)
    track = SlotTrack(*(x.expand(2, *x.shape[1:]) for x in (one.centre, one.rotation, one.scale, one.weights,
                                                              one.time)))
    given = torch.zeros(2, 6, 3)
    given[1, 2] = torch.tensor([1.0, 0.0, -2.0])
    speed = v.norm(dim=-1)
    others = torch.tensor([k for k in range(6) if k != 2])
    ordered = speed[others].sort().values
    bound = float(ordered[1:3].mean())  # between two slots' speeds, clear of float noise in the fitted velocity
    fast = (speed >= bound) & (torch.arange(6) != 2)
    assert 0 < int(fast.sum()) < 5  # both kinds present
    config = dict(guesses=3, prototypes=2, hidden=16, time_features=4, fixed_guesses=(0.0, 1.0), velocity_frames=3,
                  fixed_slot_fallback=True)
    whole = Forecaster(VideoModelConfig(**config))
    per_slot = Forecaster(VideoModelConfig(**config, fixed_slot_fallback_mps=bound))
    per_slot.load_state_dict(whole.state_dict())
    delta = torch.tensor([1.4, 1.4])
    with torch.no_grad():
        ours, reference = per_slot(track, delta, given), whole(track, delta, given)
    expected = one.centre[0, -1].clone()  # copy-last for the slow gated slots
    expected[fast] = x0[fast] + v[fast] * (0.9 + 1.4)
    expected[2] = one.centre[0, -1, 2] + given[1, 2] * 1.4
    torch.testing.assert_close(ours.centre[1, 2], expected)
    torch.testing.assert_close(ours.centre[0, 2], x0 + v * (0.9 + 1.4))
    assert torch.equal(ours.centre[0], reference.centre[0])
    assert torch.equal(ours.centre[:, :2], reference.centre[:, :2])


def test_steady_line_matches_the_object_gates_line_fit():
    """:func:`steady_line` on noisy uneven tracks: the velocity and pass/fail of numpy's least-squares line
    (``object_tracks.line_fit``, the objects' gate) for every slot, with bounds between the slots' own values."""
    g = torch.Generator().manual_seed(4)
    times = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.2], dtype=torch.float64)
    track, _, _ = cv_track(times.float(), k=8, seed=4)
    centre = track.centre.double() + torch.randn(track.centre.shape, generator=g, dtype=torch.float64) * \
        torch.linspace(0.0, 1.0, 8, dtype=torch.float64).view(1, 1, 8, 1)
    track = SlotTrack(centre, track.rotation.double(), track.scale.double(), track.weights.double(), times[None])
    fits = [line_fit(times.numpy(), centre[0, :, k].numpy()) for k in range(8)]
    speed, residual = np.array([np.linalg.norm(s) for s, _ in fits]), np.array([r for _, r in fits])
    min_speed, max_residual = float(np.median(speed)), float(np.median(residual))
    velocity, passes = steady_line(track, min_speed, max_residual)
    np.testing.assert_allclose(velocity[0].numpy(), np.stack([s for s, _ in fits]), atol=1e-9)
    expected = (speed >= min_speed) & (residual <= max_residual)
    assert 0 < expected.sum() < 8
    assert passes[0, :, 0].tolist() == expected.tolist()
    assert not steady_line(SlotTrack(*(x[:, :2] for x in (track.centre, track.rotation, track.scale, track.weights,
                                                          track.time))), 0.0, 1e9)[1].any()  # two frames: no residual


def test_fixed_slot_fallback_residual_keeps_only_steadily_moving_gated_slots():
    """With ``fixed_slot_fallback_residual_m``: of the gated slots that move fast, a steady one lands on its analytic
    constant-velocity position and one that jumps about (a slot hopping between objects) stays where it was, while
    the speed-only fallback moves both; the object with a given velocity keeps it; guesses 0 and 1 unchanged."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])
    one, x0, v = cv_track(times, k=4, seed=5)
    v = torch.tensor([[3.0, 0.0, 1.0], [2.5, 0.0, -2.0], [0.1, 0.0, 0.1], [0.0, 0.0, 4.0]])
    centre = x0 + v * times.view(-1, 1, 1)
    centre[:, 1] += torch.tensor([[0.0, 0, 0], [3.0, 0, 0], [-3.0, 0, 0], [0.0, 0, 0]])  # slot 1 jumps about
    track = SlotTrack(centre[None], one.rotation, one.scale, one.weights, one.time)
    given = torch.zeros(1, 4, 3)
    given[0, 3] = torch.tensor([0.0, 0.0, 2.0])  # slot 3's object moves (gated through)
    config = dict(guesses=3, prototypes=2, hidden=16, time_features=4, fixed_guesses=(0.0, 1.0), velocity_frames=2,
                  fixed_slot_fallback=True, fixed_slot_fallback_mps=1.0)
    speed_only = Forecaster(VideoModelConfig(**config))
    steady = Forecaster(VideoModelConfig(**config, fixed_slot_fallback_residual_m=0.4))
    steady.load_state_dict(speed_only.state_dict())
    delta = torch.tensor([1.5])
    with torch.no_grad():
        ours, loose = steady(track, delta, given), speed_only(track, delta, given)
    last = centre[-1]
    expected = last.clone()
    expected[0] = x0[0] + v[0] * (0.9 + 1.5)
    expected[3] = last[3] + given[0, 3] * 1.5
    torch.testing.assert_close(ours.centre[0, 2], expected)
    assert not torch.allclose(loose.centre[0, 2, 1], last[1])  # the speed alone moves the jumping slot
    assert torch.equal(ours.centre[0, :2], loose.centre[0, :2])


def test_fixed_guesses_refuse_sampled_guess_counts():
    model = Forecaster(VideoModelConfig(guesses=3, prototypes=2, hidden=16, time_features=4, fixed_guesses=(0.0,)))
    track, _, _ = cv_track(torch.tensor([0.0, 0.2]), k=2)
    with pytest.raises(ValueError, match="fixed_guesses"):
        model.decode(track, torch.tensor([1.0]), torch.zeros(1, 5, 2, 7), torch.zeros(1, 5))


def test_guess_zero_starts_at_its_fraction_of_the_velocity():
    """Untrained (zero last layer), guess 0 is copy-last by default and the whole velocity with
    ``guess0_start_alpha`` 1.0; the other guesses keep their 0 ... 1.5 start."""
    times = torch.tensor([0.0, 0.2, 0.4, 0.6])
    track, _, _ = cv_track(times, k=3)
    velocity = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(5))
    delta = torch.tensor([1.0])
    for start, expected in ((0.0, copy_last(track)), (1.0, constant_velocity(track, delta, velocity))):
        model = Forecaster(VideoModelConfig(guesses=3, prototypes=2, hidden=16, time_features=4,
                                            guess0_start_alpha=start))
        out = model(track, delta, velocity)
        torch.testing.assert_close(out.centre[0, 0], expected.centre[0, 0])
        torch.testing.assert_close(out.centre[0, 2], constant_velocity(track, 1.5 * delta, velocity).centre[0, 0])


def test_a_fixed_guess_can_scale_the_slots_own_velocity():
    """``fixed_guess_velocity`` ("velocity_from", "slots") with fractions (1.0, 0.75): guess 1 extrapolates the given
    velocity whole and guess 2 three quarters of the slots' own constant velocity (analytic on a constant-velocity
    track: x0 + v t_last + 0.75 v Δ), in a sample where an object moves as in one where none does; guess 0 is the
    model's without the option, bit for bit."""
    times = torch.tensor([0.0, 0.2, 0.7, 0.9])
    one, x0, v = cv_track(times, k=4)
    track = SlotTrack(*(x.expand(2, *x.shape[1:]) for x in (one.centre, one.rotation, one.scale, one.weights,
                                                              one.time)))
    given = torch.zeros(2, 4, 3)
    given[1, 2] = torch.tensor([1.0, 0.0, -2.0])
    delta = torch.tensor([1.4, 1.4])
    config = dict(guesses=3, prototypes=2, hidden=16, time_features=4, fixed_guesses=(1.0, 0.75), velocity_frames=3)
    plain = Forecaster(VideoModelConfig(**config))
    own = Forecaster(VideoModelConfig(**config, fixed_guess_velocity=("velocity_from", "slots")))
    with torch.no_grad():
        for model in (plain, own):
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ours, reference = own(track, delta, given), plain(track, delta, given)
    for b in range(2):
        torch.testing.assert_close(ours.centre[b, 2], x0 + v * 0.9 + 0.75 * v * 1.4)
    assert torch.equal(ours.centre[1, 1], constant_velocity(track, delta, given).centre[1, 0])
    assert torch.equal(ours.centre[:, :2], reference.centre[:, :2])


def test_detached_confidence_trains_only_its_own_layer():
    """``confidence_detached``: a loss on the confidence logits reaches the confidence layer and no other parameter
    (the trunk, and so guess 0, stay as they are); attached (the default) it reaches the trunk too. The logits and
    guesses themselves are the same either way."""
    times = torch.tensor([0.0, 0.2, 0.4, 0.6])
    track, _, _ = cv_track(times, k=3)
    delta = torch.tensor([1.0])
    config = dict(guesses=3, prototypes=2, hidden=16, time_features=4)
    attached = Forecaster(VideoModelConfig(**config))
    detached = Forecaster(VideoModelConfig(**config, confidence_detached=True))
    with torch.no_grad():
        for p in attached.parameters():  # non-zero last layers, so every path carries gradient
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    detached.load_state_dict(attached.state_dict())
    reached, outputs = {}, {}
    for name, model in (("attached", attached), ("detached", detached)):
        raw, logits = model.heads(track, delta)
        logits.square().sum().backward()
        reached[name] = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
        outputs[name] = (raw.detach(), logits.detach())
    assert reached["detached"] == {"confidence.weight", "confidence.bias"}
    assert reached["attached"] > reached["detached"]
    for a, b in zip(outputs["attached"], outputs["detached"]):
        assert torch.equal(a, b)
