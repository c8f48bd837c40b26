"""nearest_sq_dist / knn_indices / one_sided_chamfer against float64 brute force, every backend."""

import logging

import pytest
import torch

from pipeline.geometry import nearest
from pipeline.geometry.nearest import (
    available_backends,
    knn_indices,
    nearest_sq_dist,
    one_sided_chamfer,
    resolve_backend,
)

BACKENDS = available_backends()


def test_expected_backends_installed():
    # faiss, scipy and open3d are project dependencies: their backends must be exercised here.
    assert {"torch", "faiss", "kdtree", "open3d"} <= set(BACKENDS)


def _clouds(seed, B=2, P=96, M=70, dtype=torch.float64, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, P, 3, generator=g, dtype=dtype) + offset
    y = torch.randn(B, M, 3, generator=g, dtype=dtype) * 0.8 + offset
    return x, y


def _reference(x, y):
    """Direct-difference float64 min with autograd (O(B·P·M), small sizes only)."""
    d = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    return d.min(dim=-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_indices_and_gradients_match_brute_force(backend):
    x, y = _clouds(0)
    g = torch.rand(x.shape[:2], dtype=x.dtype, generator=torch.Generator().manual_seed(9))
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ref = _reference(xr, yr)
    (ref.values * g).sum().backward()

    xo, yo = x.clone().requires_grad_(), y.clone().requires_grad_()
    sq, idx = nearest_sq_dist(xo, yo, backend=backend)
    assert sq.shape == x.shape[:2] and idx.shape == x.shape[:2] and idx.dtype == torch.int64
    torch.testing.assert_close(sq, ref.values.detach(), rtol=1e-12, atol=1e-12)
    # Compare the distance of the chosen neighbour, not raw indices (ties are legitimate).
    chosen = ((x - torch.gather(y, 1, idx[..., None].expand(-1, -1, 3))) ** 2).sum(-1)
    torch.testing.assert_close(chosen, ref.values.detach(), rtol=1e-12, atol=1e-12)
    assert bool((idx == ref.indices).all())  # random data: no near-ties at this size
    (sq * g).sum().backward()
    torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(yo.grad, yr.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_large_offset_picks_a_true_nearest(backend):
    # |y|² cancellation: the clouds sit 500 m from the origin; centring keeps the argmin accurate.
    x, y = _clouds(1, B=2, P=400, M=300, dtype=torch.float32, offset=500.0)
    sq, idx = nearest_sq_dist(x, y, backend=backend)
    ref = _reference(x.double(), y.double()).values
    chosen = ((x.double() - torch.gather(y.double(), 1, idx[..., None].expand(-1, -1, 3))) ** 2).sum(-1)
    torch.testing.assert_close(chosen, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(sq.double(), ref, rtol=1e-3, atol=1e-4)  # float32 of x − y at |x| = 500


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_indices_k_nearest(backend):
    x, y = _clouds(2, B=2, P=50, M=40)
    idx = knn_indices(x, y, k=5, backend=backend)
    assert idx.shape == (2, 50, 5)
    d_all = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    ref = d_all.topk(5, dim=-1, largest=False).values
    got = d_all.gather(2, idx)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-9)  # sorted nearest-first, same set


@pytest.mark.parametrize("queries", [nearest.KDTREE_THREADED_MIN_QUERIES - 1, nearest.KDTREE_THREADED_MIN_QUERIES])
def test_kdtree_one_thread_and_threaded_queries_find_the_k_nearest(queries):
    """Both sides of the kdtree backend's thread switch (one query thread below the threshold, torch's count
    from it on) return the brute-force k nearest, nearest first."""
    x, y = _clouds(4, B=2, P=queries, M=300)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        idx = nearest.knn_kdtree(x, y, 4)
    finally:
        torch.set_num_threads(threads)
    d_all = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    assert bool((idx == d_all.topk(4, dim=-1, largest=False).indices).all())  # random data: no near-ties


def test_gradcheck_custom_function():
    x, y = _clouds(3, B=2, P=12, M=9)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: nearest_sq_dist(a, b, backend="torch")[0], (x, y), eps=1e-6, atol=1e-8)


def test_gradient_accumulates_on_shared_neighbour_and_duplicates_tie():
    y = torch.tensor([[[0.0, 0, 0], [10.0, 0, 0], [10.0, 0, 0]]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[[1.0, 0, 0], [0.0, 2, 0], [9.0, 0, 0]]], dtype=torch.float64)
    for backend in BACKENDS:
        y.grad = None
        sq, idx = nearest_sq_dist(x, y, backend=backend)
        torch.testing.assert_close(sq, torch.tensor([[1.0, 4.0, 1.0]], dtype=torch.float64))
        assert idx[0, 0] == 0 and idx[0, 1] == 0 and idx[0, 2] in (1, 2)
        sq.sum().backward()
        # Both x0 and x1 pull on y0: −2·(x − y0) summed.
        torch.testing.assert_close(y.grad[0, 0], torch.tensor([-2.0, -4.0, 0.0], dtype=torch.float64))
        torch.testing.assert_close(y.grad[0, 1:].sum(0), torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64))


def test_saved_memory_is_linear_not_quadratic():
    x, y = _clouds(4, B=2, P=300, M=400, dtype=torch.float32)
    x.requires_grad_()
    y.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        sq, _ = nearest_sq_dist(x, y)
        loss = sq.mean()
    B, P, M = 2, 300, 400
    assert sum(saved) <= 8 * B * (P + M), sum(saved)  # naive cdist would save ≥ B·P·M = 240,000
    loss.backward()
    assert x.grad.shape == x.shape and y.grad.shape == y.shape


