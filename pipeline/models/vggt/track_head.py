"""VGGT track head: DPT feature extractor + CoTracker/VGGSfM-style iterative point tracker.

Given query points in frame 0 (pixels of the model input), the tracker predicts their positions in every
frame of the sequence, plus visibility and confidence in (0, 1). Features come from a feature-only DPT head
at half resolution; the tracker works at ``stride`` (2) on that map. Each iteration samples local
correlation windows from a pyramid of average-pooled feature maps, feeds [flow embedding, correlation
features, track features] through a transformer that alternates attention over time (per track) and over
space (tracks <-> a few learned virtual tracks), and adds the predicted coordinate and feature deltas.
Query-frame coordinates are held fixed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VGGTConfig
from .dpt_head import DPTHead
from .layers import Mlp


def sample_at(fmap: torch.Tensor, xy: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinear sampling at pixel coordinates (0 = first pixel centre, align_corners=True convention).

    fmap: (B, C, H, W); xy: (B, ..., 2) as (x, y) -> (B, C, ...).
    """
    H, W = fmap.shape[-2:]
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=xy.device, dtype=fmap.dtype)
    grid = xy.to(fmap.dtype) * scale - 1.0
    B = fmap.shape[0]
    flat = grid.reshape(B, -1, 1, 2)
    out = F.grid_sample(fmap, flat, mode="bilinear", align_corners=True, padding_mode=padding_mode)
    return out.reshape(B, fmap.shape[1], *xy.shape[1:-1])


