"""Nearest-neighbour squared distances with O(B·(P+M)) memory — the hot loop of the Chamfer loss.

``nearest_sq_dist(x, y)`` returns, for every query point x[b, i], the squared Euclidean distance to
its nearest neighbour among y[b, :] and that neighbour's index. It is one ``autograd.Function``:

* forward: the argmin is found **without autograd** by a backend (faiss, chunked torch, scipy
  cKDTree, open3d, pytorch3d), then the distance is recomputed exactly (direct difference) on the
  matched pairs only, so no (B, P, M) tensor is ever kept;
* backward: grad_x = 2·(x − y[idx])·g and grad_y = scatter_add over idx of −2·(x − y[idx])·g.
  This is the exact gradient of min_j |x − y_j|² wherever the minimiser is unique (the argmin's own
  derivative is zero almost everywhere), so it equals the gradient of a dense ``cdist(...).min``.

Backends (all return the same distances; indices may differ only on float near-ties, because the
expanded form |x|² − 2x·y + |y|² used by faiss/torch rounds differently from direct differences):

=========  ======================================================================================
"faiss"     CPU, ``IndexFlatL2`` k-NN. faiss switches from a scalar per-query loop to its fast
            BLAS path only when nq·d ≥ ``faiss.cvar.distance_compute_blas_threshold`` (default
            128000, i.e. ≥ 42,667 queries in 3-D); below that it is ~75× slower (perf.md). We set
            the threshold to ``FAISS_BLAS_THRESHOLD`` for the duration of each call and restore the
            previous value afterwards, so other faiss users in the process see unchanged global
            state (the variable is process-global: do not run faiss searches concurrently from
            several Python threads with different expectations).
"torch"     Chunked augmented matmul [x, 1]·[−2y, |y|²]ᵀ + argmin; any device (used on CUDA and as
            the portable fallback). Chunk rows are chosen so one chunk buffer is ≈ 64 MB.
"kdtree"    scipy ``cKDTree`` build + query per batch element (CPU, exact direct arithmetic).
"open3d"    open3d.core ``NearestNeighborSearch.knn_search`` (CPU), if importable.
"pytorch3d" ``pytorch3d.ops.knn_points``, if importable (optional; a GPU method — its CPU kernel is
            single-threaded scalar code).
"auto"      CUDA: pytorch3d if importable else torch. CPU, k = 1: faiss if importable, else torch
            (with a logged warning). CPU, k > 1 (candidate search of mesh.py): kdtree, because
            faiss's k > 1 result heaps were ~3× slower than cKDTree on mesh-centroid data (measured:
            B=4, P=8192, 10,240 faces, k=8: 950 vs 330 ms per point_mesh_sq_dist call under load).
=========  ======================================================================================

A backend may also be any callable ``f(x (B,P,3), y (B,M,3), k) -> idx (B,P,k) int64`` (used by the
benchmark). Coordinates are centred on the mean of y before the argmin, which reduces the
cancellation error of the expanded form (it scales with |y|²). **Padded clouds must pass ``y_mask``**:
the centre is then the mean of the valid y only and padding never wins. Without it, padding far away
(the slot batches put it at 10 km) drags the centre thousands of metres off, and the float32 expanded form
of faiss and torch then ranks the real points with errors of metres² (measured: up to 18 m² on 10 m clouds).

Threads (measured, reports/bench/nearest.md): torch and faiss each ship their own OpenMP runtime.
With the default OMP_WAIT_POLICY, torch's idle pool threads spin after every torch op and steal the
cores from faiss's threads; on a loaded 2-core machine a faiss-backed fwd+bwd went from ~2 ms to
~90 ms (P=1024) and ~60 → ~170 ms (P=8192, M=20544). Start training processes with
``OMP_WAIT_POLICY=PASSIVE`` (it must be set before torch/faiss are imported, i.e. in the environment).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

FAISS_BLAS_THRESHOLD = 20
"""Value of ``faiss.cvar.distance_compute_blas_threshold`` used during our searches (perf.md)."""

PADDING_OFFSET = 1.0e6
"""Where masked-out y are put for the search (metres from the valid points' centre; float32-safe squared)."""

_CHUNK_BYTES = 64 * 2**20  # target size of one (B, chunk, M) score buffer in the torch backend

Backend = str | Callable[[Tensor, Tensor, int], Tensor]
BACKENDS = ("auto", "faiss", "torch", "kdtree", "open3d", "pytorch3d")

_warned_no_faiss = False

# faiss's loader tries its AVX512/AVX2 builds first and logs at INFO, with a ModuleNotFoundError, when the
# wheel lacks them; it then loads the generic build, which is what we use. Harmless, so only its
# warnings and errors are shown.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------- backends


def _import_faiss():
    import faiss  # noqa: PLC0415 - optional heavy import

    return faiss


@functools.lru_cache(maxsize=None)
def _has_module(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # ImportError, or a broken binary wheel (e.g. open3d without libusb)
        return False
    return True


def available_backends() -> list[str]:
    """Backends that can run in this process (excluding "auto")."""
    out = ["torch"]
    for name, module in (("faiss", "faiss"), ("kdtree", "scipy.spatial"), ("open3d", "open3d.core")):
        if _has_module(module):
            out.append(name)
    if _has_module("pytorch3d.ops"):
        out.append("pytorch3d")
    return out


@contextlib.contextmanager
def faiss_blas_threshold(value: int | None) -> Iterator[None]:
    """Temporarily set ``faiss.cvar.distance_compute_blas_threshold`` (None = leave unchanged)."""
    if value is None:
        yield
        return
    faiss = _import_faiss()
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = int(value)
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


def _np32(t: Tensor):
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def knn_faiss(x: Tensor, y: Tensor, k: int, blas_threshold: int | None = FAISS_BLAS_THRESHOLD) -> Tensor:
    """k-NN indices with faiss ``IndexFlatL2`` (float32, CPU). x (B,P,D), y (B,M,D) → (B,P,k) int64."""
    faiss = _import_faiss()
    out = torch.empty(x.shape[0], x.shape[1], k, dtype=torch.int64)
    with faiss_blas_threshold(blas_threshold):
        for b in range(x.shape[0]):
            index = faiss.IndexFlatL2(x.shape[-1])
            index.add(_np32(y[b]))
            _, idx = index.search(_np32(x[b]), k)
            out[b] = torch.from_numpy(idx)
    return out.to(x.device)


def knn_torch(x: Tensor, y: Tensor, k: int) -> Tensor:
    """k-NN indices by chunked augmented matmul on x's device. x (B,P,3), y (B,M,3) → (B,P,k) int64.

    score(i, j) = |y_j|² − 2 x_i·y_j (= |x_i − y_j|² − |x_i|², same argmin) as one bmm of
    [x, 1] (B,c,4) with [−2y, |y|²]ᵀ (B,4,M); memory per chunk B·c·M.
    """
    B, P, _ = x.shape
    M = y.shape[1]
    xa = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
    ya = torch.cat([-2.0 * y, (y * y).sum(-1, keepdim=True)], dim=-1).transpose(1, 2)
    rows = max(1, _CHUNK_BYTES // max(1, B * M * x.element_size()))
    out = torch.empty(B, P, k, dtype=torch.int64, device=x.device)
    for s in range(0, P, rows):
        score = torch.bmm(xa[:, s : s + rows], ya)
        if k == 1:
            out[:, s : s + rows, 0] = score.argmin(dim=-1)
        else:
            out[:, s : s + rows] = score.topk(k, dim=-1, largest=False, sorted=True).indices
    return out


# Below this many queries per batch element cKDTree.query runs on one thread: its worker threads are started per
# call, which cost more than they save on the few hundred queries of a slot's candidate search (measured, 2 cores,
# 2560 4-D points, k = 8: 250 queries 1.45 ms on one thread vs 2.14 on two; 1000 queries 5.0 vs 4.1). The result
# does not depend on the thread count (each query is answered on its own).
KDTREE_THREADED_MIN_QUERIES = 1000


def knn_kdtree(x: Tensor, y: Tensor, k: int) -> Tensor:
    """k-NN indices with scipy ``cKDTree`` (build + query per batch element; CPU threads = torch's from
    ``KDTREE_THREADED_MIN_QUERIES`` queries on, one below)."""
    from scipy.spatial import cKDTree  # noqa: PLC0415

    workers = max(1, torch.get_num_threads()) if x.shape[1] >= KDTREE_THREADED_MIN_QUERIES else 1
    xs, ys = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    out = torch.empty(x.shape[0], x.shape[1], k, dtype=torch.int64)
    for b in range(x.shape[0]):
        _, idx = cKDTree(ys[b]).query(xs[b], k=k, workers=workers)
        out[b] = torch.from_numpy(idx.reshape(x.shape[1], k).astype("int64"))
    return out.to(x.device)


def knn_open3d(x: Tensor, y: Tensor, k: int) -> Tensor:
    """k-NN indices with open3d.core ``NearestNeighborSearch.knn_search`` (CPU, float32)."""
    import open3d.core as o3c  # noqa: PLC0415

    out = torch.empty(x.shape[0], x.shape[1], k, dtype=torch.int64)
    for b in range(x.shape[0]):
        nns = o3c.nns.NearestNeighborSearch(o3c.Tensor(_np32(y[b])))
        nns.knn_index()
        idx, _ = nns.knn_search(o3c.Tensor(_np32(x[b])), k)
        out[b] = torch.from_numpy(idx.numpy().astype("int64").reshape(x.shape[1], k))
    return out.to(x.device)


def knn_pytorch3d(x: Tensor, y: Tensor, k: int) -> Tensor:
    """k-NN indices with ``pytorch3d.ops.knn_points`` (optional dependency)."""
    from pytorch3d.ops import knn_points  # noqa: PLC0415

    return knn_points(x, y, K=k, return_nn=False, return_sorted=True).idx


_KNN: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "faiss": knn_faiss,
    "torch": knn_torch,
    "kdtree": knn_kdtree,
    "open3d": knn_open3d,
    "pytorch3d": knn_pytorch3d,
}


def resolve_backend(backend: Backend, device: torch.device, k: int = 1) -> Callable[[Tensor, Tensor, int], Tensor]:
    """Map a backend name (or callable) to a k-NN function; see the module docstring for "auto"."""
    global _warned_no_faiss
    if callable(backend):
        return backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or a callable, got {backend!r}")
    if backend != "auto":
        return _KNN[backend]
    if device.type == "cuda":
        return knn_pytorch3d if _has_module("pytorch3d.ops") else knn_torch
    if k > 1 and _has_module("scipy.spatial"):
        return knn_kdtree
    if _has_module("faiss"):
        return knn_faiss
    if not _warned_no_faiss:
        log.warning("faiss is not importable: nearest-neighbour search falls back to chunked torch (slower on CPU)")
        _warned_no_faiss = True
    return knn_torch


def _check_y_mask(y: Tensor, y_mask: Tensor | None) -> None:
    if y_mask is not None and (y_mask.shape != y.shape[:2] or y_mask.dtype != torch.bool):
        raise ValueError(f"y_mask must be a bool tensor of shape {tuple(y.shape[:2])}, got {y_mask.dtype} {tuple(y_mask.shape)}")


def _check_clouds(x: Tensor, y: Tensor, mask: Tensor | None, dims: int | None = 3) -> None:
    d = x.shape[-1] if dims is None else dims
    if x.dim() != 3 or x.shape[-1] != d or y.dim() != 3 or y.shape[-1] != d:
        raise ValueError(f"x and y must be (B,P,{d}) and (B,M,{d}), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"batch sizes differ: x has {x.shape[0]}, y has {y.shape[0]}")
    if y.shape[1] == 0:
        raise ValueError("y has no points (M = 0): nearest neighbours are undefined")
    if x.device != y.device or x.dtype != y.dtype:
        raise ValueError(f"x and y must share device and dtype, got {x.device}/{x.dtype} and {y.device}/{y.dtype}")
    if mask is not None and (mask.shape != x.shape[:2] or mask.dtype != torch.bool):
        raise ValueError(f"mask must be a bool tensor of shape {tuple(x.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")


def knn_indices(x: Tensor, y: Tensor, k: int = 1, backend: Backend = "auto", y_mask: Tensor | None = None) -> Tensor:
    """Indices of the k nearest y for every x, without autograd.

    Args:
        x: (B, P, D) queries; y: (B, M, D) points (same device and dtype); k ≤ M. D is 3 for
            point clouds; any D works with every backend (mesh.py searches lifted 4-D centroids).
        y_mask: optional (B, M) bool, True for valid y (padding = False): the search is centred on the
            valid points and padding is moved ``PADDING_OFFSET`` away from them, so it is chosen only
            where fewer than k valid points exist.
    Returns:
        (B, P, k) int64 on x's device, nearest first.
    """
    _check_clouds(x, y, None, dims=None)
    _check_y_mask(y, y_mask)
    if not 1 <= k <= y.shape[1]:
        raise ValueError(f"k must be in [1, M={y.shape[1]}], got {k}")
    with torch.no_grad():
        y = y.detach()
        if y_mask is None:
            centre = y.mean(dim=1, keepdim=True)
            y_search = y - centre
        else:
            valid = y_mask.unsqueeze(-1).to(y.dtype)
            centre = (y * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1)
            y_search = torch.where(y_mask.unsqueeze(-1), y - centre, torch.full_like(y, PADDING_OFFSET))
        return resolve_backend(backend, x.device, k)(x.detach() - centre, y_search, k)


# ---------------------------------------------------------------------------------- autograd core


def gather_points(y: Tensor, idx: Tensor) -> Tensor:
    """y (B,M,C) gathered at idx (B,P) → (B,P,C)."""
    return torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))


class NearestSqDist(torch.autograd.Function):
    """Squared distance to the nearest neighbour; see the module docstring. Not twice differentiable."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, backend: Backend, mask: Tensor | None,  # type: ignore[override]
                y_mask: Tensor | None):
        idx = knn_indices(x, y, 1, backend, y_mask)[..., 0]
        diff = x - gather_points(y, idx)
        sq = (diff * diff).sum(-1)
        if mask is not None:
            diff = diff * mask.unsqueeze(-1)
            sq = sq * mask
            idx = torch.where(mask, idx, torch.full_like(idx, -1))
        ctx.save_for_backward(diff, idx)
        ctx.m = y.shape[1]
        ctx.mark_non_differentiable(idx)
        return sq, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sq: Tensor, _grad_idx: Tensor | None):  # type: ignore[override]
        diff, idx = ctx.saved_tensors
        g = 2.0 * diff * grad_sq.unsqueeze(-1)  # masked rows have diff = 0
        grad_x = g if ctx.needs_input_grad[0] else None
        grad_y = None
        if ctx.needs_input_grad[1]:
            grad_y = torch.zeros(diff.shape[0], ctx.m, 3, dtype=diff.dtype, device=diff.device)
            grad_y.scatter_add_(1, idx.clamp_min(0).unsqueeze(-1).expand(-1, -1, 3), -g)
        return grad_x, grad_y, None, None, None


def nearest_sq_dist(
    x: Tensor, y: Tensor, backend: Backend = "auto", mask: Tensor | None = None, y_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Squared distance from each x to its nearest y, differentiable in x and y.

    Args:
        x: (B, P, 3) query points (e.g. the depth-map point cloud), metres.
        y: (B, M, 3) reference points (e.g. mesh vertices or surface samples), same device/dtype.
        backend: see the module docstring ("auto" picks the fastest available for the device).
        mask: optional (B, P) bool, True for valid x points (padding = False; padding must be
            finite). Masked points get sq_dist 0, idx −1 and no gradient.
        y_mask: optional (B, M) bool, True for valid y: padding in y is never the nearest (unless a cloud
            has no valid y) and does not move the search's centre (see the module docstring). Required
            for padded y.
    Returns:
        sq_dist: (B, P) squared distances in metres², computed as |x − y[idx]|² in x's dtype.
        idx: (B, P) int64 index into y's second dimension (−1 where masked).
    Memory is O(B·(P+M)) for autograd; the backend's transient buffers are bounded separately.
    """
    _check_clouds(x, y, mask)
    _check_y_mask(y, y_mask)
    return NearestSqDist.apply(x, y, backend, mask, y_mask)


def one_sided_chamfer(
    x: Tensor,
    y: Tensor,
    x_weights: Tensor | None = None,
    mask: Tensor | None = None,
    squared: bool = True,
    reduction: str = "mean",
    backend: Backend = "auto",
) -> Tensor:
    """One-directional Chamfer x → y: per-cloud (weighted) mean over x of the nearest distance to y.

    Args:
        x: (B, P, 3), y: (B, M, 3) as in ``nearest_sq_dist``.
        x_weights: optional (B, P) non-negative weights (per-cloud weighted mean Σ w·d / Σ w).
        mask: optional (B, P) bool of valid x points (combined with the weights).
        squared: True → squared distances (metres², as pytorch3d's ``chamfer_distance``);
            False → Euclidean distances (metres; gradient taken as 0 at distance exactly 0).
        reduction: "mean" → scalar mean over the batch; "none" → (B,) per cloud.
    Returns:
        scalar or (B,) tensor. A cloud with zero total weight contributes 0.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    sq, _ = nearest_sq_dist(x, y, backend=backend, mask=mask)
    d = sq if squared else sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() * (sq > 0)
    w = torch.ones_like(d) if x_weights is None else x_weights.to(d.dtype)
    if w.shape != d.shape:
        raise ValueError(f"x_weights must have shape {tuple(d.shape)}, got {tuple(w.shape)}")
    if mask is not None:
        w = w * mask
    per_cloud = (w * d).sum(1) / w.sum(1).clamp_min(torch.finfo(d.dtype).tiny)
    return per_cloud.mean() if reduction == "mean" else per_cloud
