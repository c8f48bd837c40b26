"""The stochastic forecaster GRPO trains: a mixture of Gaussians over the forecaster's raw guess outputs.

A sampled guess is drawn in two steps: a component g ~ Categorical(softmax(logits)) (the confidence
logits of the G deterministic guesses), then raw outputs x ~ N(μ_g, diag(σ²)) around that guess's raw
outputs μ_g (B, G, K, 7: α, step and turn before tanh, see :mod:`pipeline.models.video.forecaster`),
with σ = exp(log_std) (7,) learned and shared by slots and guesses. The action is the pair (g, x), so its
log-probability is exact, log softmax(logits)_g + Σ_{k, j} log N(x_kj; μ_gkj, σ_j), and so is the KL
divergence between two such policies over (g, x) (chain rule): KL(p_g ‖ q_g) + Σ_g p_g KL(N_g ‖ N'_g).
The most confident guess (best-of-1) is the mean μ_g of the component with the largest logit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class GuessPolicy:
    """Mixture over guesses: component means (B, G, K, 7), logits (B, G), log std (7,)."""

    mean: Tensor
    logits: Tensor
    log_std: Tensor

    def sample(self, samples: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``samples`` draws per context, without gradient: components (B, S) and raw outputs (B, S, K, 7)."""
        with torch.no_grad():
            probs = torch.softmax(self.logits, dim=-1)
            component = torch.multinomial(probs, samples, replacement=True, generator=generator)
            mean = torch.gather(self.mean, 1, component.view(component.shape + (1, 1)).expand(
                -1, -1, *self.mean.shape[2:]))
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return component, mean + noise * self.log_std.exp()

    def log_prob(self, component: Tensor, raw: Tensor) -> Tensor:
        """(B, S) log-probability of the actions (component (B, S), raw (B, S, K, 7))."""
        mean = torch.gather(self.mean, 1, component.view(component.shape + (1, 1)).expand(-1, -1, *self.mean.shape[2:]))
        z = (raw - mean) / self.log_std.exp()
        gauss = (-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(dim=(-1, -2))
        return torch.log_softmax(self.logits, dim=-1).gather(1, component) + gauss

    def kl(self, other: "GuessPolicy") -> Tensor:
        """(B,) KL(self ‖ other) over (component, raw outputs), exact (module docstring)."""
        logp, logq = torch.log_softmax(self.logits, -1), torch.log_softmax(other.logits, -1)
        categorical = (logp.exp() * (logp - logq)).sum(-1)
        var, var_o = (2 * self.log_std).exp(), (2 * other.log_std).exp()
        gauss = (other.log_std - self.log_std + (var + (self.mean - other.mean) ** 2) / (2 * var_o) - 0.5).sum(dim=(-1, -2))
        return categorical + (logp.exp() * gauss).sum(-1)
