"""The table-driven / batched integer paths of PTv3 against straightforward scalar references.

Serialization codes against a per-cell Python transcription of Skilling's transform (bits read from
strings), neighbour maps against a dictionary lookup, the BEV cell sums against `np.add.at`, and the
eval-mode Dropout against `torch.nn.Dropout`. Integer results must be equal, float sums bit-identical.
"""

import numpy as np
import pytest
import torch

from pipeline.models.ptv3.bev_tokens import _cell_sums
from pipeline.models.ptv3.dropout import Dropout
from pipeline.models.ptv3.serialization import ORDERS, encode, encode_all, hilbert_encode, morton_encode
from pipeline.models.ptv3.sparse_conv import build_neighbour_map


def _bits(v: int, depth: int) -> str:
    return format(v & ((1 << depth) - 1), f"0{depth}b") if depth else ""


def _hilbert_reference(x: int, y: int, z: int, depth: int) -> int:
    """Skilling's transform on one cell (low `depth` bits), Morton interleave, Gray decode bit by bit."""
    axes = [v & ((1 << depth) - 1) for v in (x, y, z)]
    for level in range(depth - 1, 0, -1):
        q, low = 1 << level, (1 << level) - 1
        for i in range(3):
            if axes[i] & q:
                axes[0] ^= low
            else:
                swap = (axes[0] ^ axes[i]) & low
                axes[0] ^= swap
                axes[i] ^= swap
    gray = "".join(a + b + c for a, b, c in zip(*(_bits(v, depth) for v in axes)))
    out, acc = [], 0
    for bit in gray:  # binary bit = xor of all Gray bits at and above it
        acc ^= int(bit)
        out.append(str(acc))
    return int("".join(out), 2) if out else 0


def _morton_reference(x: int, y: int, z: int, depth: int) -> int:
    word = "".join(a + b + c for a, b, c in zip(*(_bits(v, depth) for v in (x, y, z))))
    return int(word, 2) if word else 0


@pytest.mark.parametrize("depth", range(0, 17))
def test_codes_match_scalar_references(depth: int) -> None:
    g = torch.Generator().manual_seed(depth)
    coords = torch.randint(0, 2**depth, (60, 3), generator=g)
    coords[:4] = torch.tensor([[0, 0, 0], [2**depth - 1] * 3, [0, 2**depth - 1, 0], [2**depth - 1, 0, 0]])
    cells = coords.tolist()
    assert hilbert_encode(coords, depth).tolist() == [_hilbert_reference(*c, depth) for c in cells]
    assert morton_encode(coords, depth).tolist() == [_morton_reference(*c, depth) for c in cells]
    batch = torch.randint(0, 7, (60,), generator=g)
    together = encode_all(coords, ORDERS, depth, batch)
    refs = {"z": _morton_reference, "hilbert": _hilbert_reference}
    for k, order in enumerate(ORDERS):
        ref = refs[order.removesuffix("-trans")]
        swap = order.endswith("-trans")
        want = [(b << (3 * depth)) | ref(*((y, x, z) if swap else (x, y, z)), depth) for (x, y, z), b in zip(cells, batch.tolist())]
        assert together[k].tolist() == want
        assert encode(coords, order, depth, batch).tolist() == want


def test_codes_read_only_the_low_depth_bits() -> None:
    g = torch.Generator().manual_seed(5)
    coords = torch.randint(-70000, 70000, (100, 3), generator=g)
    for depth in (3, 9, 12):
        cells = coords.tolist()
        assert hilbert_encode(coords, depth).tolist() == [_hilbert_reference(*c, depth) for c in cells]
        assert morton_encode(coords, depth).tolist() == [_morton_reference(*c, depth) for c in cells]


def test_codes_of_empty_input_and_subset_of_orders() -> None:
    empty = torch.zeros(0, 3, dtype=torch.long)
    assert encode_all(empty, ORDERS, 4).shape == (4, 0)
    coords = torch.tensor([[1, 2, 3], [3, 2, 1]])
    sub = encode_all(coords, ("hilbert-trans", "z"), 2)
    assert torch.equal(sub, torch.stack([encode(coords, "hilbert-trans", 2), encode(coords, "z", 2)]))
    with pytest.raises(ValueError, match="unknown serialization order"):
        encode_all(coords, ("peano",), 2)


