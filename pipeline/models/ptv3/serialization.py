"""Space-filling-curve codes of voxel coordinates and the serialized orders PTv3 attends along.

Conventions (chosen to match upstream PTv3 so that patches contain the same voxels):
- Morton ("z"): bit i of x, y, z goes to code bit 3i+2, 3i+1, 3i (x most significant in each triple).
- Hilbert: Skilling's transpose algorithm (Skilling 2004, "Programming the Hilbert curve"), axes
  (x, y, z) = dims (0, 1, 2); after the transform, bits are interleaved like Morton (dim 0 most
  significant) and the Gray code is undone over the whole 3*depth-bit word.
- "*-trans" orders apply the same curve to columns (y, x, z).
- Batched code = cloud index << (3*depth) | curve code, so clouds never interleave.
- depth = bit_length(max(grid_coord) + 1), at most 16. Only the low `depth` bits of each coordinate
  are read (two's complement for negative values).

Implementation (table-driven, a few dozen whole-tensor ops per call, on any device):
- Morton: each coordinate's bits are spread with a 256-entry table per byte.
- Hilbert: Skilling's per-level transform acts on the still-unread lower bits of the three axes as a
  signed axis permutation (which axis each transformed axis reads, and whether it is inverted). That
  state plus the next level's octant (3 bits of the Morton code) fixes the level's Gray digit and the
  next state, so the curve is a finite-state machine over the Morton code, run `_CHUNK` levels per
  table lookup from the most significant level down; the Gray code is then undone over the whole word.
  The tables are derived from the per-level rule of Skilling's algorithm (`_level_step`).
"""

from __future__ import annotations

import functools
import itertools

import torch

from .config import ORDERS

_CHUNK = 4  # Hilbert levels per table lookup (tables of 8**_CHUNK entries per state)
_MAX_DEPTH = 16


