"""Curve codes against direct bit-interleaving references and Hilbert-curve properties."""

import itertools

import pytest
import torch

from pipeline.models.ptv3.serialization import encode, hilbert_encode, morton_encode, serialize, serialization_depth


def _interleave_reference(x: int, y: int, z: int, depth: int) -> int:
    """Binary strings, MSB first, interleaved x y z per level."""
    bx, by, bz = (format(v, f"0{depth}b") for v in (x, y, z))
    return int("".join(a + b + c for a, b, c in zip(bx, by, bz)), 2)


def test_morton_matches_bitwise_reference() -> None:
    g = torch.Generator().manual_seed(0)
    for depth in (1, 3, 7, 16):
        coords = torch.randint(0, 2**depth, (200, 3), generator=g)
        got = morton_encode(coords, depth).tolist()
        ref = [_interleave_reference(*c, depth) for c in coords.tolist()]
        assert got == ref
        got_t = encode(coords, "z-trans", depth).tolist()
        assert got_t == [_interleave_reference(y, x, z, depth) for x, y, z in coords.tolist()]


def test_batch_bits() -> None:
    coords = torch.tensor([[3, 1, 2], [3, 1, 2]])
    batch = torch.tensor([0, 5])
    codes = encode(coords, "hilbert", 2, batch)
    assert codes[1] - codes[0] == 5 << 6


def test_hilbert_depth1_is_gray_code_order() -> None:
    cells = torch.tensor(list(itertools.product(range(2), repeat=3)))
    codes = hilbert_encode(cells, 1)
    for (x, y, z), c in zip(cells.tolist(), codes.tolist()):
        gray = c ^ (c >> 1)
        assert (x, y, z) == ((gray >> 2) & 1, (gray >> 1) & 1, gray & 1)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_hilbert_bijection_adjacent_and_octants(depth: int) -> None:
    side = 2**depth
    cells = torch.tensor(list(itertools.product(range(side), repeat=3)))
    codes = hilbert_encode(cells, depth)
    assert sorted(codes.tolist()) == list(range(side**3))  # bijection
    path = cells[torch.argsort(codes)]
    steps = (path[1:] - path[:-1]).abs().sum(1)
    assert bool((steps == 1).all())  # consecutive codes are face-adjacent cells
    assert path[0].tolist() == [0, 0, 0]
    # recursive structure: each block of 8**(depth-1) codes fills one octant
    octant = path // (side // 2)
    blocks = octant.reshape(8, -1, 3)
    assert bool((blocks == blocks[:, :1]).all())
    trans = encode(cells, "hilbert-trans", depth)
    assert trans.tolist() == hilbert_encode(cells[:, [1, 0, 2]], depth).tolist()


def test_serialize_orders_and_inverse() -> None:
    g = torch.Generator().manual_seed(1)
    grid = torch.unique(torch.randint(0, 20, (300, 3), generator=g), dim=0)
    batch = (torch.arange(len(grid)) >= len(grid) // 2).long()
    orders = ("z", "z-trans", "hilbert", "hilbert-trans")
    order, inverse, depth = serialize(grid, batch, orders, shuffle=False)
    assert depth == serialization_depth(grid) == 5
    m = len(grid)
    for k, name in enumerate(orders):
        assert torch.equal(order[k][inverse[k]], torch.arange(m))
        codes = encode(grid, name, depth, batch)[order[k]]
        assert bool((codes[1:] > codes[:-1]).all())
        assert bool((batch[order[k]][1:] >= batch[order[k]][:-1]).all())  # clouds stay contiguous
    a = serialize(grid, batch, orders, shuffle=True, generator=torch.Generator().manual_seed(3))
    b = serialize(grid, batch, orders, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
    assert sorted(tuple(r) for r in a[0].tolist()) == sorted(tuple(r) for r in order.tolist())


def test_depth_limit() -> None:
    with pytest.raises(ValueError):
        serialization_depth(torch.tensor([[70000, 0, 0]]))
