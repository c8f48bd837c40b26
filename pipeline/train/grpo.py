"""GRPO over forecast guesses (group relative policy optimisation, DeepSeekMath's objective on one step).

For each training context, the stochastic forecaster (:class:`pipeline.models.video.policy.GuessPolicy`)
samples a group of G guesses of the slots at t + Δ. Each guess earns a reward from its forecast
Chamfer error e (one-directional, metres): r = exp(-e / tolerance), 1 for a perfect guess, e^-1 at one
tolerance, so "within a tolerance of the truth" is rewarded and a guess twice as far earns less. The
advantage of a guess is its reward relative to its group, A = (r - mean_group(r)) / (std_group(r) + ε)
(sample std, ddof 1), and the forecaster follows the clipped surrogate

    L = -mean_{b,g} min(ρ A, clip(ρ, 1 - ε_clip, 1 + ε_clip) A) + β KL(π ‖ π_ref),   ρ = π(a) / π_old(a),

with π_old the policy that sampled the group and π_ref the supervised forecaster (a frozen copy of the
forecaster after ``grpo_warmup`` best-of-k steps). Each group is used for one update, so ρ = 1 at the update
and the clipping only bounds updates when a group would be reused; the KL term is exact over the mixture's
(component, output) pairs. The Chamfer is not differentiated: the forecaster learns from rewards only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pipeline.models.video.forecaster import Forecast, Forecaster, SlotTrack
from pipeline.models.video.policy import GuessPolicy

ADVANTAGE_EPS = 1e-4


def rewards(errors_m: Tensor, tolerance_m: float) -> Tensor:
    """(B, G) forecast errors (m) -> rewards exp(-error / tolerance) in (0, 1]."""
    return torch.exp(-errors_m / tolerance_m)


def group_advantages(reward: Tensor, eps: float = ADVANTAGE_EPS) -> Tensor:
    """(B, G) rewards -> (reward - group mean) / (group sample std + eps), per row (a group of one: zeros)."""
    if reward.shape[1] < 2:
        return torch.zeros_like(reward)
    return (reward - reward.mean(dim=1, keepdim=True)) / (reward.std(dim=1, keepdim=True) + eps)


def clipped_surrogate(log_prob: Tensor, old_log_prob: Tensor, advantage: Tensor, clip: float) -> Tensor:
    """-mean(min(ρ A, clip(ρ, 1 - clip, 1 + clip) A)) with ρ = exp(log_prob - old_log_prob); all (B, G)."""
    ratio = torch.exp(log_prob - old_log_prob)
    return -torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage).mean()


def policy(forecaster: Forecaster, context: SlotTrack, delta_s: Tensor, velocity: Tensor | None = None) -> GuessPolicy:
    """The forecaster's guess policy for a context (one forward pass; ``velocity``: :meth:`Forecaster.velocity`)."""
    mean, logits = forecaster.heads(context, delta_s, velocity)
    return GuessPolicy(mean, logits, forecaster.log_std)


def grpo_loss(forecaster: Forecaster, reference: Forecaster, context: SlotTrack, delta_s: Tensor,
              score: Callable[[Forecast], Tensor], group: int, clip: float, kl_weight: float, tolerance_m: float,
              generator: torch.Generator | None, velocity: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """GRPO loss of one batch of contexts (B, C, K, ...) and the terms to log.

    ``score`` maps a :class:`Forecast` with S guesses to its (B, S) errors in metres (no gradient needed);
    ``velocity`` (B, K, 3): the velocity the guesses extrapolate (:meth:`Forecaster.velocity`).
    """
    pi = policy(forecaster, context, delta_s, velocity)
    with torch.no_grad():
        ref = policy(reference, context, delta_s, velocity)
    component, raw = pi.sample(group, generator)
    with torch.no_grad():
        errors = score(forecaster.decode(context, delta_s, raw, pi.logits.detach(), velocity))
        reward = rewards(errors, tolerance_m)
        advantage = group_advantages(reward)
    log_prob = pi.log_prob(component, raw)
    surrogate = clipped_surrogate(log_prob, log_prob.detach(), advantage, clip)
    kl = pi.kl(ref).mean()
    loss = surrogate + kl_weight * kl
    return loss, {"grpo_reward": reward.mean().item(), "grpo_kl": kl.item(), "grpo_sample_m": errors.mean().item(),
                  "grpo_best_sample_m": errors.min(dim=1).values.mean().item(),
                  "grpo_std": pi.log_std.exp().mean().item()}
