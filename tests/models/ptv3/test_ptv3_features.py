"""Input transform, grid sampling, up-casting, spatial tokens and end-to-end determinism."""

import numpy as np
import pytest
import torch

from pipeline.models.ptv3.features import extract_features, spatial_tokens, upcast, upcast_width
from pipeline.models.ptv3.grid_sample import grid_sample
from pipeline.models.ptv3.loader import build_random
from pipeline.models.ptv3.point import PointBatch
from pipeline.models.ptv3.transform import concerto_transform


def _cloud(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-1.0, 2.0, 0.5], [1.0, 3.5, 1.7], (n, 3))
    xyz[: n // 4] = xyz[n // 4: n // 2] + rng.normal(scale=0.003, size=(n // 4, 3))  # shared voxels
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    nrm = rng.normal(size=(n, 3))
    return xyz, rgb, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)


def test_grid_sample_brute_force() -> None:
    xyz, _, _ = _cloud(600)
    gs = 0.1
    res = grid_sample(xyz, gs, seed=1)
    vox = np.floor(xyz / gs).astype(int)
    vox -= vox.min(0)
    groups: dict[tuple, list[int]] = {}
    for i, v in enumerate(map(tuple, vox)):
        groups.setdefault(v, []).append(i)
    assert len(res.index) == len(groups)
    for row, idx in enumerate(res.index):
        assert tuple(res.grid_coord[row]) == tuple(vox[idx])
        assert idx in groups[tuple(vox[idx])]
    assert all(res.inverse[i] == row for row, idx in enumerate(res.index) for i in groups[tuple(vox[idx])])
    assert np.array_equal(grid_sample(xyz, gs, seed=1).index, res.index)
    assert not np.array_equal(grid_sample(xyz, gs, seed=2).index, res.index)  # many multi-point voxels


