"""Optional: the pure-PyTorch conv equals spconv's SubMConv3d (CPU build, train mode, 1 thread).

Skipped unless spconv is importable; spconv is not a project dependency.
"""

import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

from pipeline.models.ptv3.sparse_conv import SubMConv3d  # noqa: E402


def test_matches_spconv_cpu() -> None:
    torch.set_num_threads(1)  # spconv's CPU kernels are not thread-safe (spec §4)
    g = torch.Generator().manual_seed(0)
    grids = [torch.unique(torch.randint(0, 10, (300, 3), generator=g), dim=0) for _ in range(2)]
    grid = torch.cat(grids)
    batch = torch.cat([torch.full((len(x),), i) for i, x in enumerate(grids)])
    feat = torch.randn(len(grid), 8, generator=g)
    ref_mod = spconv.SubMConv3d(8, 16, 3, bias=True)  # train mode: CPU spconv refuses eval-mode bias
    torch.nn.init.normal_(ref_mod.weight, std=0.2)
    torch.nn.init.normal_(ref_mod.bias, std=0.2)
    ours = SubMConv3d(8, 16, 3, backend="torch")
    ours.load_state_dict(ref_mod.state_dict(), strict=True)  # same names and KRSC shapes
    indices = torch.cat([batch.int().unsqueeze(1), grid.int()], dim=1)
    x = spconv.SparseConvTensor(feat, indices, (grid.max(0).values + 4).tolist(), 2)
    ref = ref_mod(x).features
    torch.testing.assert_close(ours(feat, grid, batch), ref, rtol=1e-5, atol=1e-5)
