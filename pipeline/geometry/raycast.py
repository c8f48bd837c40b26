"""Ray casting against triangle meshes (open3d ``RaycastingScene``): the one wrapper, for the synthetic
renderer and the slot-mesh figures.

open3d is imported when a :class:`MeshRaycaster` is built, not with this module: the synthetic renderer
builds its scenes inside forked worker processes, and open3d costs ~1 s to import.
"""

from __future__ import annotations

import numpy as np


class MeshRaycaster:
    """A scene of triangle meshes; :meth:`cast` returns the first hit along each ray."""

    def __init__(self) -> None:
        import open3d as o3d

        self._o3d = o3d
        self._scene = o3d.t.geometry.RaycastingScene()

    def add_mesh(self, verts: np.ndarray, faces: np.ndarray) -> int:
        """Add one mesh: verts (V, 3), faces (F, 3) vertex indices; returns its geometry id."""
        return self._scene.add_triangles(verts.astype(np.float32), faces.astype(np.uint32))

    def cast(self, origins: np.ndarray, dirs: np.ndarray, nthreads: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rays (N, 3) origins and directions -> (t_hit (N,) in units of ``dirs``, +inf on a miss; geometry id
        (N,) int64, open3d's invalid id on a miss; unit primitive normals (N, 3)). ``nthreads`` 0 = all cores."""
        rays = np.empty((len(dirs), 6), dtype=np.float32)  # cast once, straight into open3d's layout
        rays[:, :3], rays[:, 3:] = origins, dirs
        rays = self._o3d.core.Tensor(rays)
        hit = self._scene.cast_rays(rays, nthreads=nthreads)
        return (hit["t_hit"].numpy(), hit["geometry_ids"].numpy().astype(np.int64),
                hit["primitive_normals"].numpy())
