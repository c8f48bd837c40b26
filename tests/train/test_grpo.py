"""GRPO over guesses: rewards, group advantages and the clipped surrogate against hand computations; the
guess policy's log-probability and KL against torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from pipeline.models.video.policy import GuessPolicy
from pipeline.train.grpo import clipped_surrogate, group_advantages, rewards


def test_group_advantages_by_hand():
    reward = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.2, 0.2]])
    adv = group_advantages(reward, eps=0.0 + 1e-12)
    # row 0: mean 0.5, sample std sqrt(((0.5)^2 + (0.5)^2 + 0) / 2) = 0.5
    assert adv[0].tolist() == pytest.approx([1.0, -1.0, 0.0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([0.0, 0.0, 0.0])  # equal rewards: no signal
    assert group_advantages(torch.tensor([[3.0]])).tolist() == [[0.0]]


def test_rewards_within_a_tolerance():
    r = rewards(torch.tensor([[0.0, 0.5, 1.0]]), 0.5)
    assert r.tolist()[0] == pytest.approx([1.0, math.exp(-1), math.exp(-2)])


def test_clipped_surrogate_by_hand():
    advantage = torch.tensor([[1.0, -1.0, 2.0, -2.0]])
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    # min(ρA, clip(ρ)A) with clip 0.2: [1.2, -1.5, 1.0, -1.6]
    expected = -(1.2 - 1.5 + 1.0 - 1.6) / 4
    assert clipped_surrogate(new, old, advantage, 0.2).item() == pytest.approx(expected)
    # at the sampling policy (ρ = 1) the gradient is the plain policy gradient -A/N per log-probability
    logp = torch.zeros(1, 4, requires_grad=True)
    clipped_surrogate(logp, logp.detach(), advantage, 0.2).backward()
    assert logp.grad.tolist()[0] == pytest.approx((-advantage / 4).tolist()[0])


def random_policy(seed: int, b: int = 2, g: int = 3, k: int = 2) -> GuessPolicy:
    gen = torch.Generator().manual_seed(seed)
    return GuessPolicy(torch.randn(b, g, k, 7, generator=gen, dtype=torch.float64),
                       torch.randn(b, g, generator=gen, dtype=torch.float64),
                       torch.randn(7, generator=gen, dtype=torch.float64) * 0.3 - 1.0)


def test_policy_log_prob_and_kl_against_torch_distributions():
    pi, ref = random_policy(0), random_policy(1)
    component, raw = pi.sample(5, torch.Generator().manual_seed(2))
    assert component.shape == (2, 5) and raw.shape == (2, 5, 2, 7)
    for b in range(2):
        for s in range(5):
            c = component[b, s]
            expected = (Categorical(logits=pi.logits[b]).log_prob(c)
                        + Normal(pi.mean[b, c], pi.log_std.exp()).log_prob(raw[b, s]).sum())
            assert pi.log_prob(component, raw)[b, s].item() == pytest.approx(expected.item(), rel=1e-9)
    p = Categorical(logits=pi.logits)
    gauss = kl_divergence(Normal(pi.mean, pi.log_std.exp()), Normal(ref.mean, ref.log_std.exp())).sum(dim=(-1, -2))
    expected = kl_divergence(p, Categorical(logits=ref.logits)) + (p.probs * gauss).sum(-1)
    assert torch.allclose(pi.kl(ref), expected, rtol=1e-9)
    assert torch.allclose(pi.kl(pi), torch.zeros(2, dtype=torch.float64), atol=1e-12)


def test_policy_samples_follow_the_confidences():
    pi = GuessPolicy(torch.zeros(1, 2, 1, 7), torch.log(torch.tensor([[0.8, 0.2]])), torch.full((7,), -3.0))
    pi.mean[0, 1] += 10.0
    component, raw = pi.sample(4000, torch.Generator().manual_seed(0))
    share = (component == 0).float().mean().item()
    assert share == pytest.approx(0.8, abs=0.03)
    assert torch.allclose(raw[component == 1].mean(dim=(0, 1)), torch.full((7,), 10.0), atol=0.01)
