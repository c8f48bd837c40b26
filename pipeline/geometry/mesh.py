"""Triangle-mesh operations in pure torch: areas, area-uniform surface sampling, exact closest point
on triangles, and the point → nearest-surface squared distance for a batch of K meshes per scene.

Conventions: ``verts`` are (..., V, 3) in metres; ``faces`` is one (F, 3) int64 topology shared by
all meshes (e.g. a deformed ico-sphere); barycentric weights (w0, w1, w2) refer to the face's
vertices (v0, v1, v2), so a point is w0·v0 + w1·v1 + w2·v2 with w ≥ 0 and Σw = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.geometry.nearest import Backend, gather_points, knn_indices

_PAIR_CHUNK = 1 << 18  # (point, triangle) pairs evaluated per exact-distance chunk (~40 MB of temporaries)


def face_vertices(verts: Tensor, faces: Tensor) -> Tensor:
    """verts (..., V, 3), faces (F, 3) → (..., F, 3, 3) with [..., f, i, :] = vertex i of face f."""
    return verts[..., faces, :]


def face_areas(verts: Tensor, faces: Tensor) -> Tensor:
    """Triangle areas (metres²): verts (..., V, 3), faces (F, 3) → (..., F)."""
    tri = face_vertices(verts, faces)
    n = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :], dim=-1)
    return 0.5 * n.norm(dim=-1)


def sample_points_on_mesh(
    verts: Tensor, faces: Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Area-uniform random points on each mesh surface (as pytorch3d's ``sample_points_from_meshes``).

    Faces are drawn ~ Multinomial(area) under no_grad (areas get no gradient); barycentrics are
    w0 = 1 − √u, w1 = √u(1 − v), w2 = √u·v with u, v ~ U(0,1), which is uniform on the triangle.

    Args:
        verts: (B, V, 3) vertices; faces: (F, 3) int64; n: samples per mesh.
        generator: optional torch.Generator (random numbers are drawn on its device, then moved).
    Returns:
        points: (B, n, 3), differentiable w.r.t. verts (linear in them, weights fixed);
        face_idx: (B, n) int64; bary: (B, n, 3) barycentric weights.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng_device = generator.device if generator is not None else verts.device
    with torch.no_grad():
        areas = face_areas(verts.detach(), faces)
        if not bool((areas.sum(-1) > 0).all()) or not bool(torch.isfinite(areas).all()):
            raise ValueError("sample_points_on_mesh: a mesh has zero or non-finite total area")
        face_idx = torch.multinomial(areas.to(rng_device, torch.float64), n, replacement=True, generator=generator)
        uv = torch.rand(verts.shape[0], n, 2, generator=generator, device=rng_device, dtype=torch.float64)
        su = uv[..., 0].sqrt()
        bary = torch.stack([1.0 - su, su * (1.0 - uv[..., 1]), su * uv[..., 1]], dim=-1)
        face_idx = face_idx.to(verts.device)
        bary = bary.to(verts.device, verts.dtype)
    vid = faces.to(verts.device)[face_idx]  # (B, n, 3)
    points = sum(bary[..., i : i + 1] * gather_points(verts, vid[..., i]) for i in range(3))
    return points, face_idx, bary


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den with den = 0 replaced by 1 (keeps unselected torch.where branches NaN/inf free)."""
    return num / torch.where(den == 0, torch.ones_like(den), den)


