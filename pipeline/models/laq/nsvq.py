"""NSVQ: vector quantization trained by noise substitution (Vali & Bäckström, IEEE Access 2022).

Training forward: the hard code ``q = c[k*]`` with ``k* = argmin_k ||x - c_k||²`` is replaced by
``x + ||x - q|| * v / ||v||`` with ``v ~ N(0, I)``: the quantisation error is simulated by a random
direction of the same length, so the gradient reaches ``x`` directly and the selected codes through the
scalar ``||x - q||``. Evaluation (``model.eval()``) returns ``q`` itself. No commitment / codebook loss.

Dead codes: ``usage`` counts assignments (a buffer, summed over DDP ranks at replacement time).
:meth:`NSVQ.replace_unused` overwrites every code used fewer than ``threshold`` times per step since
the last replacement, then resets the counters. The new code is, with ``source="latents"``, a randomly
chosen recent encoder output (the last ``recent`` training inputs of the quantizer, a ring buffer): a code
placed where the data is, so it is selected at once (a data-dependent re-initialisation, as k-means
seeding); with ``source="codes"`` (the reference code's rule), a copy of a randomly chosen used code.
Either gets Gaussian noise of norm ``noise · ||c||`` (the reference code's 1e-12 noise is below float32
resolution and leaves exact duplicates).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.distributed import all_reduce_sum, broadcast_, is_distributed

_TINY = 1e-20  # inside square roots: keeps the gradient of ||·|| finite at 0


def nearest_code(x: Tensor, codebook: Tensor) -> Tensor:
    """Indices (M,) of the nearest codebook row (K, D) for each row of ``x`` (M, D), squared Euclidean."""
    distances = x.pow(2).sum(1, keepdim=True) - 2.0 * x @ codebook.t() + codebook.pow(2).sum(1)[None, :]
    return distances.argmin(dim=1)


def perplexity(counts) -> float:
    """exp(entropy) of the code distribution given by ``counts`` (K,): ``exp(-Σ_{p>0} p log p)``.

    1 = a single code used, K = uniform use of all K codes; NaN for no assignments.
    """
    counts = np.asarray(counts, dtype=np.float64).ravel()
    if counts.sum() <= 0:
        return float("nan")
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


class NSVQ(nn.Module):
    """Codebook (``codebook_size``, ``dim``) with noise-substitution training and usage counters."""

    def __init__(self, codebook_size: int, dim: int, init_scale: float = 1.0, recent: int = 256):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) * init_scale / math.sqrt(dim))
        self.register_buffer("usage", torch.zeros(codebook_size, dtype=torch.float64))
        # ring buffer of the last training inputs (rows) and how many were ever written
        self.register_buffer("recent", torch.zeros(recent, dim))
        self.register_buffer("recent_seen", torch.zeros((), dtype=torch.int64))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (..., D) → (quantized (..., D), indices (...) int64).

        Training: noise-substituted output, counters updated. Eval: the hard codes.
        """
        flat = x.reshape(-1, x.shape[-1])
        with torch.no_grad():
            indices = nearest_code(flat.detach(), self.codebook.detach())
        hard = self.codebook[indices]
        if self.training:
            noise = torch.randn_like(flat)
            error_norm = (flat - hard).pow(2).sum(1, keepdim=True).add(_TINY).sqrt()
            noise_norm = noise.pow(2).sum(1, keepdim=True).add(_TINY).sqrt()
            out = flat + error_norm / noise_norm * noise
            with torch.no_grad():
                self.usage.index_add_(0, indices, torch.ones_like(indices, dtype=self.usage.dtype))
                self._remember(flat.detach())
        else:
            out = hard
        return out.reshape(x.shape), indices.reshape(x.shape[:-1])

    def lookup(self, indices: Tensor) -> Tensor:
        """Hard codes (..., D) for integer ``indices`` (...)."""
        return self.codebook[indices]

    def _remember(self, rows: Tensor) -> None:
        """Write ``rows`` (M, D) into the ring buffer ``recent`` (the newest ones when M exceeds it)."""
        size = self.recent.shape[0]
        rows = rows[-size:].to(self.recent.dtype)
        slots = (int(self.recent_seen) + torch.arange(len(rows), device=rows.device)) % size
        self.recent[slots] = rows
        self.recent_seen += len(rows)

    @torch.no_grad()
    def replace_unused(self, steps: int, threshold: float, noise: float = 0.01, source: str = "codes") -> int:
        """Re-seed codes used fewer than ``threshold`` times per step over the last ``steps`` steps.

        ``source``: ``latents`` (recent encoder outputs, while any were seen) or ``codes`` (used codes).
        Counts are summed over DDP ranks first; rank 0 draws the replacements and broadcasts the
        codebook, so every rank holds the same codebook afterwards. Returns the number replaced.
        """
        if steps < 1:
            raise ValueError(f"steps = {steps} must be >= 1")
        if source not in ("latents", "codes"):
            raise ValueError(f"source = {source!r} must be 'latents' or 'codes'")
        all_reduce_sum(self.usage)
        unused = self.usage / steps < threshold
        n_unused = int(unused.sum())
        used_idx = torch.nonzero(~unused).flatten()
        codebook = self.codebook.data
        seen = min(int(self.recent_seen), self.recent.shape[0])
        if n_unused:
            target = unused
            if source == "latents" and seen:
                rows = self.recent[torch.randint(seen, (n_unused,), device=codebook.device)].to(codebook.dtype)
            elif len(used_idx) == 0:
                rows, target = codebook, torch.ones_like(unused)
            else:
                rows = codebook[used_idx[torch.randint(len(used_idx), (n_unused,), device=codebook.device)]]
            scale = noise * rows.norm(dim=1, keepdim=True).clamp_min(1e-6) / math.sqrt(codebook.shape[1])
            codebook[target] = rows + torch.randn_like(rows) * scale
        if is_distributed():
            broadcast_(codebook, src=0)
        self.usage.zero_()
        return n_unused
