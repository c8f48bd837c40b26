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

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        q = self.to_q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.to_kv(context).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
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

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.self_attn is not None:
            x = x + self.self_attn(self.norm_self(x))
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("cross-attention block called without a context")
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(context))
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
