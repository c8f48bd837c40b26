"""VGGT camera head: camera tokens of the last aggregator layer -> 9-d pose encodings.

Pose encoding (absT_quaR_FoV): [t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h, fov_w] of the camera-from-world
transform (OpenCV axes), quaternion scalar-last, fields of view in radians. The head refines the estimate
``iters`` times; each round embeds the previous estimate, uses it to modulate (adaLN: shift, scale, gate)
the normalised camera tokens, runs a small transformer trunk across the frames of the sequence and adds a
predicted delta. Translation and quaternion are linear outputs; the FoV goes through a ReLU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VGGTConfig
from .layers import Block, Mlp

POSE_DIM = 9


class CameraHead(nn.Module):
    """Layer tokens (B, S, P, 2C) -> list of ``iters`` activated pose encodings, each (B, S, 9)."""

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        D = 2 * cfg.embed_dim
        self.iters = cfg.camera_iters
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.trunk = nn.Sequential(*(Block(D, cfg.camera_heads, 4.0, init_values=0.01)
                                     for _ in range(cfg.camera_trunk_depth)))
        self.token_norm = nn.LayerNorm(D)
        self.trunk_norm = nn.LayerNorm(D)
        self.embed_pose = nn.Linear(POSE_DIM, D)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 3 * D))
        self.adaln_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(D, D // 2, POSE_DIM)

    @staticmethod
    def activate(enc: torch.Tensor) -> torch.Tensor:
        """Raw accumulated encoding -> activated: identity on t and q, ReLU on the two FoVs."""
        return torch.cat((enc[..., :7], F.relu(enc[..., 7:])), dim=-1)

    def forward(self, tokens: torch.Tensor, iters: int | None = None) -> list[torch.Tensor]:
        cam = self.token_norm(tokens[:, :, 0])  # (B, S, D): token 0 of every frame is its camera token
        B, S, _ = cam.shape
        raw: torch.Tensor | None = None
        outputs = []
        for _ in range(iters or self.iters):
            prev = self.empty_pose_tokens.expand(B, S, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(prev)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(cam) * (1 + scale) + shift) + cam
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw + delta
            outputs.append(self.activate(raw))
        return outputs