def test_mask_zeroes_padding_and_its_gradient():
    x, y = _clouds(5, B=2, P=30, M=20)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, 20:] = False
    mask[1, :5] = False
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    sq, idx = nearest_sq_dist(xr, yr, mask=mask)
    ref = _reference(x, y).values
    torch.testing.assert_close(sq[mask], ref[mask])
    assert bool((sq[~mask] == 0).all()) and bool((idx[~mask] == -1).all())
    sq.sum().backward()
    assert bool((xr.grad[~mask] == 0).all())
    # y gradient equals the gradient from the valid points only.
    yv = y.clone().requires_grad_()
    (_reference(x, yv).values * mask).sum().backward()
    torch.testing.assert_close(yr.grad, yv.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_y_with_y_mask_matches_the_valid_points(backend):
    # The slot batches pad every frame's target points to the batch's largest count with points 10 km away.
    # With y_mask the nearest valid point is found as in the unpadded cloud (float32, clouds 20 m away);
    # without it the padding drags the search's centre off and the float32 ranking fails by metres².
    x, y = _clouds(11, B=2, P=500, M=200, dtype=torch.float32, offset=20.0)
    x, y = x * 5.0, y * 5.0
    valid = torch.ones(2, 200, dtype=torch.bool)
    valid[0, 60:] = False
    padded = torch.where(valid[..., None], y, torch.full_like(y, 1.0e4))
    sq, idx = nearest_sq_dist(x, padded, backend=backend, y_mask=valid)
    assert bool(valid.gather(1, idx).all())
    for b in range(2):
        ref = _reference(x[b : b + 1].double(), y[b : b + 1, valid[b]].double()).values[0]
        torch.testing.assert_close(sq[b].double(), ref, rtol=1e-4, atol=1e-4)
    if backend in ("faiss", "torch"):  # the expanded-form backends: the trap the mask avoids
        unmasked, _ = nearest_sq_dist(x, padded, backend=backend)
        ref0 = _reference(x[:1].double(), y[:1, valid[0]].double()).values[0]
        assert (unmasked[0].double() - ref0).abs().max() > 1.0


def test_one_sided_chamfer_weights_sqrt_and_reduction():
    x, y = _clouds(6, B=3, P=40, M=25)
    ref = _reference(x, y).values
    torch.testing.assert_close(one_sided_chamfer(x, y), ref.mean(1).mean())
    torch.testing.assert_close(one_sided_chamfer(x, y, reduction="none"), ref.mean(1))
    w = torch.rand(3, 40, dtype=x.dtype)
    torch.testing.assert_close(one_sided_chamfer(x, y, x_weights=w, reduction="none"), (w * ref).sum(1) / w.sum(1))
    torch.testing.assert_close(one_sided_chamfer(x, y, squared=False), ref.sqrt().mean(1).mean())
    mask = torch.rand(3, 40) > 0.3
    torch.testing.assert_close(
        one_sided_chamfer(x, y, mask=mask, reduction="none"), (ref * mask).sum(1) / mask.sum(1)
    )
    # Unsquared variant: gradient finite when a point sits exactly on its neighbour.
    x0 = y[:, :5].clone().requires_grad_()
    one_sided_chamfer(x0, y, squared=False).backward()
    assert torch.isfinite(x0.grad).all()


def test_auto_backend_and_faiss_threshold_restored(monkeypatch, caplog):
    import faiss

    assert resolve_backend("auto", torch.device("cpu")) is nearest.knn_faiss
    assert resolve_backend("auto", torch.device("cpu"), k=8) is nearest.knn_kdtree
    before = faiss.cvar.distance_compute_blas_threshold
    seen = []
    real_search = faiss.IndexFlatL2.search

    def spy(self, *a, **k):
        seen.append(faiss.cvar.distance_compute_blas_threshold)
        return real_search(self, *a, **k)

    monkeypatch.setattr(faiss.IndexFlatL2, "search", spy)
    x, y = _clouds(7, dtype=torch.float32)
    nearest_sq_dist(x, y, backend="faiss")
    assert seen and all(s == nearest.FAISS_BLAS_THRESHOLD for s in seen)
    assert faiss.cvar.distance_compute_blas_threshold == before
    # Without faiss, "auto" on CPU falls back to torch and says so.
    monkeypatch.setattr(nearest, "_has_module", lambda name: name not in ("faiss", "scipy.spatial"))
    monkeypatch.setattr(nearest, "_warned_no_faiss", False)
    with caplog.at_level(logging.WARNING, logger=nearest.__name__):
        assert resolve_backend("auto", torch.device("cpu")) is nearest.knn_torch
    assert "faiss is not importable" in caplog.text


def test_torch_backend_chunking_matches(monkeypatch):
    monkeypatch.setattr(nearest, "_CHUNK_BYTES", 4 * 2 * 40 * 8)  # 4 rows per chunk
    x, y = _clouds(8, B=2, P=37, M=40)
    sq, _ = nearest_sq_dist(x, y, backend="torch")
    torch.testing.assert_close(sq, _reference(x, y).values)


def test_bad_input_raises():
    x, y = _clouds(9)
    with pytest.raises(ValueError):
        nearest_sq_dist(x[..., :2], y)
    with pytest.raises(ValueError):
        nearest_sq_dist(x, y[:1])
    with pytest.raises(ValueError):
        nearest_sq_dist(x, y[:, :0])
    with pytest.raises(ValueError):
        nearest_sq_dist(x, y, backend="nope")
    with pytest.raises(ValueError):
        nearest_sq_dist(x, y.float())
    with pytest.raises(ValueError):
        nearest_sq_dist(x, y, y_mask=torch.ones(2, 3, dtype=torch.bool))
