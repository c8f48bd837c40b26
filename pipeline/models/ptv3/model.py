"""Point Transformer V3 encoder as Concerto uses it (PT-v3m2 / Sonata, `enc_mode=True`).

Module tree (= upstream parameter paths): `embedding` (stem + optional mask_token), `enc.enc{s}` for
s in 0..S-1 with `down` (GridPooling, s > 0) and `block{i}` (Block, order index i % len(order)).

`conv_backend` selects the xCPE sparse conv: "torch" (default, pure PyTorch, verified against a dense
conv3d), "auto" (spconv when it imports and tensors are on CUDA — not verified here, no GPU) or
"spconv". It does not change parameter names or shapes.

`forward(point, generator)` takes a grid-sampled PointBatch whose `feat` is [M, in_channels] and returns
the last-stage PointBatch; every coarse stage links to its `parent`, so callers can walk back up to
the input voxels (see features.upcast).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .config import PTv3Config
from .layers import Block, Embedding
from .point import PointBatch
from .pooling import GridPooling
from .serialization import serialize


class PointTransformerV3(nn.Module):
    def __init__(self, config: PTv3Config, conv_backend: str = "torch") -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.embedding = Embedding(cfg.in_channels, cfg.enc_channels[0], cfg.mask_token)
        rates = cfg.drop_path_rates()
        self.enc = nn.ModuleDict()
        first = 0
        for s in range(cfg.num_stages):
            stage = nn.ModuleDict()
            if s > 0:
                # upstream's model never passes shuffle_orders to its poolings: they always shuffle
                stage["down"] = GridPooling(cfg.enc_channels[s - 1], cfg.enc_channels[s], cfg.stride[s - 1], shuffle_orders=True)
            for i in range(cfg.enc_depths[s]):
                stage[f"block{i}"] = Block(
                    channels=cfg.enc_channels[s],
                    num_heads=cfg.enc_num_head[s],
                    patch_size=cfg.enc_patch_size[s],
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    qk_scale=cfg.qk_scale,
                    attn_drop=cfg.attn_drop,
                    proj_drop=cfg.proj_drop,
                    drop_path=rates[first + i],
                    layer_scale=cfg.layer_scale,
                    pre_norm=cfg.pre_norm,
                    order_index=i % len(cfg.order),
                    enable_flash=cfg.enable_flash,
                    upcast_attention=cfg.upcast_attention,
                    upcast_softmax=cfg.upcast_softmax,
                    conv_backend=conv_backend,
                )
            first += cfg.enc_depths[s]
            self.enc[f"enc{s}"] = stage
        self.apply(self._init_weights)
        if cfg.freeze_encoder:
            for p in self.parameters():
                p.requires_grad_(False)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_official_config(cls, config: Mapping[str, Any], conv_backend: str = "torch", **overrides: Any) -> "PointTransformerV3":
        """Build from an official `ckpt["config"]` kwargs dict (see PTv3Config.from_official)."""
        return cls(PTv3Config.from_official(config, **overrides), conv_backend=conv_backend)

    @property
    def out_channels(self) -> int:
        return self.config.enc_channels[-1]

    def forward(self, point: PointBatch, generator: torch.Generator | None = None) -> PointBatch:
        """Encode. `generator` (CPU torch.Generator) drives the order shuffling; None uses the global RNG."""
        cfg = self.config
        point.feat = self.embedding(point.feat, point.mask)
        point.serialized_order, point.serialized_inverse, point.serialized_depth = serialize(
            point.grid_coord, point.batch, cfg.order, cfg.shuffle_orders, generator
        )
        for stage in self.enc.values():
            for name, module in stage.items():
                if name == "down":
                    point = module(point, cfg.order, generator)
                else:
                    point = module(point)
        return point
