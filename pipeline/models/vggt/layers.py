"""Transformer building blocks shared by the VGGT tokenizer, aggregator and camera head.

Parameter names (``norm1``, ``attn.qkv``, ``attn.q_norm``, ``ls1.gamma``, ``mlp.fc1`` ...) follow the
VGGT-1B checkpoint so that ``load_state_dict(strict=True)`` works.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    """Two-layer MLP ``fc2(GELU(fc1(x)))``; (..., in) -> (..., out)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned scale ``x * gamma`` (gamma of shape (dim,), initialised to ``init_values``)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class RotaryEmbedding2D(nn.Module):
    """2-D rotary position embedding (no parameters).

    The head dimension D (divisible by 4) is split in two halves: the first half is rotated by the token's
    row position, the second by its column position. Within a half of size d, channel pairs (i, i + d/2)
    rotate with angle ``pos / base ** (2 i / d)`` ("rotate-half" layout), as in VGGT's RoPE with base 100.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)

    def _rotate_1d(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, d); pos: (B, N) integer positions."""
        d = x.shape[-1]
        inv_freq = 1.0 / (self.base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
        angles = pos.to(torch.float32)[..., None] * inv_freq  # (B, N, d/2)
        angles = torch.cat((angles, angles), dim=-1).to(x.dtype)[:, None]  # (B, 1, N, d)
        half = d // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * angles.cos() + rotated * angles.sin()

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, D) queries or keys; pos: (B, N, 2) integer (row, col) positions."""
        if x.shape[-1] % 4:
            raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {x.shape[-1]}")
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat((self._rotate_1d(rows, pos[..., 0]), self._rotate_1d(cols, pos[..., 1])), dim=-1)


def patch_positions(batch: int, grid_h: int, grid_w: int, num_special: int, device: torch.device) -> torch.Tensor:
    """RoPE positions (batch, num_special + grid_h * grid_w, 2) as (row, col), long.

    Patches are numbered row-major and shifted by +1; the ``num_special`` leading tokens (camera and
    registers) sit at (0, 0). Built on ``device`` per call (no cache shared across devices).
    """
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    cols = torch.arange(grid_w, device=device).repeat(grid_h)
    pos = torch.stack((rows, cols), dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=pos.dtype, device=device)
    return torch.cat((special, pos), dim=0)[None].expand(batch, -1, -1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q/k and optional 2-D RoPE.

    (B, N, C) -> (B, N, C); uses ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, rope: RotaryEmbedding2D | None = None,
                 qkv_bias: bool = True, proj_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if pos is None:
                raise ValueError("this attention layer uses RoPE and needs token positions")
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, init_values: float = 1.0,
                 qk_norm: bool = False, rope: RotaryEmbedding2D | None = None, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