def _dict_neighbours(grid: torch.Tensor, batch: torch.Tensor, kernel_size: int) -> list:
    """Per slot (KRSC order, dx major): (out rows ascending, in rows) by a dictionary lookup; centre None."""
    where = {(b, *c): i for i, (b, c) in enumerate(zip(batch.tolist(), grid.tolist()))}
    r = kernel_size // 2
    span = range(-r, r + 1)
    maps = []
    for dx in span:
        for dy in span:
            for dz in span:
                if dx == dy == dz == 0:
                    maps.append(None)
                    continue
                pairs = [(i, where.get((b, x + dx, y + dy, z + dz))) for i, (b, (x, y, z)) in enumerate(zip(batch.tolist(), grid.tolist()))]
                pairs = [(i, j) for i, j in pairs if j is not None]
                maps.append(([i for i, _ in pairs], [j for _, j in pairs]))
    return maps


@pytest.mark.parametrize("seed", range(6))
def test_neighbour_map_matches_dictionary_lookup(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    side = [2, 4, 9, 30, 65536, 65536][seed]  # dense to sparse, up to the 16-bit limit (incl. 0 and 65535)
    cells = torch.cat([torch.randint(0, 3, (300, 1), generator=g), torch.randint(0, side, (300, 3), generator=g)], 1)
    if side == 65536:
        cells[:20, 1:] = torch.randint(65530, 65536, (20, 3), generator=g)  # neighbours at the top of the range
        cells[20:40, 1:] = torch.randint(0, 3, (20, 3), generator=g)
    cells = torch.unique(cells, dim=0)
    cells = cells[torch.randperm(len(cells), generator=g)]  # rows in no particular order
    batch, grid = cells[:, 0].contiguous(), cells[:, 1:].contiguous()
    for kernel in (1, 3, 5):
        got = build_neighbour_map(grid, batch, kernel)
        want = _dict_neighbours(grid, batch, kernel)
        assert len(got) == len(want) == kernel**3
        for g_slot, w_slot in zip(got, want):
            if w_slot is None:
                assert g_slot is None
            else:
                assert g_slot[0].tolist() == w_slot[0] and g_slot[1].tolist() == w_slot[1]


def test_neighbour_map_edge_cases() -> None:
    empty = build_neighbour_map(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert empty[13] is None and all(p[0].numel() == 0 for i, p in enumerate(empty) if i != 13)
    one = build_neighbour_map(torch.tensor([[5, 5, 5]]), torch.zeros(1, dtype=torch.long))
    assert sum(p[0].numel() for p in one if p is not None) == 0
    with pytest.raises(ValueError, match="duplicate"):
        build_neighbour_map(torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.zeros(2, dtype=torch.long))
    # the same voxel in two clouds is not a duplicate, and the clouds do not see each other
    two = build_neighbour_map(torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 4]]), torch.tensor([0, 1, 1]))
    assert [(i, p[0].tolist(), p[1].tolist()) for i, p in enumerate(two) if p is not None and p[0].numel()] == [
        (12, [2], [1]), (14, [1], [2])]


def test_cell_sums_bit_identical_to_add_at() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        values = (rng.standard_normal((500, 7)) * 10 ** rng.uniform(-3, 3, (500, 1))).astype(dtype)
        values[:5] = -0.0
        cell = rng.integers(0, 40, 500)
        want = np.zeros((45, 7))
        np.add.at(want, cell, values.astype(np.float64))
        got = _cell_sums(cell, values, 45)
        assert got.shape == want.shape and got.tobytes() == want.tobytes()
    assert _cell_sums(np.zeros(0, np.int64), np.zeros((0, 3)), 4).tobytes() == np.zeros((4, 3)).tobytes()


def test_dropout_identity_in_eval_and_torch_in_training() -> None:
    x = torch.randn(50, 8)
    ours, ref = Dropout(0.3), torch.nn.Dropout(0.3)
    assert ours.eval()(x) is x and Dropout(0.0).train()(x) is x
    torch.manual_seed(1)
    a = ours.train()(x)
    torch.manual_seed(1)
    assert torch.equal(a, ref.train()(x))
