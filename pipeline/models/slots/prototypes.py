"""The prototype bank: one fixed unit ico-sphere and P learned per-vertex deformations of it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.geometry.icosphere import ico_sphere


class PrototypeBank(nn.Module):
    """``shape(w) = sphere + sum_p w_p * offsets_p`` for softmax weights ``w`` ("blurred" prototypes).

    The sphere is a buffer (never trained); ``offsets`` (P, V, 3) are the learned prototypes, in
    units of the slot scale. They start as small random bumps so the prototypes differ and the
    logits receive gradient; :meth:`init_from_extents` replaces them by P axis-aligned ellipsoids
    (shape clusters of the training objects, :func:`pipeline.models.slots.shapes.shape_clusters`).
    ``extents`` (P, 3) keeps those ellipsoids' semi-axes (ones = the sphere): the model's anchor
    prior over prototypes compares each anchor's normalised extents with them.
    """

    def __init__(self, prototypes: int, ico_level: int, init_std: float = 0.02, seed: int = 0):
        super().__init__()
        verts, faces = ico_sphere(ico_level)
        self.register_buffer("sphere", verts)
        self.register_buffer("faces", faces)
        generator = torch.Generator().manual_seed(seed)
        self.offsets = nn.Parameter(torch.randn(prototypes, verts.shape[0], 3, generator=generator) * init_std)
        edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        self.register_buffer("edges", torch.unique(torch.sort(edges, dim=1).values, dim=0))
        self.register_buffer("extents", torch.ones(prototypes, 3))

    @torch.no_grad()
    def init_from_extents(self, extents: Tensor) -> None:
        """Prototype p := the sphere stretched by ``extents[p]`` (P, 3) along local x, y, z."""
        extents = torch.as_tensor(extents, dtype=self.sphere.dtype, device=self.sphere.device)
        self.offsets.copy_(self.sphere[None] * (extents[:, None, :] - 1))
        self.extents.copy_(extents)

    def shapes(self) -> Tensor:
        """(P, V, 3) the P prototype shapes on their own (unit scale, no pose)."""
        return self.sphere + self.offsets

    def blend(self, weights: Tensor) -> Tensor:
        """weights (..., P) summing to 1 -> blended shapes (..., V, 3)."""
        return self.sphere + torch.einsum("...p,pvc->...vc", weights, self.offsets)

    def smoothness(self) -> Tensor:
        """Mean squared difference of offsets across mesh edges (a graph-Laplacian regulariser)."""
        diff = self.offsets[:, self.edges[:, 0]] - self.offsets[:, self.edges[:, 1]]
        return diff.pow(2).sum(-1).mean()