def test_transform() -> None:
    xyz, rgb, nrm = _cloud(500)
    out = concerto_transform(xyz, rgb, nrm, grid_size=0.02, seed=0)
    lo, hi = xyz.min(0), xyz.max(0)
    assert np.allclose(out.shift, [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    idx = grid_sample(xyz - out.shift, 0.02, seed=0).index
    assert np.allclose(out.feat[:, :3], xyz[idx] - out.shift, atol=1e-6)
    assert np.allclose(out.feat[:, 3:6], rgb[idx] / 255.0)
    assert np.allclose(out.feat[:, 6:], nrm[idx], atol=1e-6)
    bare = concerto_transform(xyz, None, None)
    assert bare.feat.shape[1] == 9 and not bare.feat[:, 3:].any()
    with pytest.raises(ValueError, match="uint8"):
        concerto_transform(xyz, rgb.astype(np.float32), nrm)
    with pytest.raises(ValueError, match="normals"):
        concerto_transform(xyz, rgb, nrm[:10])


def test_upcast_rule() -> None:
    def pb(feat, parent=None, inverse=None):
        m = feat.shape[0]
        return PointBatch(coord=torch.zeros(m, 3), grid_coord=torch.zeros(m, 3, dtype=torch.long), feat=feat,
                          offset=torch.tensor([m]), parent=parent, pooling_inverse=inverse)

    s0 = pb(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    s1 = pb(torch.tensor([[10.0], [20.0], [30.0]]), s0, torch.tensor([0, 0, 1, 2]))
    s2 = pb(torch.tensor([[100.0], [200.0]]), s1, torch.tensor([1, 0, 1]))
    s3 = pb(torch.tensor([[1000.0]]), s2, torch.tensor([0, 0]))
    got = upcast(s3)  # concat at s2 and s1, copy to s0
    assert got.tolist() == [[10, 200, 1000], [10, 200, 1000], [20, 100, 1000], [30, 200, 1000]]
    assert upcast_width((32, 64, 128, 256, 512)) == 896
    assert upcast_width((48, 96, 192, 384, 512)) == 1088
    assert upcast_width((64, 128, 256, 512, 768)) == 1536


def test_spatial_tokens_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(40, 3, generator=g, dtype=torch.float64)
    feat = torch.randn(40, 5, generator=g, dtype=torch.float64)
    tokens, centre, valid, counts = spatial_tokens(xyz, feat, 6)
    # FPS reference
    chosen = [int(torch.argmin(((xyz - xyz.mean(0)) ** 2).sum(1)))]
    while len(chosen) < 6:
        d = torch.stack([((xyz - xyz[c]) ** 2).sum(1) for c in chosen]).min(0).values
        chosen.append(int(torch.argmax(d)))
    assert centre.tolist() == chosen and bool(valid.all())
    for t, c in enumerate(chosen):
        members = [i for i in range(40) if int(torch.argmin(torch.stack([(xyz[i] - xyz[cc]).norm() for cc in chosen]))) == t]
        assert counts[t] == len(members)
        torch.testing.assert_close(tokens[t], feat[members].mean(0))
    few_tokens, few_centre, few_valid, _ = spatial_tokens(xyz[:3], feat[:3], 7)
    assert few_tokens.shape == (7, 5) and few_valid.tolist() == [True] * 3 + [False] * 4
    assert torch.equal(few_tokens[3:6], few_tokens[:3]) and len(set(few_centre[:3].tolist())) == 3


def test_extract_features_end_to_end() -> None:
    xyz, rgb, nrm = _cloud()
    model = build_random("tiny", seed=0)
    a = extract_features(model, xyz, rgb, nrm, grid_size=0.02, seed=7, n_spatial_tokens=16)
    b = extract_features(build_random("tiny", seed=0), xyz, rgb, nrm, grid_size=0.02, seed=7, n_spatial_tokens=16)
    for key in ("point_features", "global_mean", "global_max", "spatial_tokens", "spatial_token_xyz"):
        assert np.array_equal(a[key], b[key]), key
    c = extract_features(model, xyz, rgb, nrm, grid_size=0.02, seed=8, n_spatial_tokens=16)
    assert not np.array_equal(a["point_features"], c["point_features"])
    n, d = len(xyz), 128
    assert a["point_features"].shape == (n, d) and a["meta"]["feature_dim"] == d
    assert a["spatial_tokens"].shape == (16, d) and a["spatial_token_xyz"].shape == (16, 3)
    assert a["meta"]["weights_source"] == "random-init (no checkpoint)"
    inv = concerto_transform(xyz, rgb, nrm, seed=7).inverse
    voxel = np.zeros((a["num_voxels"], d), dtype=np.float32)
    voxel[inv] = a["point_features"]
    assert np.array_equal(voxel[inv], a["point_features"])  # points of a voxel share its feature
    np.testing.assert_allclose(a["global_mean"], voxel.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a["global_max"], voxel.max(0))
    # token centres are input points (voxel representatives), in the input frame
    dist = np.linalg.norm(xyz[None] - a["spatial_token_xyz"][:, None].astype(np.float64), axis=2).min(1)
    assert dist.max() < 1e-5
    assert a["spatial_token_voxels"].sum() == a["num_voxels"]


def test_batch_equals_single_and_row_order_invariance() -> None:
    model = build_random("tiny", seed=1, enable_flash=True)
    samples = [concerto_transform(*_cloud(n, seed=s)[:1], seed=0) for n, s in ((1500, 1), (400, 2))]

    def run(point):
        return upcast(model(point, generator=torch.Generator().manual_seed(4)))

    with torch.inference_mode():
        singles = [run(s.to_point_batch()) for s in samples]
        cat = lambda name: torch.cat([torch.from_numpy(getattr(s, name)) for s in samples])  # noqa: E731
        sizes = [len(s.coord) for s in samples]
        both = PointBatch(coord=cat("coord"), grid_coord=cat("grid_coord"), feat=cat("feat"), offset=torch.cumsum(torch.tensor(sizes), 0))
        batched = run(both)
        torch.testing.assert_close(batched[: sizes[0]], singles[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(batched[sizes[0]:], singles[1], rtol=1e-4, atol=1e-4)
        perm = torch.randperm(sizes[0], generator=torch.Generator().manual_seed(0))
        p = samples[0].to_point_batch()
        shuffled = PointBatch(coord=p.coord[perm], grid_coord=p.grid_coord[perm], feat=p.feat[perm], offset=p.offset)
        torch.testing.assert_close(run(shuffled), singles[0][perm], rtol=1e-4, atol=1e-4)