def closest_point_on_triangles(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Exact closest point on triangle (a, b, c) to p, elementwise over leading dimensions.

    Classifies p into the Voronoi regions of the triangle (3 vertices, 3 edges, interior) with the
    dot-product tests of Ericson, *Real-Time Collision Detection*, §5.1.5, evaluated branch-free
    (all regions computed, then selected in the algorithm's test order with ``torch.where``).

    Args:
        p, a, b, c: (..., 3), broadcastable to a common shape.
    Returns:
        closest: (..., 3) the closest point q = w0·a + w1·b + w2·c;
        bary: (..., 3) its barycentric weights (w ≥ 0, Σw = 1).
    Differentiable almost everywhere w.r.t. all inputs (through the barycentric formulas; the
    gradient of |p − q|² equals Danskin's −2·w_i·(p − q) for vertex i and 2·(p − q) for p).
    Degenerate (zero-area) triangles are handled: the result lies on the degenerate segment/point.
    """
    p, a, b, c = torch.broadcast_tensors(p, a, b, c)
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    one, zero = torch.ones_like(d1), torch.zeros_like(d1)

    def w(w0: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
        return torch.stack([w0, w1, w2], dim=-1)

    # Interior: barycentrics from the signed sub-areas.
    denom = va + vb + vc
    v_in, w_in = _safe_div(vb, denom), _safe_div(vc, denom)
    bary = w(1.0 - v_in - w_in, v_in, w_in)
    # Edge and vertex regions, in reverse test order so the first matching test wins.
    t_bc = _safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    in_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    bary = torch.where(in_bc.unsqueeze(-1), w(zero, 1.0 - t_bc, t_bc), bary)
    t_ac = _safe_div(d2, d2 - d6)
    in_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    bary = torch.where(in_ac.unsqueeze(-1), w(1.0 - t_ac, zero, t_ac), bary)
    in_c = (d6 >= 0) & (d5 <= d6)
    bary = torch.where(in_c.unsqueeze(-1), w(zero, zero, one), bary)
    t_ab = _safe_div(d1, d1 - d3)
    in_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    bary = torch.where(in_ab.unsqueeze(-1), w(1.0 - t_ab, t_ab, zero), bary)
    in_b = (d3 >= 0) & (d4 <= d3)
    bary = torch.where(in_b.unsqueeze(-1), w(zero, one, zero), bary)
    in_a = (d1 <= 0) & (d2 <= 0)
    bary = torch.where(in_a.unsqueeze(-1), w(one, zero, zero), bary)

    closest = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    return closest, bary


def _best_face(q: Tensor, tri: Tensor, cand: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Exact nearest face among candidates, chunked, no grad.

    q (n,3); tri (T,3,3); cand (n,k) face ids or None (= all T faces).
    Returns sq_dist (n,), face (n,) int64, bary (n,3).
    """
    n = q.shape[0]
    k = tri.shape[0] if cand is None else cand.shape[1]
    rows = max(1, _PAIR_CHUNK // k)
    sq_out = torch.empty(n, dtype=q.dtype, device=q.device)
    f_out = torch.empty(n, dtype=torch.int64, device=q.device)
    w_out = torch.empty(n, 3, dtype=q.dtype, device=q.device)
    for s in range(0, n, rows):
        qc = q[s : s + rows, None, :]
        if cand is None:
            ids = torch.arange(tri.shape[0], device=q.device).expand(qc.shape[0], -1)
        else:
            ids = cand[s : s + rows]
        t = tri[ids]  # (r, k, 3, 3)
        cp, bary = closest_point_on_triangles(qc, t[..., 0, :], t[..., 1, :], t[..., 2, :])
        sq = ((qc - cp) ** 2).sum(-1)
        best = sq.argmin(dim=1, keepdim=True)
        sq_out[s : s + rows] = sq.gather(1, best)[:, 0]
        f_out[s : s + rows] = ids.gather(1, best)[:, 0]
        w_out[s : s + rows] = bary.gather(1, best.unsqueeze(-1).expand(-1, -1, 3))[:, 0]
    return sq_out, f_out, w_out


def _nearest_faces_one(
    q: Tensor, tri: Tensor, candidates: int, exact: bool, backend: Backend
) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest face of one scene's triangle soup tri (T,3,3) for each q (n,3); no grad.

    Candidate faces = the k faces of smallest "power distance" |q − c_f|² − r_f², where c_f is the
    centroid and r_f the largest centroid-to-vertex distance of face f (its bounding-ball radius).
    That ordering is a plain Euclidean k-NN in 4-D: q' = (q, 0), c'_f = (c_f, √(R² − r_f²)) with
    R = max r_f, since |q' − c'_f|² = |q − c_f|² − r_f² + R². Every face f outside the candidates
    then has |q' − c'_f| ≥ e_k (the k-th candidate's 4-D distance), hence
    dist(q, f) ≥ |q − c_f| − r_f = √(|q' − c'_f|² − R² + r_f²) − r_f ≥ e_k − R
    (the middle expression decreases in r_f ≤ R). The best candidate is certified exact when its
    distance is ≤ that bound (less a slack for the float error of the k-NN search). Compared with
    plain centroid k-NN, the lift ranks large faces earlier and the bound is never looser. With
    ``exact`` the uncertified points are retried with 4× more candidates until certified or all
    faces are tested (brute force); otherwise the best of the k candidates is returned.
    """
    T = tri.shape[0]
    cen = tri.mean(dim=1)
    r_f = (tri - cen[:, None, :]).norm(dim=-1).amax(dim=1)
    radius = r_f.amax()
    cen4 = torch.cat([cen, (radius * radius - r_f * r_f).clamp_min(0).sqrt()[:, None]], dim=1)
    centre = cen4.mean(dim=0)
    # Squared-distance error allowance of the float32/expanded-form k-NN (generous: ~100 ulp).
    scale = ((cen4 - centre) ** 2).sum(-1).amax()
    sq = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    face = torch.empty(q.shape[0], dtype=torch.int64, device=q.device)
    bary = torch.empty(q.shape[0], 3, dtype=q.dtype, device=q.device)
    pending = torch.arange(q.shape[0], device=q.device)
    k = max(1, min(candidates, T))
    while pending.numel():
        qp = q[pending]
        if k >= T:
            sq[pending], face[pending], bary[pending] = _best_face(qp, tri, None)
            break
        q4 = torch.cat([qp, torch.zeros_like(qp[:, :1])], dim=1)
        cand = knn_indices(q4[None], cen4[None], k, backend)[0]
        s, f, w = _best_face(qp, tri, cand)
        sq[pending], face[pending], bary[pending] = s, f, w
        if not exact:
            break
        kth_sq = ((q4 - cen4[cand[:, -1]]) ** 2).sum(-1)
        slack = 1e-5 * (((q4 - centre) ** 2).sum(-1) + scale)
        bound = ((kth_sq - slack).clamp_min(0).sqrt() - radius).clamp_min(0)
        pending = pending[s > bound * bound]
        k = min(4 * k, T)
    return sq, face, bary


def point_mesh_sq_dist(
    points: Tensor,
    verts: Tensor,
    faces: Tensor,
    candidates: int = 8,
    mask: Tensor | None = None,
    exact: bool = True,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Squared distance from each point to the nearest surface point of any of K meshes.

    Algorithm: (no grad) the ``candidates`` faces nearest by a bounding-ball "power distance"
    (a 4-D k-NN with the backend of ``nearest.py``; see ``_nearest_faces_one``) are tested with the exact point–triangle distance; with ``exact=True`` (default)
    points whose result is not certified by a centroid/radius lower bound are retried with 4× more
    candidates up to brute force, so the result equals the exact minimum over all K·F triangles.
    With ``exact=False`` it is the best of the candidates — an upper bound that is exact whenever
    the true nearest face is among them (points close to the surface, relative to the face size);
    far points may get a slightly worse face. Then (with grad) the distance to the chosen closest
    point q = Σ w_i v_i (w fixed) is recomputed: by Danskin's theorem this is the exact gradient
    w.r.t. points and verts wherever the nearest surface point is unique.

    Accuracy/cost (deformed level-2 ico-spheres, K=3, as in tests/geometry/test_geom_mesh.py): with
    ``exact=True`` the result equals a brute-force minimum over all triangles to 1e-12 (float64)
    for any ``candidates``. With ``exact=False`` over 6 such scenes (900 points within 2 cm of the
    surface, 600 far points): candidates=8 was exact for every near point and missed the nearest
    face for 1 far point (+0.6 % squared distance); candidates=4 missed 11 points; 1–2 candidates
    miss many (the lift ranks large faces first). On the benchmark scene (K=8 level-3 spheres,
    P=8192, 20 % background points ~1 m away) candidates=8 left 13 of 32,768 points inexact
    (≤ 2.2 mm). ``exact=True`` costs ~2–4× more there (background points need 2–3 retry rounds);
    see reports/bench/nearest.md. Suggested: ``exact=False`` in the training loss, ``exact=True``
    for evaluation.

    Args:
        points: (B, P, 3) query points (metres); mask: optional (B, P) bool of valid points.
        verts: (B, K, V, 3) vertices of K meshes per scene; faces: (F, 3) int64 shared topology.
        candidates: initial number of candidate faces per point.
        backend: k-NN backend for the candidate search (see ``nearest.py``).
    Returns:
        sq_dist: (B, P) metres² (0 where masked);
        slot: (B, P) int64 in [0, K) — which mesh owns the closest surface point (−1 where masked);
        face: (B, P) int64 in [0, F) — the face within that mesh (−1 where masked).
    Memory: O(B·(P + K·F)) plus bounded chunk buffers; never B·P·K·F.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, P, 3), got {tuple(points.shape)}")
    if verts.dim() != 4 or verts.shape[-1] != 3 or verts.shape[0] != points.shape[0]:
        raise ValueError(f"verts must be (B, K, V, 3) with B={points.shape[0]}, got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"faces must be (F, 3) with F > 0, got {tuple(faces.shape)}")
    if mask is not None and (mask.shape != points.shape[:2] or mask.dtype != torch.bool):
        raise ValueError(f"mask must be bool of shape {tuple(points.shape[:2])}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    B, P, _ = points.shape
    _, K, V, _ = verts.shape
    F = faces.shape[0]
    faces = faces.to(verts.device)
    face_g = torch.zeros(B, P, dtype=torch.int64, device=points.device)
    bary = torch.zeros(B, P, 3, dtype=points.dtype, device=points.device)
    with torch.no_grad():
        tri = face_vertices(verts.detach(), faces).reshape(B, K * F, 3, 3).to(points.dtype)
        for b in range(B):
            sel = torch.arange(P, device=points.device) if mask is None else mask[b].nonzero()[:, 0]
            if sel.numel() == 0:
                continue
            _, f, w = _nearest_faces_one(points[b].detach()[sel], tri[b], candidates, exact, backend)
            face_g[b, sel], bary[b, sel] = f, w
    slot = face_g // F
    face = face_g % F
    vid = slot.unsqueeze(-1) * V + faces[face]  # (B, P, 3) index into verts.reshape(B, K*V, 3)
    flat = verts.reshape(B, K * V, 3)
    q = sum(bary[..., i : i + 1] * gather_points(flat, vid[..., i]) for i in range(3))
    diff = points - q
    sq = (diff * diff).sum(-1)
    if mask is not None:
        sq = sq * mask
        slot = torch.where(mask, slot, torch.full_like(slot, -1))
        face = torch.where(mask, face, torch.full_like(face, -1))
    return sq, slot, face
