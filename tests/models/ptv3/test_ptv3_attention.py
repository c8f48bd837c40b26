"""Serialized patch attention against a naive per-patch loop."""

import math

import pytest
import torch

from pipeline.models.ptv3.attention import SerializedAttention, patch_layout
from pipeline.models.ptv3.point import PointBatch
from pipeline.models.ptv3.serialization import serialize


def _patches_reference(n: int, k: int) -> list[list[int]]:
    """Patches (lists of positions within one cloud) by the upstream rule."""
    if n <= k:
        return [list(range(n))]
    patches = [list(range(s, min(s + k, n))) for s in range(0, n, k)]
    last, prev = patches[-1], patches[-2]
    patches[-1] = last + prev[len(last):]  # fill from the same slots of the previous patch
    return patches


def _naive(attn: SerializedAttention, point: PointBatch, k_eff: int) -> torch.Tensor:
    h, c = attn.num_heads, attn.channels
    d = c // h
    order = point.serialized_order[attn.order_index]
    qkv = attn.qkv(point.feat)
    out = torch.zeros(len(order), c, dtype=qkv.dtype)
    start = 0
    for n in torch.diff(point.offset, prepend=torch.zeros(1, dtype=torch.long)).tolist():
        done: set[int] = set()  # a padded slot repeats a token already output by an earlier patch
        for patch in _patches_reference(n, k_eff):
            rows = [int(order[start + p]) for p in patch]
            x = qkv[rows].reshape(len(rows), 3, h, d)
            for head in range(h):
                q, kk, v = x[:, 0, head], x[:, 1, head], x[:, 2, head]
                w = torch.softmax(q @ kk.t() / math.sqrt(d), dim=1)
                y = w @ v
                for i, r in enumerate(rows):
                    if r not in done:
                        out[r, head * d:(head + 1) * d] = y[i]
            done.update(rows)
        start += n
    return attn.proj(out)


@pytest.mark.parametrize("flash", [True, False])
def test_matches_naive(flash: bool) -> None:
    g = torch.Generator().manual_seed(0)
    grids = [torch.unique(torch.randint(0, 12, (n, 3), generator=g), dim=0) for n in (70, 11)]
    grid = torch.cat(grids)
    offset = torch.cumsum(torch.tensor([len(x) for x in grids]), 0)
    point = PointBatch(coord=grid.double(), grid_coord=grid, feat=torch.randn(len(grid), 8, generator=g, dtype=torch.float64), offset=offset)
    point.serialized_order, point.serialized_inverse, _ = serialize(grid, point.batch, ("z", "hilbert"), shuffle=False)
    torch.manual_seed(0)
    attn = SerializedAttention(8, 2, patch_size=16, order_index=1, enable_flash=flash).double().eval()
    for lin in (attn.qkv, attn.proj):
        torch.nn.init.normal_(lin.weight, std=0.5)
    k_eff = 16 if flash else min(len(grids[1]), 16)
    torch.testing.assert_close(attn(point), _naive(attn, point, k_eff))


def test_patch_layout() -> None:
    groups = patch_layout([10, 3, 8], 4)
    idx, real, length = groups[0]
    assert length == 4
    # cloud 0: positions 0..9 -> patches [0-3][4-7][8,9,6,7]; cloud 2 (start 13): [13-16][17-20]
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 6, 7, 13, 14, 15, 16, 17, 18, 19, 20]
    assert real.tolist() == [True] * 10 + [False] * 2 + [True] * 8
    assert groups[1][0].tolist() == [10, 11, 12] and groups[1][2] == 3
