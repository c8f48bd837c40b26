"""Forecasting baselines in the world frame: one guess and k guesses (fair against a k-guess model).

Every baseline moves only the slot centres (metres, world frame); rotation, scale and prototype
weights are the last context frame's, as the forecaster's. Times are the frames' true time stamps
(seconds, uneven gaps allowed) and the target lies ``delta_s`` seconds after the last context frame.

One guess:

- **copy-last** and **constant velocity** (last two frames): :mod:`pipeline.models.video.forecaster`;
- **constant acceleration** (:func:`constant_acceleration`): the parabola through the last three
  context frames, evaluated at the target time (exact for x(t) = a + b t + c t², the motion prior's
  model).

k guesses (best-of-k is the minimum error over the guesses, as for the model):

- **speed scalings** (:func:`speed_scalings`): constant velocity with the speed scaled by
  α_g = 0 ... 1.5 (``linspace``; α = 0 is copy-last, α = 1 constant velocity when it is on the grid):
  exactly the forecaster's starting guesses;
- **context lengths** (:func:`context_lengths`): guess g fits the last g + 1 context frames with a
  polynomial of degree min(g, 2) by least squares (g = 0 copy-last, 1 constant velocity, 2 constant
  acceleration, g >= 3 a parabola over more frames) and extrapolates it; guesses needing more frames
  than the context has reuse the whole context.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.models.video.forecaster import Forecast, SlotTrack, copy_last

SPEED_SCALES = (0.0, 1.5)


def polynomial_fit(context: SlotTrack, delta_s: Tensor, frames: int, degree: int) -> Tensor:
    """Least-squares polynomial of ``degree`` through the last ``frames`` context centres, at the target.

    Args:
        context: (B, C, K, ...) track; delta_s: (B,) seconds after the last context frame.
        frames: context frames used (clamped to C); degree: clamped to ``frames - 1``.
    Returns:
        (B, K, 3) extrapolated centres (metres); with ``frames = degree + 1`` the interpolating polynomial.
    """
    c = context.centre.shape[1]
    n = max(1, min(frames, c))
    d = max(0, min(degree, n - 1))
    centre = context.centre[:, -n:].double()  # (B, n, K, 3)
    times = (context.time[:, -n:] - context.time[:, -1:]).double()  # (B, n) <= 0, last = 0
    scale = times.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)  # conditioning: times in [-1, 0]
    powers = torch.arange(d + 1, dtype=torch.float64, device=times.device)
    design = (times / scale).unsqueeze(-1) ** powers  # (B, n, d+1)
    b, _, k, _ = centre.shape
    coef = torch.linalg.pinv(design) @ centre.reshape(b, n, k * 3)  # (B, d+1, K*3)
    at = ((delta_s.double().view(-1, 1) / scale) ** powers)  # (B, d+1)
    return (at.unsqueeze(1) @ coef).view(b, k, 3).to(context.centre.dtype)


def with_centres(context: SlotTrack, centres: Tensor) -> Forecast:
    """A :class:`Forecast` with guesses ``centres`` (B, G, K, 3) and the last frame's other states."""
    last = copy_last(context)
    g = centres.shape[1]
    return Forecast(centres, last.rotation.expand(-1, g, -1, -1, -1), last.scale, last.weights,
                    torch.zeros(centres.shape[0], g, device=centres.device))


def constant_acceleration(context: SlotTrack, delta_s: Tensor) -> Forecast:
    """One guess: the parabola through the last three context centres (fewer frames: lower degree)."""
    return with_centres(context, polynomial_fit(context, delta_s, 3, 2)[:, None])


def speed_scalings(context: SlotTrack, delta_s: Tensor, guesses: int) -> Forecast:
    """``guesses`` constant-velocity guesses with the speed scaled by ``linspace(0, 1.5, guesses)``."""
    alphas = torch.linspace(*SPEED_SCALES, guesses) if guesses > 1 else torch.ones(1)
    last = context.centre[:, -1]
    step = polynomial_fit(context, delta_s, 2, 1) - last  # constant-velocity displacement (B, K, 3)
    return with_centres(context, last[:, None] + alphas.to(last).view(1, -1, 1, 1) * step[:, None])


def context_lengths(context: SlotTrack, delta_s: Tensor, guesses: int) -> Forecast:
    """``guesses`` guesses: guess g fits the last g + 1 frames with degree min(g, 2) (module docstring)."""
    return with_centres(context, torch.stack([polynomial_fit(context, delta_s, g + 1, min(g, 2))
                                              for g in range(guesses)], dim=1))
