"""Pure-PyTorch submanifold conv against a dense conv3d reference (KRSC weight, active sites only)."""

import torch
import torch.nn.functional as F

from pipeline.models.ptv3.sparse_conv import SubMConv3d, build_neighbour_map, submanifold_conv


def _random_grid(seed: int, size: int = 6, density: float = 0.4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(size, size, size, generator=g) < density
    return occ.nonzero()  # [M, 3] (x, y, z), lexicographic


def _dense_reference(grid: torch.Tensor, feat: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, size: int) -> torch.Tensor:
    c_in = feat.shape[1]
    dense = torch.zeros(1, c_in, size, size, size, dtype=feat.dtype)
    dense[0, :, grid[:, 0], grid[:, 1], grid[:, 2]] = feat.t()
    w = weight.permute(0, 4, 1, 2, 3)  # KRSC [out, kD, kH, kW, in] -> [out, in, kD, kH, kW]
    out = F.conv3d(dense, w, bias, padding=1)
    return out[0, :, grid[:, 0], grid[:, 1], grid[:, 2]].t()


def test_matches_dense_conv3d() -> None:
    size = 6
    for seed in range(3):
        grid = _random_grid(seed, size)
        perm = torch.randperm(len(grid), generator=torch.Generator().manual_seed(seed))
        grid = grid[perm]  # row order must not matter
        g = torch.Generator().manual_seed(100 + seed)
        feat = torch.randn(len(grid), 5, generator=g, dtype=torch.float64)
        weight = torch.randn(4, 3, 3, 3, 5, generator=g, dtype=torch.float64)
        bias = torch.randn(4, generator=g, dtype=torch.float64)
        batch = torch.zeros(len(grid), dtype=torch.long)
        got = submanifold_conv(feat, weight, bias, build_neighbour_map(grid, batch))
        ref = _dense_reference(grid, feat, weight, bias, size)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_single_neighbour_offset_convention() -> None:
    # voxel p=(1,1,1) with one neighbour at p + (1, 0, -1): only slot (a,b,c) = (2,1,0) contributes
    grid = torch.tensor([[1, 1, 1], [2, 1, 0]])
    feat = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    weight = torch.zeros(1, 3, 3, 3, 1, dtype=torch.float64)
    weight[0, 2, 1, 0, 0] = 7.0
    out = submanifold_conv(feat, weight, None, build_neighbour_map(grid, torch.zeros(2, dtype=torch.long)))
    assert out[:, 0].tolist() == [7.0, 0.0]


def test_clouds_do_not_mix_and_module_layout() -> None:
    grid = _random_grid(7)
    torch.manual_seed(0)
    conv = SubMConv3d(3, 4, 3, backend="torch").double()
    assert conv.weight.shape == (4, 3, 3, 3, 3) and conv.bias.shape == (4,)
    assert set(conv.state_dict()) == {"weight", "bias"}
    feat = torch.randn(len(grid), 3, dtype=torch.float64)
    single = conv(feat, grid, torch.zeros(len(grid), dtype=torch.long))
    both_grid = torch.cat([grid, grid])
    both_batch = torch.cat([torch.zeros(len(grid)), torch.ones(len(grid))]).long()
    cache: dict = {}
    both = conv(torch.cat([feat, 2 * feat]), both_grid, both_batch, cache, "s0")
    assert len(cache) == 1
    torch.testing.assert_close(both[: len(grid)], single)
    torch.testing.assert_close(both[len(grid):] - conv.bias, 2 * (single - conv.bias))
    again = conv(torch.cat([feat, 2 * feat]), both_grid, both_batch, cache, "s0")  # cached map
    torch.testing.assert_close(again, both)
