"""Unit ico-sphere meshes (a pytorch3d-free ``ico_sphere``).

Level 0 is the regular icosahedron (12 vertices, 20 faces). Each further level splits every
triangle into four through its edge midpoints and pushes the new vertices onto the unit sphere,
so level L has V = 10·4^L + 2 vertices and F = 20·4^L faces. All faces are wound
counter-clockwise seen from outside, i.e. ``cross(v1 - v0, v2 - v0)`` points away from the origin.
The vertex order differs from pytorch3d's (irrelevant unless loading its checkpoints).
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import Tensor

_MAX_LEVEL = 8  # 655,362 vertices; beyond that this is almost certainly a mistake


def _icosahedron() -> tuple[Tensor, Tensor]:
    """Regular icosahedron on the unit sphere: verts (12,3) float64, faces (20,3) int64, outward."""
    t = (1.0 + 5.0**0.5) / 2.0
    # The 12 vertices are the cyclic permutations of (0, ±1, ±t).
    verts = []
    for s1, s2 in itertools.product((-1.0, 1.0), repeat=2):
        verts += [(0.0, s1, s2 * t), (s1, s2 * t, 0.0), (s2 * t, 0.0, s1)]
    v = torch.tensor(verts, dtype=torch.float64)
    # Faces = triples of mutually adjacent vertices (edge length 2 before normalisation).
    d = torch.cdist(v, v)
    adj = (d - 2.0).abs() < 1e-9
    faces = []
    for i, j, k in itertools.combinations(range(12), 3):
        if adj[i, j] and adj[j, k] and adj[i, k]:
            n = torch.linalg.cross(v[j] - v[i], v[k] - v[i])
            faces.append((i, j, k) if torch.dot(n, v[i] + v[j] + v[k]) > 0 else (i, k, j))
    f = torch.tensor(faces, dtype=torch.int64)
    if f.shape != (20, 3):  # pragma: no cover - construction invariant
        raise RuntimeError(f"icosahedron construction found {f.shape[0]} faces, expected 20")
    return v / v.norm(dim=1, keepdim=True), f


def _subdivide(verts: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Split each face into 4 through edge midpoints (shared per edge), project to the unit sphere.

    verts (V,3) float64, faces (F,3) int64 → verts (V+E,3), faces (4F,3) with the same winding.
    """
    v0, v1, v2 = faces.unbind(1)
    edges = torch.stack([torch.stack([v0, v1], 1), torch.stack([v1, v2], 1), torch.stack([v2, v0], 1)], 0)
    flat = edges.reshape(-1, 2).sort(dim=1).values  # undirected edge keys
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    mid = verts[uniq].mean(dim=1)
    mid = mid / mid.norm(dim=1, keepdim=True)
    ids = (inverse + verts.shape[0]).reshape(3, -1)
    a, b, c = ids[0], ids[1], ids[2]  # midpoints of (v0,v1), (v1,v2), (v2,v0)
    new_faces = torch.cat(
        [torch.stack(t, 1) for t in ((v0, a, c), (v1, b, a), (v2, c, b), (a, b, c))], 0
    )
    return torch.cat([verts, mid], 0), new_faces


@functools.lru_cache(maxsize=None)
def _ico_sphere_cached(level: int) -> tuple[Tensor, Tensor]:
    verts, faces = _icosahedron()
    for _ in range(level):
        verts, faces = _subdivide(verts, faces)
    return verts.to(torch.float32), faces


def ico_sphere(level: int) -> tuple[Tensor, Tensor]:
    """Unit ico-sphere of subdivision ``level``.

    Returns:
        verts: (V, 3) float32, unit norm, V = 10·4^level + 2.
        faces: (F, 3) int64 vertex indices, F = 20·4^level, counter-clockwise seen from outside
            (outward normals by the right-hand rule).
    Fresh tensors are returned on every call (the construction is cached), on the CPU; move them
    with ``.to(device)`` and register them as buffers in modules.
    """
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= _MAX_LEVEL:
        raise ValueError(f"ico_sphere level must be an int in [0, {_MAX_LEVEL}], got {level!r}")
    verts, faces = _ico_sphere_cached(level)
    return verts.clone(), faces.clone()