@functools.lru_cache(maxsize=None)
def _spread_table(device: torch.device) -> torch.Tensor:
    """[256] int64: bit i of the index moved to bit 3i."""
    v = torch.arange(256, dtype=torch.int64)
    out = torch.zeros_like(v)
    for i in range(8):
        out |= ((v >> i) & 1) << (3 * i)
    return out.to(device)


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 1-D table and an index of any shape (`index_select`: far fewer overheads)."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def _spread_bits(v: torch.Tensor, depth: int) -> torch.Tensor:
    """Move bit i of `v` (int64) to bit 3i, for the bits i < depth (one table lookup per byte)."""
    table = _spread_table(v.device)
    v = v & ((1 << depth) - 1)
    out = _lookup(table, v & 255)
    for byte in range(1, -(-depth // 8)):
        out |= _lookup(table, (v >> (8 * byte)) & 255) << (24 * byte)
    return out


def interleave3(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int) -> torch.Tensor:
    """3*depth-bit word with bit i of x, y, z at positions 3i+2, 3i+1, 3i (int64 in, int64 out)."""
    return (_spread_bits(x, depth) << 2) | (_spread_bits(y, depth) << 1) | _spread_bits(z, depth)


def morton_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Z-order codes [M] of integer coordinates [M, 3] in [0, 2**depth)."""
    g = grid_coord.long()
    return interleave3(g[:, 0], g[:, 1], g[:, 2], depth)


# A Hilbert state (perm, flip): transformed axis i reads input axis perm[i], inverted if flip[i].
_State = tuple[tuple[int, int, int], tuple[int, int, int]]


def _level_step(state: _State, octant: int) -> tuple[int, _State]:
    """One level of Skilling's transform: (Gray digit, next state) for the input octant (x<<2 | y<<1 | z).

    Per axis i = 0, 1, 2 with bit b_i of the transformed axis i at this level: b_i set inverts the lower
    bits of axis 0, b_i clear swaps the lower bits of axes 0 and i.
    """
    perm, flip = list(state[0]), list(state[1])
    bits = [((octant >> (2 - perm[i])) & 1) ^ flip[i] for i in range(3)]
    for i in range(3):
        if bits[i]:
            flip[0] ^= 1
        else:
            perm[0], perm[i] = perm[i], perm[0]
            flip[0], flip[i] = flip[i], flip[0]
    return (bits[0] << 2) | (bits[1] << 1) | bits[2], (tuple(perm), tuple(flip))


def _states() -> list[_State]:
    """All 48 signed permutations of the axes, the identity (the transform's start) first."""
    identity: _State = ((0, 1, 2), (0, 0, 0))
    others = [(p, f) for p in itertools.permutations(range(3)) for f in itertools.product((0, 1), repeat=3)]
    return [identity] + [s for s in others if s != identity]


@functools.lru_cache(maxsize=None)
def _hilbert_tables(levels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(gray, next_state), each [48 * 8**levels] int64 indexed by state * 8**levels + chunk.

    `chunk` holds `levels` octants, the most significant level in the high bits; `gray` the matching
    Gray digits in the same layout. Built from one level (`_level_step`) by composition on the CPU.
    """
    if levels == 1:
        states = _states()
        index = {s: n for n, s in enumerate(states)}
        steps = [_level_step(s, octant) for s in states for octant in range(8)]
        gray = torch.tensor([digit for digit, _ in steps], dtype=torch.int64)
        nxt = torch.tensor([index[s] for _, s in steps], dtype=torch.int64)
    else:
        gray1, next1 = _hilbert_tables(1, torch.device("cpu"))
        gray_rest, next_rest = _hilbert_tables(levels - 1, torch.device("cpu"))
        rest = 8 ** (levels - 1)
        entry = torch.arange(len(gray1) * rest)
        state, chunk = entry // (8 * rest), entry % (8 * rest)
        first = state * 8 + chunk // rest
        second = next1[first] * rest + chunk % rest
        gray = (gray1[first] << (3 * (levels - 1))) | gray_rest[second]
        nxt = next_rest[second]
    return gray.to(device), nxt.to(device)


def hilbert_from_morton(morton: torch.Tensor, depth: int) -> torch.Tensor:
    """Hilbert codes (any shape, int64) of the cells whose Morton codes (3*depth bits) are given."""
    state = None
    gray = torch.zeros_like(morton)
    level = depth
    while level > 0:
        k = level % _CHUNK or _CHUNK
        level -= k
        shift = 3 * level
        chunk = (morton >> shift) & (8**k - 1)
        table_gray, table_next = _hilbert_tables(k, morton.device)
        idx = chunk if state is None else state * 8**k + chunk
        gray |= _lookup(table_gray, idx) << shift
        state = _lookup(table_next, idx)
    # Gray -> binary over the full word (prefix xor of higher bits).
    code = gray
    shift = 1
    while shift < 3 * depth:
        code = code ^ (code >> shift)
        shift <<= 1
    return code


def hilbert_encode(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    """Hilbert codes [M] of integer coordinates [M, 3] in [0, 2**depth).

    Consecutive codes are face-adjacent cells (unit Manhattan step); the map is a bijection of
    [0, 2**depth)^3 onto [0, 8**depth).
    """
    return hilbert_from_morton(morton_encode(grid_coord, depth), depth)


def encode_all(grid_coord: torch.Tensor, orders: tuple[str, ...], depth: int, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Curve codes [K, M] (int64) for `orders` (each in ORDERS), cloud index in the high bits if given.

    The three coordinates are spread once; both Hilbert orders run through one table pass.
    """
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"unknown serialization order {order!r}; expected one of {ORDERS}")
    g = grid_coord.long()
    sx, sy, sz = (_spread_bits(g[:, i], depth) for i in range(3))
    morton = {"z": (sx << 2) | (sy << 1) | sz, "z-trans": (sy << 2) | (sx << 1) | sz}
    curves = sorted({o.replace("hilbert", "z") for o in orders if o.startswith("hilbert")})
    if curves:
        hilbert = hilbert_from_morton(torch.stack([morton[c] for c in curves]), depth)
        morton.update({c.replace("z", "hilbert"): h for c, h in zip(curves, hilbert)})
    codes = torch.stack([morton[o] for o in orders]) if orders else g.new_zeros(0, len(g))
    if batch is not None:
        codes = (batch.long() << (3 * depth)) | codes
    return codes


def encode(grid_coord: torch.Tensor, order: str, depth: int, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Curve code [M] (int64) for `order` in ORDERS, with the cloud index in the high bits if given."""
    return encode_all(grid_coord, (order,), depth, batch)[0]


def serialization_depth(grid_coord: torch.Tensor) -> int:
    """Bits per axis needed for the coordinates (bit_length(max + 1)); raises if above 16."""
    depth = int(int(grid_coord.max()) + 1).bit_length() if grid_coord.numel() else 1
    if depth > _MAX_DEPTH:
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
    codes = encode_all(grid_coord, orders, depth, batch)
    order = torch.argsort(codes, dim=1)
    inverse = torch.empty_like(order)
    inverse.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    if shuffle and len(orders) > 1:
        perm = torch.randperm(len(orders), generator=generator).to(order.device)
        order, inverse = order[perm], inverse[perm]
    return order, inverse, depth
