"""Slot scene model: depth map + per-frame anchors -> K slot vectors -> K posed, blended meshes.

Slot vector decomposition (the project's design; README, "Phase one")::

    v = [scale (1) | x, y, z, yaw, pitch, roll (6) | prototype logits (P)]

with the geometry read as (all in the frame's OpenCV camera axes, metres):

- ``scale = r_k * exp(m * tanh(v[0] / m))``: relative to the anchor's radius r_k, bounded softly
  (m = ``max_log_scale``) so it stays positive and sane without a hard clamp;
- ``centre = c_k + r_k * max_offset * tanh(v[1:4])``: a bounded offset from the anchor centre c_k;
- ``R = R_y(yaw_k + yaw) @ R_x(pitch) @ R_z(roll)``: intrinsic Euler angles "YXZ" (as pytorch3d's
  ``euler_angles_to_matrix(angles, "YXZ")`` and scipy's ``Rotation.from_euler("YXZ", angles)``),
  so yaw turns about the camera's vertical y axis, relative to the anchor's yaw yaw_k (its main
  horizontal direction, :func:`pipeline.models.slots.shapes.anchor_yaw`); ``SlotParams.euler``
  holds the total angles;
- ``mesh = R @ (scale * (sphere + sum_p softmax(logits)_p * offsets_p)) + centre``.

Anchors are the frame's k-means clusters (``pipeline.data.frames.Anchors``). The vector is the
head's (small, ``head_gain``) output plus an anchor prior that is zero except on the logits:
``-|log e_k - log e_p|^2 / (2 prior_width^2)``, e_k the anchor's normalised extents and e_p the
prototype's (:mod:`pipeline.models.slots.shapes`). With prototypes initialised from shape clusters
the untrained model is the k-means fit with each slot's shape blended from the prototypes nearest
its anchor's PCA ellipsoid (with the default spherical bank it is the k-means sphere fit); the model
learns pose, size and shape corrections from the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.geometry.rotations import euler_to_matrix
from pipeline.models.slots.config import SlotModelConfig
from pipeline.models.slots.encoder import DepthEncoder, depth_input
from pipeline.models.slots.prototypes import PrototypeBank
from pipeline.models.slots.shapes import anchor_yaw, normalised_extents

EULER_CONVENTION = "YXZ"
ANCHOR_FEATURES = 10
POINT_FEATURES = 64


@dataclass
class SlotParams:
    """Decoded slots; leading dims (B, K)."""

    vector: Tensor  # (B, K, 7 + P) raw slot vectors
    scale: Tensor  # (B, K) metres
    centre: Tensor  # (B, K, 3) metres, camera frame
    euler: Tensor  # (B, K, 3) yaw, pitch, roll in radians ("YXZ")
    weights: Tensor  # (B, K, P) softmax of the prototype logits
    verts: Tensor  # (B, K, V, 3) posed mesh vertices, metres, camera frame


def pool_per_slot(values: Tensor, label: Tensor, k: int, reduce: str) -> Tensor:
    """Reduce per-point ``values`` (B, P, C) into (B, K, C) by slot ``label`` (B, P); label -1 = padding."""
    b, _, c = values.shape
    index = torch.where(label < 0, torch.full_like(label, k), label).unsqueeze(-1).expand(-1, -1, c)
    out = values.new_zeros(b, k + 1, c)
    out = out.scatter_reduce(1, index, values, reduce=reduce, include_self=False)
    return out[:, :k]


def anchor_descriptor(centre: Tensor, radius: Tensor, spread: Tensor, axes: Tensor, weight: Tensor) -> Tensor:
    """(B, K, 10) numeric summary of each anchor for the slot head (scale-free where possible)."""
    main = axes[..., :, 0]  # (B, K, 3) first PCA axis
    angle = torch.atan2(main[..., 0], main[..., 2])  # horizontal direction; sign-ambiguous -> use 2x
    return torch.cat([
        centre / 20.0, torch.log(radius).unsqueeze(-1), spread / radius.unsqueeze(-1),
        torch.sin(2 * angle).unsqueeze(-1), torch.cos(2 * angle).unsqueeze(-1), weight.unsqueeze(-1) * centre.shape[1],
    ], dim=-1)


class SlotSceneModel(nn.Module):
    def __init__(self, config: SlotModelConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.encoder = DepthEncoder(config.channels)
        c = self.encoder.out_channels
        self.point_mlp = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, POINT_FEATURES), nn.ReLU())
        self.embed = nn.Sequential(nn.Linear(3 * c + 2 * POINT_FEATURES + ANCHOR_FEATURES, config.hidden), nn.ReLU(),
                                   nn.Linear(config.hidden, config.hidden))
        self.interact = nn.TransformerEncoderLayer(config.hidden, nhead=4, dim_feedforward=2 * config.hidden,
                                                   dropout=0.0, batch_first=True, norm_first=True)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(config.hidden, config.slot_dim))
        with torch.no_grad():
            self.head[1].weight.mul_(config.head_gain)
            self.head[1].bias.zero_()
        self.prototypes = PrototypeBank(config.prototypes, config.ico_level, seed=seed)

    @property
    def faces(self) -> Tensor:
        return self.prototypes.faces

    def slot_vectors(self, depth: Tensor, focal_cx_cy: Tensor, anchors: dict[str, Tensor], points: Tensor,
                     label: Tensor) -> Tensor:
        """One latent vector per slot, (B, K, 7 + P).

        Inputs: depth (B, H, W) metres, intrinsics (B, 3) = [f, cx, cy] at that size, anchors
        (B, K, ...), and the frame's target points (B, P, 3) with their anchor cluster ``label``
        (B, P; -1 = padding). Each slot token joins: CNN features at the anchor's projection, the
        mean CNN feature over its member points' pixels, the global CNN feature, a PointNet
        summary (max and mean) of its members relative to the anchor (in radius units), and the
        anchor descriptor; one self-attention layer lets slots coordinate.
        """
        fmap, global_feature = self.encoder(depth_input(depth))
        k = anchors["centre"].shape[1]
        h, w = depth.shape[-2:]
        at_anchor = self._sample(fmap, anchors["centre"], focal_cx_cy, h, w)  # (B, K, C)
        at_points = pool_per_slot(self._sample(fmap, points, focal_cx_cy, h, w), label, k, "mean")
        index = label.clamp_min(0)
        centre = torch.gather(anchors["centre"], 1, index.unsqueeze(-1).expand(-1, -1, 3))
        radius = torch.gather(anchors["radius"], 1, index)
        relative = ((points - centre) / radius.unsqueeze(-1)).clamp(-10, 10)
        point_features = self.point_mlp(relative)
        shape = torch.cat([pool_per_slot(point_features, label, k, "amax"),
                           pool_per_slot(point_features, label, k, "mean")], dim=-1)
        desc = anchor_descriptor(anchors["centre"], anchors["radius"], anchors["spread"], anchors["axes"], anchors["weight"])
        tokens = self.embed(torch.cat([at_anchor, at_points, global_feature.unsqueeze(1).expand_as(at_anchor), shape, desc],
                                      dim=-1))
        return self.head(self.interact(tokens)) + self.anchor_prior(anchors)

    def anchor_prior(self, anchors: dict[str, Tensor]) -> Tensor:
        """(B, K, 7 + P) prior slot vectors: zeros, and logits favouring the prototypes whose extents
        are closest (in log space) to the anchor's normalised extents."""
        extents = normalised_extents(anchors["axes"], anchors["spread"], anchors["radius"])  # (B, K, 3)
        gap = (torch.log(extents).unsqueeze(-2) - torch.log(self.prototypes.extents)).pow(2).sum(-1)  # (B, K, P)
        logits = -gap / (2 * self.config.prior_width**2)
        logits = logits - logits.mean(-1, keepdim=True)
        return torch.cat([logits.new_zeros(logits.shape[:-1] + (7,)), logits], dim=-1)

    @staticmethod
    def _sample(fmap: Tensor, xyz: Tensor, focal_cx_cy: Tensor, h: int, w: int) -> Tensor:
        """Bilinear CNN features (B, N, C) at the projections of camera points (B, N, 3)."""
        f, cx, cy = (focal_cx_cy[:, i].view(-1, 1) for i in range(3))
        z = xyz[..., 2].clamp_min(0.5)
        u = f * xyz[..., 0] / z + cx
        v = f * xyz[..., 1] / z + cy
        grid = torch.stack([u / (w - 1) * 2 - 1, v / (h - 1) * 2 - 1], dim=-1).clamp(-1, 1).unsqueeze(2)
        return nn.functional.grid_sample(fmap, grid, align_corners=True).squeeze(-1).transpose(1, 2)

    def decode(self, vector: Tensor, anchors: dict[str, Tensor], temperature: float = 1.0,
               stretch: Tensor | None = None) -> SlotParams:
        """Slot vectors -> geometry (see module docstring). With ``anchors["parent"]`` (B, K) an alias
        slot takes its parent's vector (merged clusters, :mod:`pipeline.models.slots.grouping`).

        ``stretch`` (B, K, 3), optional: log factors of the blended shape along the slot's own x, y, z axes
        (before the rotation), i.e. ``mesh = R @ (scale * diag(exp(stretch)) @ shape) + centre``; the network
        never predicts it, only the per-frame refinement (``train.refine_stretch``) fits it."""
        m, cfg = self.config.max_log_scale, self.config
        if "parent" in anchors:
            vector = torch.gather(vector, 1, anchors["parent"].unsqueeze(-1).expand_as(vector))
            if stretch is not None:
                stretch = torch.gather(stretch, 1, anchors["parent"].unsqueeze(-1).expand_as(stretch))
        radius = anchors["radius"]
        scale = radius * torch.exp(m * torch.tanh(vector[..., 0] / m))
        centre = anchors["centre"] + radius.unsqueeze(-1) * cfg.max_offset * torch.tanh(vector[..., 1:4])
        yaw = anchor_yaw(anchors["axes"], anchors["spread"])
        euler = vector[..., 4:7] + torch.stack([yaw, torch.zeros_like(yaw), torch.zeros_like(yaw)], dim=-1)
        weights = torch.softmax(vector[..., 7:] / temperature, dim=-1)
        shape = self.prototypes.blend(weights)  # (B, K, V, 3)
        if stretch is not None:
            shape = shape * torch.exp(stretch).unsqueeze(2)
        rotation = euler_to_matrix(euler, EULER_CONVENTION)  # (B, K, 3, 3)
        verts = torch.einsum("bkij,bkvj->bkvi", rotation, shape * scale[..., None, None]) + centre.unsqueeze(2)
        return SlotParams(vector, scale, centre, euler, weights, verts)

    def forward(self, depth: Tensor, focal_cx_cy: Tensor, anchors: dict[str, Tensor], points: Tensor, label: Tensor,
                temperature: float = 1.0) -> SlotParams:
        """Slot vectors (bf16 autocast on CUDA) decoded to geometry in fp32."""
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=depth.is_cuda):
            vectors = self.slot_vectors(depth, focal_cx_cy, anchors, points, label)
        return self.decode(vectors.float(), anchors, temperature)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["EULER_CONVENTION", "SlotParams", "SlotSceneModel", "anchor_descriptor", "num_parameters"]
