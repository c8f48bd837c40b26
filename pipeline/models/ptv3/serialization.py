"""Space-filling-curve codes of voxel coordinates and the serialized orders PTv3 attends along.

Conventions (chosen to match upstream PTv3 so that patches contain the same voxels):
- Morton ("z"): bit i of x, y, z goes to code bit 3i+2, 3i+1, 3i (x most significant in each triple).
- Hilbert: Skilling's transpose algorithm (Skilling 2004, "Programming the Hilbert curve"), axes
  (x, y, z) = dims (0, 1, 2); after the transform, bits are interleaved like Morton (dim 0 most
  significant) and the Gray code is undone over the whole 3*depth-bit word.
- "*-trans" orders apply the same curve to columns (y, x, z).
- Batched code = cloud index << (3*depth) | curve code, so clouds never interleave.
- depth = bit_length(max(grid_coord) + 1), at most 16.
"""

from __future__ import annotations

import torch

from .config import ORDERS


def _spread_bits(v: torch.Tensor, depth: int) -> torch.Tensor:
    """Move bit i of `v` (int64) to bit 3i."""
    out = torch.zeros_like(v)
    for i in range(depth):
        out |= ((v >> i) & 1) << (3 * i)
    return out


def interleave3(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int) -> torch.Tensor:
    """3*depth-bit word with bit i of x, y, z at positions 3i+2, 3i+1, 3i (int64 in, int64 out)."""
    return (_spread_bits(x, depth) << 2) | (_spread_bits(y, depth) << 1) | _spread_bits(z, depth)


def morton_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Z-order codes [M] of integer coordinates [M, 3] in [0, 2**depth)."""
    g = grid_coord.long()
    return interleave3(g[:, 0], g[:, 1], g[:, 2], depth)


def hilbert_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Hilbert codes [M] of integer coordinates [M, 3] in [0, 2**depth).

    Consecutive codes are face-adjacent cells (unit Manhattan step); the map is a bijection of
    [0, 2**depth)^3 onto [0, 8**depth).
    """
    g = grid_coord.long()
    x = [g[:, 0].clone(), g[:, 1].clone(), g[:, 2].clone()]
    # Inverse undo: from the most significant level down, rotate / reflect the lower bits.
    for level in range(depth - 1, 0, -1):
        q = 1 << level
        low = q - 1
        for i in range(3):
            on = (x[i] & q) != 0
            # bit set: invert the low bits of axis 0; bit clear: swap the low bits of axes 0 and i.
            x[0] = torch.where(on, x[0] ^ low, x[0])
            t = torch.where(on, torch.zeros_like(x[0]), (x[0] ^ x[i]) & low)
            x[0] = x[0] ^ t
            x[i] = x[i] ^ t
    gray = interleave3(x[0], x[1], x[2], depth)
    # Gray -> binary over the full word (prefix xor of higher bits).
    code = gray
    shift = 1
    while shift < 3 * depth:
        code = code ^ (code >> shift)
        shift <<= 1
    return code


def encode(grid_coord: torch.Tensor, order: str, depth: int, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Curve code [M] (int64) for `order` in ORDERS, with the cloud index in the high bits if given."""
    if order not in ORDERS:
        raise ValueError(f"unknown serialization order {order!r}; expected one of {ORDERS}")
    g = grid_coord.long()
    if order.endswith("-trans"):
        g = g[:, [1, 0, 2]]
    code = morton_encode(g, depth) if order.startswith("z") else hilbert_encode(g, depth)
    if batch is not None:
        code = (batch.long() << (3 * depth)) | code
    return code


def serialization_depth(grid_coord: torch.Tensor) -> int:
    """Bits per axis needed for the coordinates (bit_length(max + 1)); raises if above 16."""
    depth = int(int(grid_coord.max()) + 1).bit_length() if grid_coord.numel() else 1
    if depth > 16:
        raise ValueError(f"grid_coord max {int(grid_coord.max())} needs {depth} bits per axis (> 16); use a coarser grid_size")
    return depth


@torch.no_grad()
def serialize(
    grid_coord: torch.Tensor,
    batch: torch.Tensor,
    orders: tuple[str, ...],
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Serialized orders for every curve.

    Returns (order [K, M] row indices sorted by code, inverse [K, M] with order[k][inverse[k]] = arange,
    depth). With `shuffle`, the K orders are permuted by `torch.randperm(K, generator=generator)`
    (upstream shuffles the order list at the model input and at every pooling).
    """
    depth = serialization_depth(grid_coord)
    num_clouds = int(batch.max()) + 1 if batch.numel() else 1
    if 3 * depth + num_clouds.bit_length() > 63:
        raise ValueError(f"serialization: {num_clouds} clouds with depth {depth} overflow a 63-bit code")
    codes = torch.stack([encode(grid_coord, o, depth, batch) for o in orders])
    order = torch.argsort(codes, dim=1)
    inverse = torch.empty_like(order)
    inverse.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    if shuffle and len(orders) > 1:
        perm = torch.randperm(len(orders), generator=generator).to(order.device)
        order, inverse = order[perm], inverse[perm]
    return order, inverse, depth
