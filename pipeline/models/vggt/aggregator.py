"""VGGT aggregator: DINO tokenizer per frame, then alternating frame-wise and global self-attention.

Per frame the token sequence is [camera token, R register tokens, patch tokens]. Frame 0 of a sequence
uses slot 0 of the learned camera/register tokens, all other frames slot 1; this is how the model knows
which frame defines the world coordinate frame. Each of the ``depth`` rounds runs one frame block
(attention within each frame) and one global block (attention across all tokens of all frames); the
round's output is the channel concatenation [frame-block output, global-block output] of shape
(B, S, P, 2C). Only the rounds listed in ``keep_layers`` are returned, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from .config import VGGTConfig
from .layers import Block, RotaryEmbedding2D, patch_positions
from .tokenizer import DinoTokenizer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_vs_rest(tokens: torch.Tensor, B: int, S: int) -> torch.Tensor:
    """Learned tokens (1, 2, X, C) -> (B*S, X, C): slot 0 for frame 0, slot 1 for frames 1..S-1."""
    first = tokens[:, :1].expand(B, 1, *tokens.shape[2:])
    rest = tokens[:, 1:2].expand(B, S - 1, *tokens.shape[2:])
    return torch.cat((first, rest), dim=1).reshape(B * S, *tokens.shape[2:])


class Aggregator(nn.Module):
    """Images (B, S, 3, H, W) in [0, 1] -> {layer index: (B, S, P, 2*embed_dim)} and patch_start_idx."""

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        C = cfg.embed_dim
        self.cfg = cfg
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, C))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, C))
        self.patch_embed = DinoTokenizer(cfg)
        self.rope = RotaryEmbedding2D(cfg.rope_freq) if cfg.rope_freq > 0 else None

        def make_block() -> Block:
            return Block(C, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values, qk_norm=cfg.qk_norm,
                         rope=self.rope, norm_eps=1e-5)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.register_buffer("_resnet_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_resnet_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    def reset_buffers(self, device: torch.device | str = "cpu") -> None:
        """(Re)create the ImageNet normalisation buffers, e.g. after a meta-device build + assign-load."""
        self._resnet_mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1)
        self._resnet_std = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1)

    def forward(self, images: torch.Tensor, keep_layers: Iterable[int] | None = None
                ) -> tuple[dict[int, torch.Tensor], int]:
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        B, S, _, H, W = images.shape
        p = self.cfg.patch_size
        keep = set(range(self.cfg.depth)) if keep_layers is None else set(keep_layers)
        x = ((images - self._resnet_mean) / self._resnet_std).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x)  # (B*S, N, C)
        tokens = torch.cat((first_vs_rest(self.camera_token, B, S), first_vs_rest(self.register_token, B, S),
                            patches), dim=1)
        P, C = tokens.shape[1], tokens.shape[2]
        start = self.cfg.patch_start_idx
        pos = patch_positions(B * S, H // p, W // p, start, images.device) if self.rope is not None else None
        pos_global = pos.reshape(B, S * P, 2) if pos is not None else None

        out: dict[int, torch.Tensor] = {}
        for i in range(self.cfg.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, P, C), pos=pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self.global_blocks[i](tokens.reshape(B, S * P, C), pos=pos_global)
            if i in keep:
                out[i] = torch.cat((frame_out, tokens.reshape(B, S, P, C)), dim=-1)
        return out, start
