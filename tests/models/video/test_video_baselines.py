"""Forecasting baselines against analytic trajectories (uneven time stamps, forward and backward targets)."""

from __future__ import annotations

import torch

from pipeline.models.video.baselines import constant_acceleration, context_lengths, polynomial_fit, speed_scalings
from pipeline.models.video.forecaster import SlotTrack, constant_velocity, copy_last

TIMES = torch.tensor([0.0, 0.4, 0.6, 1.3])  # uneven gaps (seconds)


def track(times: torch.Tensor, coefficients: list[torch.Tensor]) -> SlotTrack:
    """K = 2 slots on x(t) = Σ c_i t^i (B = 1)."""
    centre = sum(c * times.view(-1, 1, 1) ** i for i, c in enumerate(coefficients))  # (T, K, 3)
    t, k = centre.shape[:2]
    return SlotTrack(centre[None], torch.eye(3).expand(1, t, k, 3, 3), torch.ones(1, t, k),
                     torch.full((1, t, k, 2), 0.5), times[None])


def coefficients(degree: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, generator=g) * 3 for _ in range(degree + 1)]


def truth(coef: list[torch.Tensor], t: float) -> torch.Tensor:
    return sum(c * t**i for i, c in enumerate(coef))


def test_constant_acceleration_is_exact_on_a_parabola_and_constant_velocity_is_not():
    coef = coefficients(2)
    context = track(TIMES, coef)
    for delta in (0.2, 1.0, 2.5, -0.9):
        target = truth(coef, 1.3 + delta)
        guess = constant_acceleration(context, torch.tensor([delta]))
        assert guess.centre.shape == (1, 1, 2, 3)
        assert torch.allclose(guess.centre[0, 0], target, atol=1e-4)
        assert not torch.allclose(constant_velocity(context, torch.tensor([delta])).centre[0, 0], target, atol=1e-2)


def test_constant_velocity_fits_are_exact_on_a_line():
    coef = coefficients(1, seed=3)
    context = track(TIMES, coef)
    delta = torch.tensor([1.7])
    target = truth(coef, 3.0)
    assert torch.allclose(polynomial_fit(context, delta, 2, 1)[0], target, atol=1e-4)
    assert torch.allclose(polynomial_fit(context, delta, 4, 1)[0], target, atol=1e-4)  # least squares, 4 frames
    assert torch.allclose(constant_acceleration(context, delta).centre[0, 0], target, atol=1e-4)


def test_context_lengths_are_copy_last_constant_velocity_and_parabola():
    coef = coefficients(2, seed=5)
    context = track(TIMES, coef)
    delta = torch.tensor([0.8])
    guesses = context_lengths(context, delta, 3).centre[0]
    assert guesses.shape == (3, 2, 3)
    assert torch.allclose(guesses[0], copy_last(context).centre[0, 0], atol=1e-5)
    assert torch.allclose(guesses[1], constant_velocity(context, delta).centre[0, 0], atol=1e-4)
    assert torch.allclose(guesses[2], truth(coef, 2.1), atol=1e-4)
    # more guesses than context frames: the fit reuses the whole context (least-squares parabola)
    assert torch.isfinite(context_lengths(context, delta, 6).centre).all()


def test_speed_scalings_span_copy_last_to_one_and_a_half_times_constant_velocity():
    context = track(TIMES, coefficients(1, seed=7))
    delta = torch.tensor([0.5])
    guesses = speed_scalings(context, delta, 4).centre[0]
    last = context.centre[0, -1]
    step = constant_velocity(context, delta).centre[0, 0] - last
    for g, alpha in enumerate((0.0, 0.5, 1.0, 1.5)):
        assert torch.allclose(guesses[g], last + alpha * step, atol=1e-4)
    assert torch.allclose(speed_scalings(context, delta, 1).centre[0, 0], last + step, atol=1e-4)