def flow_embedding(flow: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., 2) flows -> (..., 2 * channels): per axis, interleaved [sin, cos](f * k * 1000 / channels), k even."""
    div = torch.arange(0, channels, 2, device=flow.device, dtype=torch.float32) * (1000.0 / channels)
    parts = []
    for a in range(2):
        ang = flow[..., a:a + 1].float() * div
        parts.append(torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)


def grid_sincos_embedding(dim: int, grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
    """(1, dim, grid_h, grid_w) fixed 2-D sin-cos map: first half encodes x (column), second half y (row).

    Each half: [sin(p w_k), cos(p w_k)] with w_k = 10000^(-k / (dim/4)), k < dim/4, computed in float64.
    """
    if dim % 4:
        raise ValueError(f"sin-cos grid embedding needs dim divisible by 4, got {dim}")
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 4, dtype=torch.float64, device=device) / (dim / 4.0))

    def embed(p: torch.Tensor) -> torch.Tensor:
        a = p.double()[..., None] * omega
        return torch.cat((a.sin(), a.cos()), dim=-1)

    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    emb = torch.cat((embed(xs), embed(ys)), dim=-1).float()  # (h, w, dim)
    return emb.permute(2, 0, 1)[None]


class CorrelationPyramid:
    """Feature pyramid (levels by 2x2 average pooling) and windowed correlation sampling.

    fmaps: (B, S, C, H, W). ``sample(targets (B, S, N, C), coords (B, S, N, 2))`` returns
    (B, S, N, levels * (2r+1)^2): for each level the correlation volume <target, fmap>/sqrt(C) sampled
    bilinearly (zero padding) on a (2r+1)^2 window around coords / 2^level. Window order is x-offset major
    (index a*(2r+1)+b has x offset a-r, y offset b-r), matching the released weights.
    """

    def __init__(self, fmaps: torch.Tensor, levels: int, radius: int) -> None:
        self.radius = radius
        self.pyramid = [fmaps]
        for _ in range(levels - 1):
            B, S, C, H, W = self.pyramid[-1].shape
            if H < 2 or W < 2:
                raise ValueError(f"feature map {H}x{W} too small for {levels} correlation levels; use larger images")
            pooled = F.avg_pool2d(self.pyramid[-1].reshape(B * S, C, H, W), 2, 2)
            self.pyramid.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
        r = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        a, b = torch.meshgrid(r, r, indexing="ij")
        self.offsets = torch.stack((a, b), dim=-1)  # (2r+1, 2r+1, 2) added to (x, y)

    def sample(self, targets: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        B, S, N, C = targets.shape
        k = 2 * self.radius + 1
        out = []
        for lvl, fm in enumerate(self.pyramid):
            H, W = fm.shape[-2:]
            corr = torch.matmul(targets, fm.reshape(B, S, C, H * W)) / math.sqrt(C)
            corr = corr.reshape(B * S * N, 1, H, W)
            xy = coords.reshape(B * S * N, 1, 1, 2) / (2 ** lvl) + self.offsets.to(coords.dtype).reshape(1, k, k, 2)
            out.append(sample_at(corr, xy, padding_mode="zeros").reshape(B, S, N, k * k))
        return torch.cat(out, dim=-1)


class SelfAttnBlock(nn.Module):
    """x = norm1(x); x + MHA(x, x, x); then + mlp(norm2(x)). (The residual starts from the normed x.)"""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        # default need_weights=True path: reproduces the reference kernels exactly (the fused path differs by
        # rounding, which the iterative tracker can amplify)
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """x = norm1(x); c = norm_context(c); x + MHA(x, c, c); then + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        c = self.norm_context(context)
        x = x + self.cross_attn(x, c, c)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """(B, N, T, in_dim) track tokens -> (B, N, T, out_dim) updates; time attention + virtual-track space attention."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, heads: int, depth: int, virtual: int) -> None:
        super().__init__()
        self.num_virtual = virtual
        self.virual_tracks = nn.Parameter(torch.zeros(1, virtual, 1, hidden))  # (sic) checkpoint spelling
        self.input_norm = nn.LayerNorm(in_dim)
        self.input_transform = nn.Linear(in_dim, hidden)
        self.output_norm = nn.LayerNorm(hidden)
        self.flow_head = nn.Linear(hidden, out_dim)
        self.time_blocks = nn.ModuleList(SelfAttnBlock(hidden, heads) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(SelfAttnBlock(hidden, heads) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(CrossAttnBlock(hidden, heads) for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(CrossAttnBlock(hidden, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.input_transform(self.input_norm(x))
        init = tokens
        B, N, T, D = tokens.shape
        tokens = torch.cat((tokens, self.virual_tracks.expand(B, -1, T, -1)), dim=1)
        M = tokens.shape[1]
        every = len(self.time_blocks) // len(self.space_virtual_blocks)
        j = 0
        for i, blk in enumerate(self.time_blocks):
            tokens = blk(tokens.reshape(B * M, T, D)).reshape(B, M, T, D)
            if i % every == 0:
                space = tokens.permute(0, 2, 1, 3).reshape(B * T, M, D)
                points, virt = space[:, :N], space[:, N:]
                virt = self.space_virtual2point_blocks[j](virt, points)
                virt = self.space_virtual_blocks[j](virt)
                points = self.space_point2virtual_blocks[j](points, virt)
                tokens = torch.cat((points, virt), dim=1).reshape(B, T, M, D).permute(0, 2, 1, 3)
                j += 1
        tokens = tokens[:, :N] + init
        return self.flow_head(self.output_norm(tokens))


class TrackPredictor(nn.Module):
    """Feature maps (B, S, C, h, w) + query points (B, N, 2) in feature-map pixels * stride -> tracks."""

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        L = cfg.track_features
        self.latent = L
        self.stride = cfg.track_stride
        self.max_scale = cfg.track_max_scale
        self.levels, self.radius = cfg.track_corr_levels, cfg.track_corr_radius
        self.dim = 3 * L + 4
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.dim))
        self.corr_mlp = Mlp(self.levels * (2 * self.radius + 1) ** 2, cfg.track_hidden, L)
        self.updateformer = UpdateFormer(self.dim, cfg.track_hidden, L + 2, cfg.track_heads, cfg.track_depth,
                                         cfg.track_virtual_tracks)
        self.fmap_norm = nn.LayerNorm(L)
        self.ffeat_norm = nn.GroupNorm(1, L)
        self.ffeat_updater = nn.Sequential(nn.Linear(L, L), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(L, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(L, 1))

    def forward(self, query_points: torch.Tensor, fmaps: torch.Tensor, iters: int
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        B, N, _ = query_points.shape
        _, S, C, h, w = fmaps.shape
        L = self.latent
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        coords = (query_points / float(self.stride)).reshape(B, 1, N, 2).repeat(1, S, 1, 1)
        query_xy = coords[:, 0].clone()
        feat0 = sample_at(fmaps[:, 0], query_xy).permute(0, 2, 1)  # (B, N, C)
        track_feats = feat0[:, None].repeat(1, S, 1, 1)  # (B, S, N, C)
        pyramid = CorrelationPyramid(fmaps, self.levels, self.radius)
        pos = sample_at(grid_sincos_embedding(self.dim, h, w, fmaps.device).expand(B, -1, -1, -1), query_xy)
        pos = pos.permute(0, 2, 1).reshape(B * N, 1, self.dim)
        ref = torch.cat((self.query_ref_token[:, :1], self.query_ref_token[:, 1:2].expand(-1, S - 1, -1)), dim=1)
        preds = []
        for _ in range(iters):
            coords = coords.detach()
            corr = self.corr_mlp(pyramid.sample(track_feats, coords).permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            flow_emb = torch.cat((flow_embedding(flows, L // 2), flows / self.max_scale, flows / self.max_scale), -1)
            feats = track_feats.permute(0, 2, 1, 3).reshape(B * N, S, L)
            x = torch.cat((flow_emb, corr, feats), dim=-1) + pos + ref.to(fmaps.dtype)
            delta = self.updateformer(x.reshape(B, N, S, self.dim)).reshape(B * N * S, L + 2)
            feats = self.ffeat_updater(self.ffeat_norm(delta[:, 2:])) + feats.reshape(B * N * S, L)
            track_feats = feats.reshape(B, N, S, L).permute(0, 2, 1, 3)
            coords = coords + delta[:, :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords[:, 0] = query_xy
            preds.append(coords * self.stride)
        flat = track_feats.reshape(B * S * N, L)
        vis = torch.sigmoid(self.vis_predictor(flat)).reshape(B, S, N)
        conf = torch.sigmoid(self.conf_predictor(flat)).reshape(B, S, N)
        return preds, vis, conf


class TrackHead(nn.Module):
    """Layer tokens + query points (B, N, 2) in model-input pixels of frame 0 ->
    (list of ``iters`` tracks (B, S, N, 2) in pixels, visibility (B, S, N), confidence (B, S, N))."""

    def __init__(self, cfg: VGGTConfig) -> None:
        super().__init__()
        self.iters = cfg.track_iters
        self.feature_extractor = DPTHead(cfg, features=cfg.track_features, feature_only=True, down_ratio=2,
                                         pos_embed=False)
        self.tracker = TrackPredictor(cfg)

    def forward(self, layers: dict[int, torch.Tensor], image_hw: tuple[int, int], patch_start_idx: int,
                query_points: torch.Tensor, iters: int | None = None):
        fmaps = self.feature_extractor(layers, image_hw, patch_start_idx)
        return self.tracker(query_points, fmaps, iters or self.iters)
