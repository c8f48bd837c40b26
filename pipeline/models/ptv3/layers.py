"""Building blocks of the PTv3 encoder: DropPath, LayerScale, MLP, Embedding, Block.

Parameter paths equal upstream's (e.g. `cpe.0.weight` KRSC conv, `norm1.0`, `attn.qkv`, `mlp.0.fc1`,
`embedding.stem.linear`), so official state dicts load with strict=True.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .attention import SerializedAttention
from .dropout import Dropout
from .point import PointBatch
from .sparse_conv import SubMConv3d


class DropPath(nn.Module):
    """Stochastic depth on rows: in training each row of x [M, C] is zeroed with probability p and the
    survivors scaled by 1/(1-p); identity in eval or when p == 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"


class LayerScale(nn.Module):
    """x * gamma with gamma [C] (upstream `layer_scale` option; unused by Concerto)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class MLP(nn.Module):
    """fc1 (C -> hidden) -> GELU -> dropout -> fc2 (hidden -> C) -> dropout."""

    def __init__(self, channels: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Embedding(nn.Module):
    """stem: Linear(in -> C0) -> LayerNorm -> GELU; optional `mask_token` [1, C0] replacing masked rows."""

    def __init__(self, in_channels: int, channels: int, mask_token: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(linear=nn.Linear(in_channels, channels), norm=nn.LayerNorm(channels), act=nn.GELU())
        )
        self.mask_token = nn.Parameter(torch.zeros(1, channels)) if mask_token else None

    def forward(self, feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feat [M, in] -> [M, C0]; rows where mask [M] is True take the mask token."""
        x = self.stem(feat)
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("Embedding: a mask was given but the config has mask_token=False")
            x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return x


class Block(nn.Module):
    """Pre-norm PTv3 block: xCPE (SubMConv3d -> Linear -> LayerNorm, residual), serialized attention
    (residual, DropPath), MLP (residual, DropPath). With pre_norm=False the norms follow the residuals."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        attn_drop: float,
        proj_drop: float,
        drop_path: float,
        layer_scale: float | None,
        pre_norm: bool,
        order_index: int,
        enable_flash: bool,
        upcast_attention: bool,
        upcast_softmax: bool,
        conv_backend: str = "torch",
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.cpe = nn.ModuleList(
            [SubMConv3d(channels, channels, 3, bias=True, backend=conv_backend), nn.Linear(channels, channels), nn.LayerNorm(channels)]
        )
        self.norm1 = nn.Sequential(nn.LayerNorm(channels))
        self.ls1 = nn.Sequential(LayerScale(channels, layer_scale) if layer_scale is not None else nn.Identity())
        self.attn = SerializedAttention(
            channels,
            num_heads,
            patch_size,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            order_index=order_index,
            enable_flash=enable_flash,
            upcast_attention=upcast_attention,
            upcast_softmax=upcast_softmax,
        )
        self.norm2 = nn.Sequential(nn.LayerNorm(channels))
        self.ls2 = nn.Sequential(LayerScale(channels, layer_scale) if layer_scale is not None else nn.Identity())
        self.mlp = nn.Sequential(MLP(channels, int(channels * mlp_ratio), drop=proj_drop))
        self.drop_path = DropPath(drop_path)

    def forward(self, point: PointBatch) -> PointBatch:
        conv, lin, norm = self.cpe
        x = point.feat
        x = x + norm(lin(conv(x, point.grid_coord, point.batch, point.cache, "cpe")))

        shortcut = x
        point.feat = self.norm1(x) if self.pre_norm else x
        x = shortcut + self.drop_path(self.ls1(self.attn(point)))
        if not self.pre_norm:
            x = self.norm1(x)

        shortcut = x
        y = self.norm2(x) if self.pre_norm else x
        x = shortcut + self.drop_path(self.ls2(self.mlp(y)))
        if not self.pre_norm:
            x = self.norm2(x)
        point.feat = x
        return point
