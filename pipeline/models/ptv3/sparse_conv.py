"""Submanifold sparse 3-D convolution in pure PyTorch, weight-compatible with spconv 2.x.

Weight layout is spconv's KRSC: `weight` [C_out, kD, kH, kW, C_in], `bias` [C_out]. Kernel axes follow
the grid columns (kD = x, kH = y, kW = z). Output at voxel p (cross-correlation, submanifold: outputs
only at input voxels, absent neighbours contribute zero, clouds never mix):

    out[p] = bias + sum_{a,b,c in 0..2} W[:, a, b, c, :] @ feat[p + (a-1, b-1, c-1)]

Neighbour search: a 64-bit key per voxel (cloud, x+1, y+1, z+1 in 13/17/17/17 bits), sorted once;
one batched `searchsorted` finds dz = -1 for the 9 (dx, dy) columns, dz = 0 and +1 follow by stepping
along the sorted keys. The neighbour map depends only on the voxel set, so it is cached per stage
(`PointBatch.cache`, like spconv's `indice_key`).
spconv itself is opt-in: `backend="auto"` uses it when it imports and the features are on CUDA.
"""

from __future__ import annotations

import torch
from torch import nn

_BITS = 17  # per axis: coords + 1 in [0, 2**16 + 1]


def _voxel_keys(grid_coord: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    g = grid_coord.long() + 1
    return (batch.long() << (3 * _BITS)) | (g[:, 0] << (2 * _BITS)) | (g[:, 1] << _BITS) | g[:, 2]


def kernel_offsets(kernel_size: int = 3, device: torch.device | None = None) -> torch.Tensor:
    """[k**3, 3] offsets (dx, dy, dz) in the flattened KRSC slot order 9a + 3b + c (for k=3)."""
    r = torch.arange(kernel_size, device=device) - kernel_size // 2
    return torch.cartesian_prod(r, r, r)


@torch.no_grad()
def build_neighbour_map(grid_coord: torch.Tensor, batch: torch.Tensor, kernel_size: int = 3) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """For each kernel slot, (out_rows, in_rows) with grid_coord[in] = grid_coord[out] + offset.

    Returns a list of length kernel_size**3; the centre slot is None (identity pairing). Within a slot,
    out_rows are unique, so accumulation by plain indexing is deterministic.
    """
    if grid_coord.numel() and int(grid_coord.max()) >= 1 << 16:
        raise ValueError("sparse conv: grid_coord exceeds 16 bits per axis")
    keys = _voxel_keys(grid_coord, batch)
    sorted_keys, perm = torch.sort(keys)
    if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise ValueError("sparse conv: duplicate voxels in the same cloud (grid-sample the points first)")
    # Keys are unique and sorted, so for a query q: pos(q + 1) = pos(q) + [q is a key] (pos = number of
    # keys < q). One search per (dx, dy) column at dz = -r gives every dz of that column by stepping.
    # A shift can only leave the (cloud, axis) field when a coordinate+1 drops to -1 or 2**17; with
    # coords + 1 in [1, 2**16] and |d| <= kernel//2 < 2**16 that never happens.
    m, r = keys.numel(), kernel_size // 2
    span = range(-r, r + 1)  # columns in kernel_offsets order (dx major), dz = -r
    shifts = torch.tensor([(dx << (2 * _BITS)) + (dy << _BITS) - r for dx in span for dy in span], device=keys.device)
    query = keys.unsqueeze(0) + shifts.unsqueeze(1)  # [k^2, M]
    pos = torch.searchsorted(sorted_keys, query)
    hits, positions = [], []
    for _ in range(kernel_size):
        found = sorted_keys.index_select(0, pos.clamp(max=max(m - 1, 0)).reshape(-1)).view_as(query) == query
        hits.append(found)
        positions.append(pos)
        pos, query = pos + found, query + 1
    hit = torch.stack(hits, 1).reshape(kernel_size**3, m)  # [k^3, M], slot = k * column + (dz + r)
    hit[hit.shape[0] // 2] = False  # centre slot: identity pairing, not listed
    flat = hit.reshape(-1).nonzero().squeeze(1)  # slot-major, rows ascending within a slot
    out_rows = flat % max(m, 1)
    in_rows = perm.index_select(0, torch.stack(positions, 1).reshape(-1).index_select(0, flat))
    counts = hit.sum(1).tolist()
    maps: list[tuple[torch.Tensor, torch.Tensor] | None] = list(zip(out_rows.split(counts), in_rows.split(counts)))
    maps[hit.shape[0] // 2] = None
    return maps


def submanifold_conv(
    feat: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    neighbour_map: list[tuple[torch.Tensor, torch.Tensor] | None],
) -> torch.Tensor:
    """Apply a KRSC kernel [C_out, k, k, k, C_in] to feat [M, C_in] with a neighbour map -> [M, C_out]."""
    c_out, c_in = weight.shape[0], weight.shape[-1]
    w = weight.reshape(c_out, -1, c_in)  # [C_out, k^3, C_in], slot order 9a + 3b + c
    centre = w.shape[1] // 2
    out = feat @ w[:, centre, :].t()
    for slot, pair in enumerate(neighbour_map):
        if pair is None or pair[0].numel() == 0:
            continue
        out_rows, in_rows = pair
        out.index_add_(0, out_rows, feat.index_select(0, in_rows) @ w[:, slot, :].t())  # out_rows unique: one add per row
    if bias is not None:
        out = out + bias
    return out


def spconv_available() -> bool:
    try:
        import spconv.pytorch  # noqa: F401
    except Exception:
        return False
    return True


class SubMConv3d(nn.Module):
    """Submanifold 3-D conv with spconv-compatible parameters (`weight` KRSC, `bias`).

    forward(feat [M, C_in], grid_coord [M, 3], batch [M], cache dict, cache_key) -> [M, C_out].
    `backend`: "torch" (default), "spconv" (require spconv, CUDA only), "auto" (spconv if it imports
    and the input is on CUDA, else torch).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True, backend: str = "torch") -> None:
        super().__init__()
        if backend not in ("auto", "torch", "spconv"):
            raise ValueError(f"SubMConv3d: backend must be auto/torch/spconv, got {backend!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.backend = backend
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._spconv: list[nn.Module] = []  # not registered: keeps the state_dict spconv-free
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.weight, std=0.02)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, backend={self.backend}"

    def _use_spconv(self, feat: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "spconv":
            if not (spconv_available() and feat.is_cuda):
                raise RuntimeError("SubMConv3d backend='spconv' needs spconv installed and CUDA tensors")
            return True
        return feat.is_cuda and spconv_available()

    def forward(self, feat: torch.Tensor, grid_coord: torch.Tensor, batch: torch.Tensor, cache: dict | None = None, cache_key: str = "") -> torch.Tensor:
        if self._use_spconv(feat):
            return self._forward_spconv(feat, grid_coord, batch)
        key = f"nbr_{cache_key}_{self.kernel_size}"
        if cache is not None and key in cache:
            nmap = cache[key]
        else:
            nmap = build_neighbour_map(grid_coord, batch, self.kernel_size)
            if cache is not None:
                cache[key] = nmap
        return submanifold_conv(feat, self.weight, self.bias, nmap)

    def _forward_spconv(self, feat: torch.Tensor, grid_coord: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        # Untested here (no GPU): spconv's own module, sharing our Parameters (KRSC layout in spconv >= 2.2).
        import spconv.pytorch as spconv

        if not self._spconv:
            mod = spconv.SubMConv3d(self.in_channels, self.out_channels, self.kernel_size, bias=self.bias is not None)
            self._spconv.append(mod)
        mod = self._spconv[0]
        mod.weight = self.weight  # re-bind every call: load_state_dict(assign=True) may replace them
        mod.bias = self.bias
        indices = torch.cat([batch.int().unsqueeze(1), grid_coord.int()], dim=1)
        shape = (grid_coord.max(0).values + 96).tolist()
        x = spconv.SparseConvTensor(feat, indices, shape, int(batch.max()) + 1)
        return mod(x).features


def count_pairs(neighbour_map: list[tuple[torch.Tensor, torch.Tensor] | None]) -> int:
    """Number of (out, in) neighbour pairs excluding the centre (diagnostics)."""
    return sum(0 if p is None else int(p[0].numel()) for p in neighbour_map)


__all__ = ["SubMConv3d", "build_neighbour_map", "submanifold_conv", "kernel_offsets", "spconv_available", "count_pairs"]
