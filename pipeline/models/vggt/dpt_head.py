"""DPT dense head used by VGGT for depth, point maps and tracking features.

Per tapped aggregator layer: drop the special tokens, LayerNorm(2C), reshape to the patch grid, 1x1 conv to
``out_channels[k]``, add a sin-cos UV positional map (x0.1), resample to 4x / 2x / 1x / 0.5x of the patch
grid; then 3x3 convs to ``features`` channels, RefineNet-style fusion from coarse to fine, a 3x3 conv,
bilinear upsampling (align_corners=True) to the image size (divided by ``down_ratio``), the positional map
again, and (unless ``feature_only``) a small conv stack and the output activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VGGTConfig


def uv_sincos_embedding(grid_h: int, grid_w: int, channels: int, aspect: float, device: torch.device
                        ) -> torch.Tensor:
    """Positional map (channels, grid_h, grid_w), float32.

    UV coordinates span the grid centred on 0 with half-extents (aspect, 1) / sqrt(aspect^2 + 1) shrunk by
    (n-1)/n (``aspect`` = image W/H); each of u and v gets ``channels/2`` features [sin(p w_k), cos(p w_k)]
    with w_k = 100^(-k / (channels/4)), k < channels/4, computed in float64.
    """
    diag = math.sqrt(aspect * aspect + 1.0)
    sx, sy = aspect / diag, 1.0 / diag
    xs = torch.linspace(-sx * (grid_w - 1) / grid_w, sx * (grid_w - 1) / grid_w, grid_w, device=device)
    ys = torch.linspace(-sy * (grid_h - 1) / grid_h, sy * (grid_h - 1) / grid_h, grid_h, device=device)
    half = channels // 2
    omega = 1.0 / 100.0 ** (torch.arange(half // 2, dtype=torch.float64, device=device) / (half / 2.0))

    def embed(p: torch.Tensor) -> torch.Tensor:  # p: (n,) -> (n, half)
        a = p.double()[:, None] * omega
        return torch.cat((a.sin(), a.cos()), dim=-1)

    ex = embed(xs)[None, :, :].expand(grid_h, grid_w, half)
    ey = embed(ys)[:, None, :].expand(grid_h, grid_w, half)
    return torch.cat((ex, ey), dim=-1).float().permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, plus a skip from relu(x).

    The skip adds the *rectified* input: the reference DPT code applies an in-place ReLU to its input
    before adding it back, and the released weights were trained that way.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """(x, optional skip) -> resample to ``size`` (default 2x) -> 1x1 conv; bilinear, align_corners=True."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
                ) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = size or (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(F.interpolate(x, size=size, mode="bilinear", align_corners=True))


class DPTHead(nn.Module):
    """Layer tokens -> dense maps.

    forward returns (preds (B, S, H, W, output_dim-1), conf (B, S, H, W)) or, with ``feature_only``,
    features (B, S, features, H/down_ratio, W/down_ratio).
    Activations: "exp" (depth), "inv_log" = sign(y)(exp|y| - 1) (points); confidence 1 + exp(y) (>= 1).
    """

    def __init__(self, cfg: VGGTConfig, output_dim: int = 4, activation: str = "inv_log",
                 features: int | None = None, feature_only: bool = False, down_ratio: int = 1,
                 pos_embed: bool = True) -> None:
        super().__init__()
        D, oc = 2 * cfg.embed_dim, cfg.dpt_out_channels
        f = features or cfg.dpt_features
        if activation not in ("exp", "inv_log"):
            raise ValueError(f"unknown DPT activation {activation!r}")
        self.patch_size = cfg.patch_size
        self.layers = tuple(cfg.dpt_layers)
        self.frames_chunk = cfg.dpt_frames_chunk
        self.activation = activation
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.use_pos_embed = pos_embed
        self.norm = nn.LayerNorm(D)
        self.projects = nn.ModuleList(nn.Conv2d(D, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for k in range(4):
            setattr(self.scratch, f"layer{k + 1}_rn", nn.Conv2d(oc[k], f, 3, padding=1, bias=False))
        for k in range(1, 5):
            setattr(self.scratch, f"refinenet{k}", FusionBlock(f, has_residual=k != 4))
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(f, f, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(f // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))

    def _add_pos(self, x: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        H, W = image_hw
        pe = uv_sincos_embedding(x.shape[-2], x.shape[-1], x.shape[1], W / H, x.device)
        return x + 0.1 * pe.to(x.dtype)[None]

    def _forward_frames(self, layers: dict[int, torch.Tensor], start: int, f0: int, f1: int,
                        image_hw: tuple[int, int]) -> torch.Tensor:
        H, W = image_hw
        gh, gw = H // self.patch_size, W // self.patch_size
        feats = []
        for k, idx in enumerate(self.layers):
            x = layers[idx][:, f0:f1, start:]
            x = self.norm(x.reshape(-1, x.shape[-2], x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], gh, gw)
            x = self.projects[k](x)
            if self.use_pos_embed:
                x = self._add_pos(x, image_hw)
            feats.append(self.resize_layers[k](x))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{k + 1}_rn")(feats[k]) for k in range(4))
        out = s.refinenet4(l4, size=l3.shape[-2:])
        out = s.refinenet3(out, l3, size=l2.shape[-2:])
        out = s.refinenet2(out, l2, size=l1.shape[-2:])
        out = s.output_conv1(s.refinenet1(out, l1))
        size = (int(gh * self.patch_size / self.down_ratio), int(gw * self.patch_size / self.down_ratio))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        if self.use_pos_embed:
            out = self._add_pos(out, image_hw)
        return out

    def forward(self, layers: dict[int, torch.Tensor], image_hw: tuple[int, int], patch_start_idx: int
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        any_layer = layers[self.layers[0]]
        B, S = any_layer.shape[:2]
        step = self.frames_chunk if self.frames_chunk and self.frames_chunk > 0 else S
        feats, values, confs = [], [], []
        for f0 in range(0, S, step):
            f1 = min(S, f0 + step)
            out = self._forward_frames(layers, patch_start_idx, f0, f1, image_hw)  # (b*s, C, h, w)
            if self.feature_only:
                feats.append(out.reshape(B, f1 - f0, *out.shape[1:]))
                continue
            h, w = out.shape[-2:]
            out = self.scratch.output_conv2(out).permute(0, 2, 3, 1)
            val, conf = out[..., :-1], out[..., -1]
            val = torch.exp(val) if self.activation == "exp" else torch.sign(val) * torch.expm1(val.abs())
            values.append(val.reshape(B, f1 - f0, h, w, -1))
            confs.append((1 + conf.exp()).reshape(B, f1 - f0, h, w))
        if self.feature_only:
            return torch.cat(feats, dim=1)
        return torch.cat(values, dim=1), torch.cat(confs, dim=1)
