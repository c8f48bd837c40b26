"""DINOv2-style ViT with register tokens, used by VGGT as its per-frame patch tokenizer.

Layout of ``dinov2_vitl14_reg`` (as embedded in the VGGT-1B checkpoint under ``aggregator.patch_embed.``):
learned cls token, learned pos-embed for a square (img_size/patch)^2 grid + cls, register tokens inserted
after cls (they get no pos-embed), LayerNorm eps 1e-6, plain GELU MLP, LayerScale. Only the final-normed
patch tokens are returned; cls and register outputs are dropped, as VGGT does.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VGGTConfig
from .layers import Block


class PatchConv(nn.Module):
    """Non-overlapping patch projection (B, 3, H, W) -> (B, (H/p)(W/p), C), row-major patches."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoTokenizer(nn.Module):
    """ViT tokenizer: normalised images (B, 3, H, W) -> normed patch tokens (B, (H/p)(W/p), embed_dim)."""

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        C, grid = cfg.embed_dim, cfg.img_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.grid = grid
        self.num_register_tokens = cfg.num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, C))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, C))
        self.mask_token = nn.Parameter(torch.zeros(1, C))  # unused at inference; present in the checkpoint
        self.mask_token.requires_grad_(False)
        self.patch_embed = PatchConv(cfg.patch_size, C)
        self.blocks = nn.ModuleList(
            Block(C, cfg.tok_heads, cfg.tok_mlp_ratio, init_values=cfg.tok_init_values, norm_eps=1e-6)
            for _ in range(cfg.tok_depth)
        )
        self.norm = nn.LayerNorm(C, eps=1e-6)

    def pos_embed_for(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Pos-embed (1, 1 + grid_h * grid_w, C) for a patch grid, resampled bicubically with antialias.

        The learned square grid is used as is when it already matches; otherwise it is interpolated in
        float32 to exactly (grid_h, grid_w) (DINOv2 with interpolate_offset 0 and antialias on, as VGGT).
        """
        pe = self.pos_embed
        if (grid_h, grid_w) == (self.grid, self.grid):
            return pe
        C = pe.shape[-1]
        patch = pe[:, 1:].float().reshape(1, self.grid, self.grid, C).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(grid_h, grid_w), mode="bicubic", antialias=True)
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, C)
        return torch.cat((pe[:, :1].float(), patch), dim=1).to(pe.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(B, -1, -1), tokens), dim=1)
        tokens = tokens + self.pos_embed_for(H // self.patch_size, W // self.patch_size)
        tokens = torch.cat((tokens[:, :1], self.register_tokens.expand(B, -1, -1), tokens[:, 1:]), dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 1 + self.num_register_tokens:]
