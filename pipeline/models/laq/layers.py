"""Transformer building blocks of LAQ (pre-norm, PyTorch SDPA attention) and the token-centre encoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention of ``x`` (B, L, dim) over ``context`` (B, M, dim) (self-attention if None)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """``mask`` (B, L, M) bool, True where query l may attend to context m (every row needs one True)."""
        context = x if context is None else context
        b, n, d = x.shape
        q = self.to_q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.to_kv(context).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention to a context, feed-forward."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool = False, self_attn: bool = True):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim) if self_attn else None
        self.self_attn = Attention(dim, heads) if self_attn else None
        self.norm_x = nn.LayerNorm(dim) if cross else None
        self.norm_ctx = nn.LayerNorm(dim) if cross else None
        self.cross_attn = Attention(dim, heads) if cross else None
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """``mask`` (B, L, M) restricts the cross-attention (see :class:`Attention`)."""
        if self.self_attn is not None:
            x = x + self.self_attn(self.norm_self(x))
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("cross-attention block called without a context")
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(context), mask)
        return x + self.mlp(self.norm_mlp(x))


class FourierPosition(nn.Module):
    """Token centres (..., 3) in metres → (..., dim): sin/cos at octave frequencies, then a linear map.

    Frequencies are ``2^k / scale_m`` for k = 0..frequencies-1 on each axis; the raw coordinates
    divided by ``scale_m`` are appended. Non-finite coordinates (empty cells) are treated as 0.
    """

    def __init__(self, dim: int, frequencies: int, scale_m: float):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(frequencies)) / scale_m, persistent=False)
        self.scale_m = scale_m
        self.proj = nn.Linear(3 * (2 * frequencies + 1), dim)

    def forward(self, xyz: Tensor) -> Tensor:
        xyz = torch.nan_to_num(xyz, nan=0.0, posinf=0.0, neginf=0.0)
        angles = xyz[..., None] * self.freqs * (2 * math.pi)  # (..., 3, F)
        feats = torch.cat([angles.sin(), angles.cos(), xyz[..., None] / self.scale_m], dim=-1)
        return self.proj(feats.flatten(-2))


def grid_shape(cells: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols = cells, rows the largest divisor <= sqrt(cells): 4 → (2, 2), 6 → (2, 3)."""
    rows = max(r for r in range(1, int(math.isqrt(cells)) + 1) if cells % r == 0)
    return rows, cells // rows


def spatial_cells(xyz: Tensor, cells: int) -> Tensor:
    """Split each frame's N tokens into ``cells`` equal-size spatial cells; (B, N, 3) → (B, N) cell ids.

    Tokens are ranked by azimuth atan2(x, z) (OpenCV axes: left → right) into ``cols`` groups, and
    inside each group by horizontal range sqrt(x² + z²) into ``rows`` groups (near → far), so
    4 cells are 2 x 2 (left/right x near/far), the point-cloud analogue of LAPA's 2 x 2 token grid.
    Every cell is non-empty when N >= cells. Non-finite centres count as 0.
    """
    b, n, _ = xyz.shape
    rows, cols = grid_shape(cells)
    xyz = torch.nan_to_num(xyz.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    azimuth = torch.atan2(xyz[..., 0], xyz[..., 2])
    distance = torch.hypot(xyz[..., 0], xyz[..., 2])
    pos = torch.arange(n, device=xyz.device)
    col = torch.empty(b, n, dtype=torch.long, device=xyz.device)
    col.scatter_(1, azimuth.argsort(dim=1, stable=True), (pos * cols // n).expand(b, n))
    sizes = torch.bincount(pos * cols // n, minlength=cols)
    starts = torch.cumsum(sizes, 0) - sizes
    rank_in_dist = distance.argsort(dim=1, stable=True).argsort(dim=1)
    order = (col * n + rank_in_dist).argsort(dim=1)  # by column, then by range
    slot = torch.empty(b, n, dtype=torch.long, device=xyz.device)
    slot.scatter_(1, order, pos.expand(b, n))  # position of each token in that order
    row = (slot - starts[col]) * rows // sizes[col].clamp_min(1)
    return row * cols + col
