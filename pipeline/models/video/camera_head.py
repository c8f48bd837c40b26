"""Camera head: relative camera pose between two depth frames from the encoder's feature maps.

Input: the phase-one encoder's last feature maps of frame a and frame b (B, C, h, w each; they keep
where things are, which a pooled vector would lose) and the time gap t_b - t_a (seconds). Two
convolutions on the stacked maps, pooled, then an MLP with the time embedding, give
``a_from_b``: a rotation (6-D Gram-Schmidt representation, starting at the identity) and a
translation (metres, OpenCV axes of frame a; starts at zero). Chaining these gives each frame's
``world_from_camera`` with frame 0 as the world (:func:`pipeline.models.video.poses.chain`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.models.video.poses import rot6d_to_matrix
from pipeline.models.video.time_embedding import TimeEmbedding

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class CameraHead(nn.Module):
    def __init__(self, channels: int, hidden: int, time_features: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1, stride=2), nn.ReLU())
        self.time = TimeEmbedding(time_features, hidden)
        self.mlp = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 9))
        with torch.no_grad():
            self.mlp[2].weight.mul_(0.01)
            self.mlp[2].bias.zero_()
        self.register_buffer("identity", torch.tensor(IDENTITY_6D))

    def forward(self, fmap_a: Tensor, fmap_b: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, h, w) x 2, (B,) seconds -> a_from_b rotation (B, 3, 3) and translation (B, 3) metres."""
        x = self.conv(torch.cat([fmap_a, fmap_b], dim=1))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=-1)
        out = self.mlp(torch.cat([pooled, self.time(dt)], dim=-1))
        return rot6d_to_matrix(self.identity + out[:, :6]), out[:, 6:]
