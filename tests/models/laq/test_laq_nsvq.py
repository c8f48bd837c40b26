"""NSVQ: noise substitution keeps the quantisation distance, gradients, hard codes, replacement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.laq.nsvq import NSVQ, nearest_code, perplexity


def brute_force_nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    out = []
    for row in x:
        out.append(min(range(len(codebook)), key=lambda k: float(((row - codebook[k]) ** 2).sum())))
    return torch.tensor(out)


def test_nearest_code_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    x, codebook = torch.randn(50, 6, generator=gen, dtype=torch.float64), torch.randn(17, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(nearest_code(x, codebook), brute_force_nearest(x, codebook))


def test_eval_returns_hard_argmin_codes():
    torch.manual_seed(0)
    q = NSVQ(12, 5).eval()
    x = torch.randn(3, 4, 5)
    out, idx = q(x)
    expected = brute_force_nearest(x.reshape(-1, 5).double(), q.codebook.detach().double()).reshape(3, 4)
    assert torch.equal(idx, expected)
    assert torch.equal(out, q.codebook.detach()[expected])
    assert q.usage.sum() == 0  # eval does not count


def test_noise_substitution_keeps_error_norm_and_changes_direction():
    torch.manual_seed(1)
    q = NSVQ(8, 16).train()
    x = torch.randn(40, 16)
    out, idx = q(x)
    hard = q.codebook.detach()[idx]
    true_err = (x - hard).norm(dim=1)
    sub_err = (out.detach() - x).norm(dim=1)
    torch.testing.assert_close(sub_err, true_err, rtol=1e-5, atol=1e-6)
    # the substituted error is a random direction, not the true one
    cos = torch.nn.functional.cosine_similarity(out.detach() - x, hard - x, dim=1)
    assert cos.abs().mean() < 0.5
    assert q.usage.sum() == 40 and torch.equal(q.usage, torch.bincount(idx, minlength=8).double())


def test_gradients_reach_input_and_only_selected_codes():
    torch.manual_seed(2)
    q = NSVQ(32, 4).train()
    x = torch.randn(6, 4, requires_grad=True)
    out, idx = q(x)
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grad_rows = q.codebook.grad.abs().sum(1) > 0
    selected = torch.zeros(32, dtype=torch.bool)
    selected[idx] = True
    assert torch.equal(grad_rows, selected)


def test_replacement_reseeds_unused_codes_without_duplicates():
    torch.manual_seed(3)
    q = NSVQ(10, 8)
    with torch.no_grad():
        q.codebook.copy_(torch.randn(10, 8))
    before = q.codebook.detach().clone()
    q.usage.copy_(torch.tensor([5, 0, 3, 0, 0, 0, 0, 0, 9, 0], dtype=torch.float64))  # used: 0, 2, 8
    replaced = q.replace_unused(steps=10, threshold=0.1, noise=0.01)  # dead: < 1 use in 10 steps
    after = q.codebook.detach()
    assert replaced == 7
    assert torch.equal(after[[0, 2, 8]], before[[0, 2, 8]])
    dead = [1, 3, 4, 5, 6, 7, 9]
    used = before[[0, 2, 8]]
    for k in dead:
        dist = (used - after[k]).norm(dim=1)
        nearest = int(dist.argmin())
        # a perturbed copy of a used code: close to it (about 1 % of its norm), but not identical
        assert 1e-4 * used[nearest].norm() < dist[nearest] < 0.05 * used[nearest].norm()
    assert len(torch.unique(after, dim=0)) == 10
    assert q.usage.sum() == 0
    # a point on a replaced code now selects it, ties are broken
    assert int(nearest_code(after[dead[0]][None], after)) == dead[0]


def test_replacement_from_latents_lands_on_recent_inputs_and_is_selected():
    torch.manual_seed(4)
    q = NSVQ(6, 3, recent=8)
    q.train()
    first, second = torch.randn(7, 3), torch.randn(5, 3) + 10.0
    q(first)
    q(second)  # 12 rows through a ring of 8: slots 0..6 ← first, then 7, 0, 1, 2, 3 ← second
    assert int(q.recent_seen) == 12
    assert torch.equal(q.recent[[7, 0, 1, 2, 3]], second) and torch.equal(q.recent[4:7], first[4:7])
    q.usage.copy_(torch.tensor([0, 0, 0, 0, 0, 12], dtype=torch.float64))
    before = q.codebook.detach().clone()
    assert q.replace_unused(steps=2, threshold=1.0, noise=0.01, source="latents") == 5
    after = q.codebook.detach()
    assert torch.equal(after[5], before[5])
    for k in range(5):  # each new code is a perturbed recent input (about 1 % of its norm away)
        dist = (q.recent - after[k]).norm(dim=1)
        assert 0 < dist.min() < 0.05 * q.recent[int(dist.argmin())].norm()
    with pytest.raises(ValueError):
        q.replace_unused(steps=1, threshold=1.0, source="nearby")


def test_replacement_with_threshold_per_step():
    q = NSVQ(4, 2)
    q.usage.copy_(torch.tensor([100, 9, 10, 0], dtype=torch.float64))
    assert q.replace_unused(steps=100, threshold=0.1) == 2  # 9/100 and 0/100 are below 0.1 per step
    with pytest.raises(ValueError):
        q.replace_unused(steps=0, threshold=0.1)


def test_perplexity_hand_computed():
    assert perplexity([4, 0, 0]) == pytest.approx(1.0)
    assert perplexity([1, 1, 1, 1]) == pytest.approx(4.0, rel=1e-9)
    p = np.array([0.5, 0.25, 0.25])
    assert perplexity([2, 1, 1]) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)  # = 2^1.5
    assert perplexity([2, 1, 1]) == pytest.approx(2 ** 1.5, rel=1e-9)
    assert np.isnan(perplexity([0, 0]))
