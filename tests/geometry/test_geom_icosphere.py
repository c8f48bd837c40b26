"""ico_sphere: counts, unit norm, closed consistently-wound surface with outward normals."""

import pytest
import torch

from pipeline.geometry.icosphere import ico_sphere


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_counts_and_unit_norm(level):
    v, f = ico_sphere(level)
    assert v.dtype == torch.float32 and f.dtype == torch.int64
    assert v.shape == (10 * 4**level + 2, 3)
    assert f.shape == (20 * 4**level, 3)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(v.shape[0]), atol=1e-6, rtol=0)
    assert int(f.min()) == 0 and int(f.max()) == v.shape[0] - 1
    assert torch.unique(f).numel() == v.shape[0]  # every vertex used


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_closed_manifold_consistent_outward_winding(level):
    v, f = ico_sphere(level)
    v = v.double()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = torch.linalg.cross(b - a, c - a)
    assert bool(((n * (a + b + c)).sum(1) > 0).all()), "a face normal points inwards"
    # Each directed edge appears exactly once and its reverse exactly once (closed, oriented).
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = directed[:, 0] * v.shape[0] + directed[:, 1]
    rev = directed[:, 1] * v.shape[0] + directed[:, 0]
    assert torch.unique(keys).numel() == keys.numel()
    assert set(keys.tolist()) == set(rev.tolist())
    n_edges = keys.numel() // 2
    assert v.shape[0] - n_edges + f.shape[0] == 2  # Euler characteristic of a sphere
    # Divergence theorem: enclosed volume approaches 4/3·π from below as the level grows.
    vol = (a * torch.linalg.cross(b, c)).sum() / 6.0
    assert 0 < vol < 4.0 / 3.0 * torch.pi
    if level == 3:
        assert vol > 0.99 * 4.0 / 3.0 * torch.pi


def test_icosahedron_is_regular_and_subdivision_edges_shrink():
    v, f = ico_sphere(0)
    e = torch.cat([(v[f[:, i]] - v[f[:, (i + 1) % 3]]).norm(dim=1) for i in range(3)])
    torch.testing.assert_close(e, torch.full_like(e, e[0].item()), atol=1e-6, rtol=0)
    # circumradius 1 ⇒ edge = 1 / sin(2π/5)
    torch.testing.assert_close(e[0], torch.tensor(1.0 / float(torch.sin(torch.tensor(2 * torch.pi / 5)))), atol=1e-5, rtol=0)
    v1, f1 = ico_sphere(1)
    e1 = (v1[f1[:, 0]] - v1[f1[:, 1]]).norm(dim=1)
    assert e1.max() < e.min()


def test_returns_fresh_tensors_and_rejects_bad_level():
    v, _ = ico_sphere(1)
    v.mul_(0)
    assert ico_sphere(1)[0].norm(dim=1).min() > 0.99
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ValueError):
            ico_sphere(bad)
