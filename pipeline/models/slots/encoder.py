"""A small ResNet-style CNN for depth maps (written here; no torchvision)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (stride on the first)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class DepthEncoder(nn.Module):
    """(B, 4, H, W) depth input -> (B, C, H/32, W/32) feature map and (B, C) global feature.

    A stride-2 stem then one residual block per stage, each halving the resolution.

    Input channels (see :func:`depth_input`): inverse depth x 5 (0 where nothing was seen), the
    validity mask, and normalised pixel coordinates u, v in [-1, 1] (CoordConv).
    """

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(4, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU())
        stages, c_in = [], channels[0]
        for c_out in channels:
            stages.append(BasicBlock(c_in, c_out, stride=2))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels[-1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fmap = self.stages(self.stem(x))
        return fmap, fmap.mean(dim=(2, 3))


def depth_input(depth: Tensor) -> Tensor:
    """(B, H, W) planar depth in metres (+inf / NaN = nothing seen) -> (B, 4, H, W) encoder input."""
    valid = torch.isfinite(depth) & (depth > 0)
    inv = torch.where(valid, 5.0 / depth.clamp_min(0.1), torch.zeros_like(depth))
    b, h, w = depth.shape
    v = torch.linspace(-1, 1, h, device=depth.device).view(1, h, 1).expand(b, h, w)
    u = torch.linspace(-1, 1, w, device=depth.device).view(1, 1, w).expand(b, h, w)
    return torch.stack([inv, valid.to(depth.dtype), u, v], dim=1)
