"""Grid pooling and segment reduces against brute-force Python reduces."""

import torch
import torch.nn.functional as F

from pipeline.models.ptv3.point import PointBatch
from pipeline.models.ptv3.pooling import GridPooling, cluster_voxels, segment_reduce


def _cloud(seed: int):
    g = torch.Generator().manual_seed(seed)
    grids, batches = [], []
    for b in range(2):
        grid = torch.unique(torch.randint(0, 9, (80, 3), generator=g), dim=0)
        grids.append(grid)
        batches.append(torch.full((len(grid),), b))
    return torch.cat(grids), torch.cat(batches), g


def _brute_groups(grid, batch, stride):
    groups: dict[tuple, list[int]] = {}
    for row, (b, (x, y, z)) in enumerate(zip(batch.tolist(), grid.tolist())):
        groups.setdefault((b, x // stride, y // stride, z // stride), []).append(row)
    return dict(sorted(groups.items()))


def test_cluster_and_segment_reduce() -> None:
    grid, batch, g = _cloud(0)
    src = torch.randn(len(grid), 4, generator=g, dtype=torch.float64)
    cluster, counts, coarse, coarse_batch = cluster_voxels(grid, batch, 2)
    groups = _brute_groups(grid, batch, 2)
    assert [tuple([b] + c) for b, c in zip(coarse_batch.tolist(), coarse.tolist())] == list(groups)
    for reduce, fn in (("max", lambda r: src[r].max(0).values), ("mean", lambda r: src[r].sum(0) / len(r)), ("min", lambda r: src[r].min(0).values)):
        got = segment_reduce(src, cluster, counts, reduce)
        for i, rows in enumerate(groups.values()):
            assert counts[i] == len(rows)
            assert all(cluster[r] == i for r in rows)
            torch.testing.assert_close(got[i], fn(rows))


def test_grid_pooling_module() -> None:
    grid, batch, g = _cloud(1)
    m = len(grid)
    feat = torch.randn(m, 6, generator=g)
    coord = torch.randn(m, 3, generator=g)
    offset = torch.cumsum(torch.bincount(batch), 0)
    point = PointBatch(coord=coord, grid_coord=grid, feat=feat, offset=offset, batch=batch)
    torch.manual_seed(0)
    pool = GridPooling(6, 8, stride=2)
    out = pool(point, ("z", "hilbert"), torch.Generator().manual_seed(0))
    groups = _brute_groups(grid, batch, 2)
    proj = pool.proj(feat)
    ref = torch.stack([proj[rows].max(0).values for rows in groups.values()])
    ref = F.gelu(F.layer_norm(ref, (8,), pool.norm[0].weight, pool.norm[0].bias))
    torch.testing.assert_close(out.feat, ref)
    torch.testing.assert_close(out.coord, torch.stack([coord[rows].mean(0) for rows in groups.values()]))
    assert out.parent is point and out.pooling_inverse.shape == (m,)
    assert out.offset.tolist() == torch.cumsum(torch.bincount(out.batch), 0).tolist()
    assert out.serialized_order.shape == (2, len(groups))
